//! `fundus bench review`: the worklist page and `GET /v1/review/items` over
//! 100,000 open items, through the real server and a signed-in session,
//! against the bare worklist SELECT of the same page on the same database in
//! the same run; and photo preview latency (first view, which makes the
//! preview, and later views, which read it back). Rounds alternate between
//! the sides; medians with min–max over the rounds.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::{median, spread};
use crate::bench_score::ScratchDb;

#[derive(clap::Args)]
pub struct ReviewBenchArgs {
    /// A superuser URL: the benchmark creates (and drops) its own database.
    #[arg(long, env = "FUNDUS_PG_SUPERUSER_URL")]
    superuser_url: String,
    #[command(flatten)]
    store: ingest::StoreArgs,
    /// Open review items in the queue.
    #[arg(long, default_value_t = 100_000)]
    items: i64,
    /// Requests per side per round.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Distinct photos whose previews are measured.
    #[arg(long, default_value_t = 8)]
    photos: usize,
}

pub async fn review(a: ReviewBenchArgs) -> anyhow::Result<()> {
    let scratch = ScratchDb::create(&a.superuser_url, "review").await?;
    let r = review_in(&a, &scratch.url).await;
    scratch.drop_db().await?;
    r
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 of one round's latencies.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| ms(v[((v.len() as f64 * p) as usize).min(v.len() - 1)]);
    (at(0.5), at(0.99))
}


async fn review_in(a: &ReviewBenchArgs, url: &str) -> anyhow::Result<()> {
    let mut cfg = ingest::Config {
        listen: "127.0.0.1:0".parse()?,
        metrics_listen: None,
        db: ingest::DbArgs { database_url: url.parse().expect("infallible"), max_connections: 8, acquire_timeout_secs: 5 },
        store: a.store.clone(),
        max_upload_bytes: 30_000_000,
        max_megapixels: 100,
        min_side: 512,
        decode_concurrency: None,
        request_timeout_secs: 60,
        sweep_interval_secs: 0,
        sweep_min_age_secs: 3600,
        max_buffered_bytes: 256 << 20,
        // The load generator is one client address: no per-client rate.
        guard: ingest::guard::GuardArgs { client_rate: 0.0, ..Default::default() },
        pseudonym: Default::default(),
        review: review::Config::default(),
    };
    cfg.store.store_url = format!("{}/bench-review-{}", a.store.store_url.trim_end_matches('/'), std::process::id());
    let state = ingest::AppState::new(cfg)?;
    let pool = state.db.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(ingest::serve(listener, state, std::future::pending()));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    for _ in 0..200 {
        if http.get(format!("{api}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Real photos through the upload API, for the previews and as the rows to copy.
    let site_id = db::access::site_create(&pool, "bench").await?;
    let token = ingest::auth::new_token();
    db::access::device_create(&pool, site_id, "bench", &ingest::auth::hash_token(&token)).await?;
    let study: serde_json::Value = http
        .post(format!("{api}/v1/studies"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"patient_ref": "BENCH", "captured_at": "2026-01-01T00:00:00Z"}))
        .send()
        .await?
        .json()
        .await?;
    let study = study["id"].as_str().context("study id")?.to_owned();
    let mut photos = Vec::new();
    for i in 0..a.photos {
        let p = imaging::synth::Params::sample(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(40 + i as u64), &[(4000, 3000)]);
        let jpeg = imaging::synth::to_jpeg(&imaging::synth::render(&p), 90);
        let r: serde_json::Value = http
            .post(format!("{api}/v1/studies/{study}/images?eye={}", if i % 2 == 0 { "left" } else { "right" }))
            .bearer_auth(&token)
            .header("content-type", "image/jpeg")
            .body(jpeg)
            .send()
            .await?
            .json()
            .await?;
        photos.push(r["id"].as_str().context("image id")?.to_owned());
    }

    // The queue: `items` open items over copies of those rows, one result each.
    let t = Instant::now();
    let seed = format!(
        "WITH mv AS (INSERT INTO model_versions (name, version, weights_uri, threshold, preprocessing)
                     VALUES ('bench', '1', 'bench', 0.5, '{{}}') RETURNING id),
              src AS (SELECT * FROM images WHERE study_id = '{study}' LIMIT 1),
              img AS (INSERT INTO images (study_id, eye, sha256, object_key, format, width, height, size_bytes, quality, status)
                      SELECT src.study_id, CASE WHEN g % 2 = 0 THEN 'left' ELSE 'right' END,
                             sha256(convert_to(g::text, 'UTF8')), src.object_key, src.format, src.width, src.height,
                             src.size_bytes, src.quality, 'in_review'
                      FROM src, generate_series(1, {n}) g RETURNING id),
              res AS (INSERT INTO results (image_id, model_version_id, glaucoma_score, gradable_score, label)
                      SELECT img.id, mv.id, random(), 0.9, 'referable' FROM img, mv RETURNING id, image_id)
         INSERT INTO review_items (image_id, result_id, reason, site_id, created_at)
         SELECT res.image_id, res.id, (ARRAY['referable','ungradable','uncertain','qa_sample'])[1 + floor(random() * 4)::int],
                '{site_id}', now() - random() * interval '30 days'
         FROM res",
        n = a.items
    );
    sqlx::query(sqlx::AssertSqlSafe(seed)).execute(&pool).await.context("seeding the review queue")?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    eprintln!("seeded {} open review items in {:.1} s", a.items, t.elapsed().as_secs_f64());

    // A grader of the site, signed in as a browser would be.
    let password = review::auth::generate_password();
    db::users::user_create(&pool, "bench-grader", "grader", &review::auth::hash_password(&password)?, &["bench".into()]).await?;
    let form = http.get(format!("{api}/review/login")).send().await?;
    let login_cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .find(|p| p.starts_with("fundus_login="))
        .context("the log-in form's cookie")?
        .to_owned();
    let token = login_cookie.split_once('=').map(|(_, v)| v.to_owned()).unwrap_or_default();
    let r = http
        .post(format!("{api}/review/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &login_cookie)
        .body(format!("csrf={token}&username=bench-grader&password={password}"))
        .send()
        .await?;
    anyhow::ensure!(r.status() == reqwest::StatusCode::SEE_OTHER, "log-in failed: {}", r.status());
    let cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).context("session cookie")?.to_owned();
    let user: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE name = 'bench-grader'").fetch_one(&pool).await?;

    let get = |path: String| {
        let (http, cookie) = (http.clone(), cookie.clone());
        async move {
            let t = Instant::now();
            let r = http.get(path).header("cookie", cookie).send().await?;
            anyhow::ensure!(r.status().is_success(), "{}", r.status());
            let n = r.bytes().await?.len();
            anyhow::Ok((t.elapsed(), n))
        }
    };
    // Warm-up: connections, plans, caches.
    for _ in 0..10 {
        get(format!("{api}/review/")).await?;
        get(format!("{api}/v1/review/items")).await?;
    }
    let states = vec!["open".to_owned()];
    let sites = vec![site_id];
    let (mut page, mut json, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    let mut sizes = (0, 0);
    for _ in 0..a.rounds {
        let mut lat = Vec::new();
        for _ in 0..a.requests {
            let t = Instant::now();
            let rows = db::review::worklist(&pool, &sites, &states, None, user, 100).await?;
            anyhow::ensure!(rows.len() == 100, "the bare SELECT returned {} rows", rows.len());
            lat.push(t.elapsed());
        }
        bare.push(percentiles(lat));
        let mut lat = Vec::new();
        for _ in 0..a.requests {
            let (d, n) = get(format!("{api}/review/")).await?;
            sizes.0 = n;
            lat.push(d);
        }
        page.push(percentiles(lat));
        let mut lat = Vec::new();
        for _ in 0..a.requests {
            let (d, n) = get(format!("{api}/v1/review/items?limit=100")).await?;
            sizes.1 = n;
            lat.push(d);
        }
        json.push(percentiles(lat));
    }

    // Previews: the first view makes it (decode at reduced scale, resize,
    // encode, store); later views read it back from the store.
    let (mut first, mut later) = (Vec::new(), Vec::new());
    for id in &photos {
        first.push(get(format!("{api}/v1/review/images/{id}/preview")).await?.0);
        for _ in 0..5 {
            later.push(get(format!("{api}/v1/review/images/{id}/preview")).await?.0);
        }
    }

    println!("{} open items; {} rounds x {} requests per side; {}", a.items, a.rounds, a.requests, crate::bench::machine());
    println!("{:<44} {:>24} {:>24}", "", "p50 ms median (min–max)", "p99 ms median (min–max)");
    for (name, v) in [
        ("bare worklist SELECT (100 rows, no HTTP)", &bare),
        (&*format!("GET /review/ (worklist page, {} KB)", sizes.0 / 1024), &page),
        (&*format!("GET /v1/review/items (100 items, {} KB)", sizes.1 / 1024), &json),
    ] {
        let (p50, p99): (Vec<f64>, Vec<f64>) = v.iter().copied().unzip();
        println!("{name:<44} {:>24} {:>24}", spread(&p50), spread(&p99));
    }
    let med = |v: &Vec<(f64, f64)>, i: usize| median(&v.iter().map(|p| if i == 0 { p.0 } else { p.1 }).collect::<Vec<f64>>());
    println!(
        "worklist page p99 / bare SELECT p99: {:.1}x; page p99 median {:.1} ms (goal < 50 ms)",
        med(&page, 1) / med(&bare, 1),
        med(&page, 1)
    );
    let (f50, f99) = percentiles(first);
    let (l50, l99) = percentiles(later);
    println!("preview of a 4000x3000 JPEG: first view p50 {f50:.1} ms (max {f99:.1}); later views p50 {l50:.1} ms, p99 {l99:.1} ms");
    Ok(())
}
