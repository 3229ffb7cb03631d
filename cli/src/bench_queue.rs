//! `fundus bench queue`: the worker's queue path in Postgres (claim a batch,
//! write results and review items, finish the jobs, grouped as the worker
//! groups them) against one transaction per photo and the bare round-trip
//! floor, each on its own scratch database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench_score::ScratchDb;

#[derive(clap::Args)]
pub struct QueueArgs {
    /// A superuser URL: the benchmark creates (and drops) its own database.
    #[arg(long, env = "FUNDUS_PG_SUPERUSER_URL")]
    superuser_url: String,
    #[arg(long, default_value_t = 20_000)]
    jobs: i64,
    /// Concurrent workers (connections).
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Jobs per claim.
    #[arg(long, default_value_t = 64)]
    claim: i64,
    /// Timed runs of each side, alternating, after one untimed.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

pub async fn queue(a: QueueArgs) -> anyhow::Result<()> {
    let scratch = ScratchDb::create(&a.superuser_url, "queue").await?;
    let r = queue_in(&scratch.url, &a).await;
    scratch.drop_db().await?;
    r
}

/// The worker's database path: claim a batch, then for every job its result
/// row, a review item for one photo in ten (with a heatmap key), the photo's
/// status and the job's completion. Grouped is what the worker does (one
/// transaction per claimed batch); one by one is a transaction per photo.
/// The floor is bare `SELECT 1` round trips on the same connections.
async fn queue_in(url: &str, a: &QueueArgs) -> anyhow::Result<()> {
    let pool = db::connect(url, a.workers as u32 + 2, Duration::from_secs(5))?;
    db::migrate(&pool).await?;
    // Photos and their jobs, made in bulk.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO sites (name) VALUES ('bench');
         INSERT INTO studies (site_id, patient_ref, captured_at) SELECT id, 'p', now() FROM sites;
         INSERT INTO images (study_id, eye, sha256, object_key, format, width, height, size_bytes, quality)
           SELECT s.id, 'left', sha256(i::text::bytea), 'raw/' || i, 'jpeg', 1000, 1000, 1, '{{}}'
           FROM studies s, generate_series(1, {}) i;
         INSERT INTO jobs (image_id, priority) SELECT id, 0 FROM images;
         ANALYZE;",
        a.jobs
    )))
    .execute(&pool)
    .await?;
    let version = db::queue::model_version(&pool, "bench", "1", None, "file:///bench", 0.5, &serde_json::json!({}), "bench").await?;
    let reset = "DELETE FROM review_items; DELETE FROM results;
                 UPDATE jobs SET state = 'queued', attempts = 0, locked_by = NULL, lease_until = NULL;
                 UPDATE images SET status = 'queued';";
    let outcome = move |j: &db::queue::Claimed| {
        let review = (j.id % 10 == 0).then_some("referable");
        db::queue::Outcome {
            model_version_id: version,
            glaucoma: 0.3,
            gradable: 0.9,
            label: if review.is_some() { "referable" } else { "non_referable" },
            heatmap_key: review.map(|_| format!("derived/heatmaps/{}.png", j.image_id)),
            review,
            qa_rate: 0.0,
            qa_sampled: false,
            threshold: 0.5,
            gradable_threshold: 0.5,
            uncertainty_band: 0.05,
        }
    };
    let (n, claim) = (a.jobs as usize, a.claim);
    let mut rates: [Vec<f64>; 3] = Default::default();
    for round in 0..=a.repeats {
        for side in 0..3 {
            sqlx::raw_sql(reset).execute(&pool).await?;
            sqlx::raw_sql("VACUUM ANALYZE jobs, results, review_items, images").execute(&pool).await?;
            let rate = drive(&pool, a.workers, n, move |pool| async move {
                if side == 0 {
                    sqlx::query("SELECT 1").execute(&pool).await?;
                    return anyhow::Ok(Some(1));
                }
                let worker = "bench";
                let jobs = db::queue::claim(&pool, worker, claim, 60.0).await?;
                if jobs.is_empty() {
                    return anyhow::Ok(None);
                }
                let done: Vec<_> = jobs.iter().map(|j| (j.clone(), outcome(j))).collect();
                let finished = if side == 2 {
                    db::queue::finish_many(&pool, worker, &done).await?.len()
                } else {
                    let mut k = 0;
                    for (j, o) in &done {
                        k += db::queue::finish(&pool, j, worker, o).await? as usize;
                    }
                    k
                };
                anyhow::ensure!(finished == jobs.len(), "lost {} jobs", jobs.len() - finished);
                anyhow::Ok(Some(finished))
            })
            .await?;
            if side > 0 {
                let (done, results, items): (i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM jobs WHERE state = 'done'), (SELECT count(*) FROM results), (SELECT count(*) FROM review_items)",
                )
                .fetch_one(&pool)
                .await?;
                anyhow::ensure!(done == a.jobs && results == a.jobs, "{done} jobs done and {results} results of {}", a.jobs);
                anyhow::ensure!(items == a.jobs / 10, "{items} review items for {} jobs", a.jobs);
            }
            if round > 0 {
                rates[side].push(rate);
            }
        }
    }
    let show = |v: &[f64]| {
        let (m, lo, hi) = crate::bench::median_min_max(v);
        format!("{m:>7.0} ({lo:.0}–{hi:.0})")
    };
    let med = |v: &[f64]| crate::bench::median(v);
    println!("{} jobs, {} workers, {} per claim, one Postgres; {}", a.jobs, a.workers, a.claim, crate::bench::machine());
    println!("median (min–max) of {} alternating runs each, after one untimed", a.repeats);
    println!("worker path, one transaction per claimed batch {} jobs/s", show(&rates[2]));
    println!("worker path, one transaction per photo         {} jobs/s", show(&rates[1]));
    println!("floor: SELECT 1 round trips                    {} /s", show(&rates[0]));
    println!(
        "grouped / per photo: {:.2}; grouped / floor: {:.2} (a grouped job costs 8 round trips per {} jobs)",
        med(&rates[2]) / med(&rates[1]),
        med(&rates[2]) / med(&rates[0]),
        a.claim
    );
    Ok(())
}

/// Runs `step` on `workers` tasks until `n` units are done or a task finds
/// nothing left (`None`: an empty claim, which is not work); units per second.
async fn drive<F, Fut>(pool: &db::PgPool, workers: usize, n: usize, step: F) -> anyhow::Result<f64>
where
    F: Fn(db::PgPool) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Option<usize>>> + Send,
{
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (pool, done, step) = (pool.clone(), done.clone(), step.clone());
        tasks.push(tokio::spawn(async move {
            while done.load(std::sync::atomic::Ordering::Relaxed) < n {
                match step(pool.clone()).await? {
                    Some(k) => done.fetch_add(k, std::sync::atomic::Ordering::Relaxed),
                    None => break,
                };
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(std::sync::atomic::Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
