//! Scoring benchmarks, each against a baseline measured in the same run:
//! `score` (ours against a Python peer running the same weights as
//! TorchScript), `worker` (end to end through the queue against model-only
//! forward passes), `latency` (upload to result on an idle stack, against the
//! upload alone); `queue` is in `bench_queue`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use inference::{BatchConfig, ModelSource, Routing};
use model::{Arch, Precision, Scorer};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

#[derive(clap::Args, Clone)]
pub struct BenchModel {
    /// A model directory; default: the seeded initial weights of --arch at
    /// --size (speed does not depend on the weights).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Arch::Small)]
    arch: Arch,
    #[arg(long, default_value_t = 128)]
    size: u32,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Photos to score (phone sizes, 1.2 to 12 MP; written once, reused).
    #[arg(long, default_value_t = 96)]
    n: usize,
    #[arg(long, default_value = ".stack/bench/score")]
    dir: PathBuf,
    #[arg(long)]
    cpu: bool,
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    precision: Precision,
    /// Timed runs of each side, alternating, after one untimed warm-up run.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

impl BenchModel {
    fn device(&self) -> Device {
        if self.cpu { Device::Cpu } else { Device::cuda_if_available() }
    }

    fn model_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(m) = &self.model {
            return Ok(m.clone());
        }
        let arch = serde_json::to_value(self.arch)?.as_str().unwrap_or("net").to_owned();
        let dir = self.dir.join(format!("untrained-{arch}-{}", self.size));
        if !dir.join(model::card::CARD_FILE).is_file() {
            model::score::write_untrained(&dir, self.arch, self.size, 0.5, 1)?;
        }
        Ok(dir)
    }

    /// Phone-like photos of mixed sizes, written once.
    fn photos(&self) -> anyhow::Result<PathBuf> {
        use imaging::synth::{PHONE_SIZES, Params, render, to_jpeg};
        use rand::SeedableRng;
        let dir = self.dir.join(format!("photos-{}", self.n));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let params: Vec<Params> = (0..self.n).map(|_| Params::sample(&mut rng, &PHONE_SIZES)).collect();
        params.par_iter().enumerate().try_for_each(|(i, p)| -> anyhow::Result<()> {
            let path = dir.join(format!("photo-{i:04}.jpg"));
            if !path.exists() {
                std::fs::write(&path, to_jpeg(&render(p), 92))?;
            }
            Ok(())
        })?;
        Ok(dir)
    }
}

/// Model-only: forward passes on ready-made u8 batches, images/s.
fn forward_only(dir: &Path, device: Device, precision: Precision, batch: usize, n: usize) -> anyhow::Result<f64> {
    let scorer = Scorer::load(dir, device, precision)?;
    let p = &scorer.card.preprocessing;
    let x = Tensor::randint(256, [batch as i64, 3, i64::from(p.size), i64::from(p.width())], (Kind::Uint8, Device::Cpu));
    for _ in 0..2 {
        let _ = scorer.score(&x, false); // warm-up
    }
    // At least `n` photos and at least two seconds.
    let start = Instant::now();
    let mut rounds = 0;
    while rounds * batch < n || start.elapsed() < Duration::from_secs(2) {
        let out = scorer.score(&x, false);
        anyhow::ensure!(out.glaucoma.len() == batch);
        rounds += 1;
    }
    Ok((rounds * batch) as f64 / start.elapsed().as_secs_f64())
}

fn header(m: &BenchModel, dir: &Path) -> anyhow::Result<()> {
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(model::card::CARD_FILE))?)?;
    eprintln!(
        "model: {} ({}), {} px, batch {}, device {:?}, threads {}",
        card["name"].as_str().unwrap_or("?"),
        dir.display(),
        card["preprocessing"]["size"],
        m.batch,
        m.device(),
        tch::get_num_threads()
    );
    Ok(())
}

pub async fn score(m: BenchModel, venv: PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(m.repeats >= 1, "--repeats must be at least 1");
    let dir = m.model_dir()?;
    let photos = m.photos()?;
    header(&m, &dir)?;
    let card: model::score::InferenceCard = serde_json::from_str(&std::fs::read_to_string(dir.join(model::card::CARD_FILE))?)?;
    anyhow::ensure!(
        card.preprocessing.disc_view.is_none(),
        "{}: a disc-view model; the Python peer has no disc localiser, so compare a field-view model (--glaucoma-view field)",
        dir.display()
    );
    // The peer runs the same weights, exported as TorchScript.
    let ts = m.dir.join("torchscript");
    if m.model.is_some() || !ts.join("model.pt").is_file() {
        model::score::export_torchscript(&dir, &ts)?;
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let out = m.dir.join("ours.csv");
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let mut n = 0;
    for round in 0..=m.repeats {
        let loaded = inference::registry::load(&ModelSource::Local(dir.clone()), m.device(), m.precision, None).await?;
        let batch = BatchConfig { max_batch: m.batch, max_wait: Duration::from_millis(10) };
        let (p2, o2) = (photos.clone(), out.clone());
        let s = tokio::task::spawn_blocking(move || inference::offline::score_dir(loaded, &p2, &o2, None, batch, Routing::default(), false)).await??;
        anyhow::ensure!(s.failed == 0, "{} photos failed", s.failed);
        let p = peer_rate(&venv, &ts, &photos, m.batch, threads, &m.dir.join("peer.csv"))?;
        // Round 0 is the warm-up.
        if round > 0 {
            ours.push(s.photos as f64 / s.seconds);
            peer.push(p);
        }
        n = s.photos;
    }
    let fwd: Vec<f64> = (0..m.repeats).map(|_| forward_only(&dir, m.device(), m.precision, m.batch, m.n)).collect::<anyhow::Result<_>>()?;
    println!("{n} phone-like JPEGs (1.2-12 MP), same weights, same batch size; {} runs of each side, alternating, after a warm-up; {}", m.repeats, crate::bench::machine());
    println!("{:<60} {:>26}", "", "images/s median (min–max)");
    println!("{:<60} {:>26}", "fundus score", crate::bench::spread(&ours));
    println!("{:<60} {:>26}", format!("Python peer: DataLoader ({threads} workers), PIL draft(), TorchScript"), crate::bench::spread(&peer));
    println!("{:<60} {:>26}", "model-only forward (no decode)", crate::bench::spread(&fwd));
    let med = crate::bench::median;
    println!("ours / peer: {:.2}x (goal >= 1)   ours / model-only: {:.2}", med(&ours) / med(&peer), med(&ours) / med(&fwd));
    Ok(())
}

/// The Python peer as people write it for throughput: a DataLoader with a
/// worker process per core decoding with PIL's draft(), the model on every
/// core (`torch.set_num_threads`), the same TorchScript weights and batch.
fn peer_rate(venv: &Path, ts: &Path, photos: &Path, batch: usize, threads: usize, out: &Path) -> anyhow::Result<f64> {
    let script = crate::bench_preprocess::repo_file("scripts/bench/score_peer.py");
    let o = Command::new(venv.join("bin/python"))
        .arg(script)
        .args(["--model", &ts.display().to_string(), "--images", &photos.display().to_string()])
        .args(["--batch-size", &batch.to_string(), "--threads", &threads.to_string(), "--workers", &threads.to_string()])
        .args(["--out", &out.display().to_string()])
        .output()
        .context("running the Python peer")?;
    anyhow::ensure!(o.status.success(), "Python peer failed: {}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("images/s "))
        .and_then(|v| v.trim().parse().ok())
        .context("the peer printed no images/s")
}

/// A database of the benchmark's own, created from a superuser URL and
/// dropped afterwards, so the queue holds only the benchmark's jobs.
pub struct ScratchDb {
    admin: db::PgPool,
    name: String,
    pub url: String,
}

impl ScratchDb {
    pub async fn create(superuser_url: &str, what: &str) -> anyhow::Result<ScratchDb> {
        let name = format!("bench_{what}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let admin = db::connect(superuser_url, 1, Duration::from_secs(5))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.context("creating the benchmark's database")?;
        let mut url = url::Url::parse(superuser_url)?;
        url.set_path(&name);
        Ok(ScratchDb { admin, name, url: url.to_string() })
    }

    pub async fn drop_db(self) -> anyhow::Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).execute(&self.admin).await?;
        Ok(())
    }
}

#[derive(clap::Args)]
pub struct WorkerBenchArgs {
    /// A superuser URL: the benchmark creates (and drops) its own database.
    #[arg(long, env = "FUNDUS_PG_SUPERUSER_URL")]
    superuser_url: String,
    #[command(flatten)]
    store: ingest::StoreArgs,
    #[command(flatten)]
    model: BenchModel,
}

pub async fn worker(a: WorkerBenchArgs) -> anyhow::Result<()> {
    let store = ingest::Store::open(&a.store.under(&format!("bench-worker-{}", uuid::Uuid::new_v4().simple())))?;
    let scratch = ScratchDb::create(&a.superuser_url, "worker").await?;
    let r = worker_in(&a, &scratch.url, &store).await;
    // Its database and what it stored under its own prefix go, also after a failure.
    let cleaned = crate::bench::empty(&store).await;
    scratch.drop_db().await?;
    r.and(cleaned)
}

async fn worker_in(a: &WorkerBenchArgs, url: &str, store: &ingest::Store) -> anyhow::Result<()> {
    let m = &a.model;
    let dir = m.model_dir()?;
    let photos = m.photos()?;
    header(m, &dir)?;
    let pool = db::connect(url, 16, Duration::from_secs(5))?;
    db::migrate(&pool).await?;
    let mut manifest = String::from("path\n");
    for e in std::fs::read_dir(std::fs::canonicalize(&photos)?)? {
        manifest += &format!("{}\n", e?.path().display());
    }
    let mpath = m.dir.join(format!("manifest-{}.csv", std::process::id()));
    std::fs::write(&mpath, manifest)?;
    let limits = imaging::Limits { max_megapixels: 100, min_side: 512 };
    let reg = inference::screen::register(&pool, store, &inference::screen::Source::Manifest { path: mpath.clone(), allow_outside: false }, limits, 30_000_000).await?;
    let _ = std::fs::remove_file(&mpath);
    anyhow::ensure!(reg.rejected.is_empty(), "{} photos rejected, e.g. {:?}", reg.rejected.len(), reg.rejected.first());
    let n = db::batches::progress(&pool, reg.batch_id).await?.total;

    let mut cfg = inference::WorkerConfig::new("bench-worker".into());
    cfg.batch = BatchConfig { max_batch: m.batch, max_wait: Duration::from_millis(10) };
    cfg.claim_batch = m.batch as i64;
    cfg.in_flight = 2 * m.batch;
    cfg.exit_when_idle = true;
    cfg.poll = Duration::from_millis(100);
    anyhow::ensure!(m.repeats >= 1, "--repeats must be at least 1");
    let reset = "DELETE FROM review_items; DELETE FROM results;
                 UPDATE jobs SET state = 'queued', attempts = 0, locked_by = NULL, lease_until = NULL, run_at = now();
                 UPDATE images SET status = 'queued';";
    // Decode and preprocess alone, on every core, from memory: with the
    // model's rate it bounds what a worker sharing those cores can reach.
    let bytes: Vec<Vec<u8>> = std::fs::read_dir(&photos)?.map(|e| Ok(std::fs::read(e?.path())?)).collect::<anyhow::Result<_>>()?;
    let prep = model::card::ModelCard::load(&dir)?.preprocessing;
    // With a disc view, a photo whose disc is not found is refused (`no_disc`)
    // after the same decoding: the worker settles it at once, unscored.
    let prepared = |b: &Vec<u8>| match inference::pipeline::prepare(b, &prep) {
        Ok(_) => Ok(true),
        Err(e) if e.starts_with("no_disc:") => Ok(false),
        Err(e) => Err(anyhow::Error::msg(e)),
    };
    let refused = bytes.par_iter().map(prepared).collect::<anyhow::Result<Vec<bool>>>()?.iter().filter(|ok| !**ok).count() as u64;
    let decode_only = || -> anyhow::Result<f64> {
        let t = Instant::now();
        bytes.par_iter().try_for_each(|b| prepared(b).map(drop))?;
        Ok(bytes.len() as f64 / t.elapsed().as_secs_f64())
    };
    let (mut worker_rates, mut model_rates, mut decode_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=m.repeats {
        sqlx::raw_sql(reset).execute(&pool).await?;
        let start = Instant::now();
        let summary = inference::worker::run(
            cfg.clone(),
            pool.clone(),
            store.clone(),
            ModelSource::Local(dir.clone()),
            m.device(),
            m.precision,
            Arc::new(inference::metrics::Metrics::default()),
            tokio_util::sync::CancellationToken::new(),
        )
        .await?;
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(summary.done as i64 + refused as i64 == n && summary.dead == refused, "{summary:?} of {n}, {refused} without a disc found");
        let fwd = forward_only(&dir, m.device(), m.precision, m.batch, m.n)?;
        let dec = decode_only()?;
        if round > 0 {
            worker_rates.push(n as f64 / secs);
            model_rates.push(fwd);
            decode_rates.push(dec);
        }
    }
    let (w, f, d) = (crate::bench::median(&worker_rates), crate::bench::median(&model_rates), crate::bench::median(&decode_rates));
    // On a CPU the model and the decoding share the cores: at best their
    // times add. On a GPU they overlap: at best the slower of the two.
    let bound = if m.device() == Device::Cpu { 1.0 / (1.0 / f + 1.0 / d) } else { f.min(d) };
    println!("{}; median (min–max) of {} alternating runs each, after one untimed", crate::bench::machine(), m.repeats);
    println!("{n} photos through the queue: fetch from the store, check, decode, preprocess, score, heatmaps, results");
    if refused > 0 {
        println!("{refused} of them without a disc found: refused as no_disc after decoding, unscored, as preprocessing refuses them");
    }
    println!("worker end to end        {} images/s (model load included)", crate::bench::spread(&worker_rates));
    println!("model-only forward       {} images/s (same model, batch {})", crate::bench::spread(&model_rates), m.batch);
    println!("decode + preprocess only {} images/s (all cores, from memory)", crate::bench::spread(&decode_rates));
    println!("worker / model-only: {:.2} (goal >= 0.8)", w / f);
    println!(
        "worker / bound: {:.2}; the bound, {bound:.1} images/s, is {}",
        w / bound,
        if m.device() == Device::Cpu { "model and decoding sharing the cores (their times added)" } else { "the slower of model and decoding" }
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct LatencyArgs {
    /// A superuser URL: the benchmark creates (and drops) its own database.
    #[arg(long, env = "FUNDUS_PG_SUPERUSER_URL")]
    superuser_url: String,
    #[command(flatten)]
    serve: ingest::Config,
    #[command(flatten)]
    model: BenchModel,
    /// Uploads per round, one at a time (rounds: --repeats).
    #[arg(long, default_value_t = 20)]
    uploads: usize,
}

pub async fn latency(mut a: LatencyArgs) -> anyhow::Result<()> {
    a.serve.store = a.serve.store.under(&format!("bench-latency-{}", uuid::Uuid::new_v4().simple()));
    let store = ingest::Store::open(&a.serve.store)?;
    let scratch = ScratchDb::create(&a.superuser_url, "latency").await?;
    a.serve.db.database_url = scratch.url.parse().expect("infallible");
    let r = latency_in(a).await;
    // Its database and what it stored under its own prefix go, also after a failure.
    let cleaned = crate::bench::empty(&store).await;
    scratch.drop_db().await?;
    r.and(cleaned)
}

async fn latency_in(a: LatencyArgs) -> anyhow::Result<()> {
    let dir = a.model.model_dir()?;
    header(&a.model, &dir)?;
    let state = ingest::AppState::new(a.serve.clone())?;
    let pool = state.db.clone();
    db::migrate(&pool).await?;
    let store = state.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(ingest::serve(listener, state, std::future::pending()));
    let site = format!("bench-{}", std::process::id());
    let site_id = db::access::site_create(&pool, &site).await?;
    let token = ingest::auth::new_token();
    db::access::device_create(&pool, site_id, "bench", &ingest::auth::hash_token(&token)).await?;

    let prep = model::card::ModelCard::load(&dir)?.preprocessing;
    let mut cfg = inference::WorkerConfig::new("bench-latency".into());
    cfg.batch = BatchConfig { max_batch: a.model.batch, max_wait: Duration::from_millis(5) };
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(inference::worker::run(
        cfg,
        pool.clone(),
        store,
        ModelSource::Local(dir),
        a.model.device(),
        a.model.precision,
        Arc::new(inference::metrics::Metrics::default()),
        stop.clone(),
    ));
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(2)).await; // model loaded, worker idle
    let study: serde_json::Value = http
        .post(format!("{base}/v1/studies"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "patient_ref": "bench", "captured_at": chrono::Utc::now() }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let study = study["id"].as_str().context("study id")?.to_owned();
    anyhow::ensure!(a.model.repeats >= 1 && a.uploads >= 1, "--repeats and --uploads must be at least 1");
    // One untimed round of three photos, then `repeats` rounds of `uploads`;
    // each round's percentiles, then their median (min–max) over the rounds.
    let (mut u50, mut u90, mut r50, mut r90) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seed = 1000;
    for round in 0..=a.model.repeats {
        let n = if round == 0 { 3 } else { a.uploads };
        let (mut upload_ms, mut result_ms) = (Vec::new(), Vec::new());
        for _ in 0..n {
            // A photo the model judges: one it refuses (no disc found) gets no
            // result to time.
            let photo = loop {
                seed += 1;
                let params = imaging::synth::Params::sample(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed), &[(2592, 1944)]);
                let photo = imaging::synth::to_jpeg(&imaging::synth::render(&params), 92);
                if inference::pipeline::prepare(&photo, &prep).is_ok() {
                    break photo;
                }
            };
            let t = Instant::now();
            let r: serde_json::Value = http
                .post(format!("{base}/v1/studies/{study}/images?eye=left"))
                .bearer_auth(&token)
                .header("content-type", "image/jpeg")
                .body(photo)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            upload_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let id: uuid::Uuid = r["id"].as_str().context("image id")?.parse()?;
            loop {
                if db::images::result_latest(&pool, id).await?.is_some() {
                    break;
                }
                anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "no result for {id} after 30 s");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            result_ms.push(t.elapsed().as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_millis(200)).await; // idle between photos
        }
        if round > 0 {
            u50.push(percentile(&mut upload_ms, 0.5));
            u90.push(percentile(&mut upload_ms, 0.9));
            r50.push(percentile(&mut result_ms, 0.5));
            r90.push(percentile(&mut result_ms, 0.9));
        }
    }
    stop.cancel();
    let _ = worker.await;
    println!("{}; median (min–max) over {} rounds of {} uploads, after one untimed round", crate::bench::machine(), a.model.repeats, a.uploads);
    println!("{}x{} JPEGs, one at a time, idle stack", 2592, 1944);
    println!("upload alone (201 received)   p50 {} ms   p90 {} ms", crate::bench::spread(&u50), crate::bench::spread(&u90));
    println!("upload to result in Postgres  p50 {} ms   p90 {} ms", crate::bench::spread(&r50), crate::bench::spread(&r90));
    let (m_u, m_r) = (crate::bench::median(&u50), crate::bench::median(&r50));
    println!("scoring adds {:.1} ms at p50; goal: upload to result p50 < 500 ms", m_r - m_u);
    Ok(())
}

/// The `p` quantile of `v` (nearest rank).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}
