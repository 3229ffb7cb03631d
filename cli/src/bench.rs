//! `fundus bench …`: benchmarks that print their figures, each against a
//! baseline measured in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// Uploads through `fundus serve` against direct PUTs of the same bytes to
    /// the same object store: throughput, latency and the server's memory.
    Upload(UploadArgs),
    /// Preprocessing of 12 MP phone JPEGs against a Python peer (PIL +
    /// torchvision) and libjpeg-turbo's `djpeg -scale 1/8` as the floor.
    Preprocess(PreprocessArgs),
    /// `fundus score` on phone-like JPEGs against a Python peer (PIL +
    /// torchvision + the same weights as TorchScript) and model-only forward.
    Score {
        #[command(flatten)]
        model: crate::bench_score::BenchModel,
        /// The project's Python venv (torch, torchvision, pillow).
        #[arg(long, env = "FUNDUS_VENV")]
        venv: std::path::PathBuf,
    },
    /// The worker end to end through the queue against model-only forward.
    Worker(crate::bench_score::WorkerBenchArgs),
    /// Upload-to-result latency on an idle stack against the upload alone.
    Latency(crate::bench_score::LatencyArgs),
    /// Claim + complete per second on one Postgres.
    Queue(crate::bench_queue::QueueArgs),
    /// The review worklist over 100,000 open items against the bare SELECT,
    /// and photo preview latency.
    Review(crate::bench_review::ReviewBenchArgs),
    /// The Mesos scaling policy against a simulated cluster through a day,
    /// beside static pools.
    MesosSim(cluster::sim::SimArgs),
    /// A batch screened by two workers while one is SIGKILLed every 20 s,
    /// Postgres and the store restarted once each: every photo scored
    /// exactly once, nothing dead, nothing orphaned.
    Soak(crate::bench_soak::SoakArgs),
}

#[derive(clap::Args)]
pub struct PreprocessArgs {
    /// How many photos (written once to --dir, reused on later runs).
    #[arg(long, default_value_t = 48)]
    pub n: usize,
    /// Timed runs of each side, alternating, after one untimed warm-up run.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    #[arg(long, default_value = ".stack/bench/preprocess")]
    pub dir: std::path::PathBuf,
    /// Model input size.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// The project's Python venv (torch, torchvision, pillow).
    #[arg(long, env = "FUNDUS_VENV")]
    pub venv: std::path::PathBuf,
}

#[derive(clap::Args)]
pub struct UploadArgs {
    /// A superuser URL: the benchmark creates (and drops) its own database.
    #[arg(long, env = "FUNDUS_PG_SUPERUSER_URL")]
    superuser_url: String,
    #[command(flatten)]
    store: ingest::StoreArgs,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Uploads per side and run (each a distinct photo).
    #[arg(long, default_value_t = 192)]
    uploads: usize,
    /// Approximate size of each JPEG, in MB.
    #[arg(long, default_value_t = 3.0)]
    size_mb: f64,
    /// Timed runs of each side, alternating, after one untimed.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

pub async fn run(b: Bench) -> anyhow::Result<()> {
    match b {
        Bench::Upload(a) => upload(a).await,
        Bench::Preprocess(a) => crate::bench_preprocess::run(a),
        Bench::Score { model, venv } => crate::bench_score::score(model, venv).await,
        Bench::Worker(a) => crate::bench_score::worker(a).await,
        Bench::Latency(a) => crate::bench_score::latency(a).await,
        Bench::Queue(a) => crate::bench_queue::queue(a).await,
        Bench::Review(a) => crate::bench_review::review(a).await,
        Bench::MesosSim(a) => cluster::sim::run(&a),
        Bench::Soak(a) => crate::bench_soak::soak(a).await,
    }
}

/// Median, least and greatest of repeated measurements.
pub fn median_min_max(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => (f64::NAN, f64::NAN, f64::NAN),
        n => (if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }, v[0], v[n - 1]),
    }
}

pub fn median(v: &[f64]) -> f64 {
    median_min_max(v).0
}

/// "median (min–max)" of repeated measurements.
pub fn spread(v: &[f64]) -> String {
    let (m, lo, hi) = median_min_max(v);
    format!("{m:.2} ({lo:.2}–{hi:.2})")
}

/// The machine a benchmark ran on: cores and load average, printed with every result.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("{cores} cores, load average {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// A phone-sized synthetic photo with sensor-like noise, so that it compresses
/// like a real one; noise is raised until the JPEG reaches `target` bytes.
fn base_photo(target: usize) -> Vec<u8> {
    let clean = imaging::synth::render(&imaging::synth::Params::sample(
        &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(11),
        &[(2592, 1944)],
    ));
    let mut jpeg = Vec::new();
    for amplitude in 0..=64u64 {
        let mut img = clean.clone();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for c in img.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = (state % (2 * amplitude + 1)) as i32 - amplitude as i32;
            *c = (*c as i32 + n).clamp(0, 255) as u8;
        }
        jpeg = imaging::synth::to_jpeg(&img, 95);
        if jpeg.len() >= target {
            break;
        }
    }
    jpeg
}

/// The same photo made distinct, at the same size, by the last three entries
/// of its first quantisation table (the highest frequencies): a valid photo
/// whose pixels differ a little. Metadata would not do: de-identification
/// removes comments and application segments before the photo is stored,
/// and the copies would all be one photo.
fn variant(base: &[u8], i: usize) -> Bytes {
    let mut v = base.to_vec();
    let dqt = v.windows(2).position(|w| w == [0xFF, 0xDB]).expect("the base photo has a quantisation table");
    // Marker, length, precision and id, then 64 entries of 8 bits.
    let last = dqt + 4 + 1 + 63;
    let mut k = i;
    for entry in &mut v[last - 2..=last] {
        *entry = 1 + (k % 255) as u8;
        k /= 255;
    }
    assert!(k == 0, "more than 255^3 variants");
    Bytes::from(v)
}

struct Run {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `n` jobs on `clients` concurrent tasks; each job must succeed.
async fn drive<F, Fut>(n: usize, clients: usize, job: F) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(lat);
                }
                let t = Instant::now();
                job(i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Ok(Run { per_sec: n as f64 / elapsed.as_secs_f64(), p50: pct(0.5), p99: pct(0.99) })
}

/// CPU seconds (user + system) used so far by every process whose name is
/// `comm`, or by `pid`.
fn cpu_secs(comm: Option<&str>, pid: Option<u32>) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // pid (comm) state ... field 14 utime, 15 stime; comm may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = &stat[open + 1..close];
        if comm.is_some_and(|c| c == name) || pid == Some(p) {
            let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            total += (t(11) + t(12)) / ticks;
        }
    }
    total
}

/// CPU seconds by the server, Garage, Postgres and this load generator.
fn cpu_by_part(server: Option<u32>) -> [f64; 4] {
    [
        server.map_or(0.0, |p| cpu_secs(None, Some(p))),
        cpu_secs(Some("garage"), None),
        cpu_secs(Some("postgres"), None),
        cpu_secs(None, Some(std::process::id())),
    ]
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Removes every object under `store` (a benchmark's own prefix), a few at a time.
pub async fn empty(store: &ingest::Store) -> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let keys = store.list("").await?;
    futures::stream::iter(keys).map(|k| async move { store.delete(&k).await }).buffer_unordered(16).try_collect::<()>().await?;
    Ok(())
}

async fn upload(a: UploadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.clients > 0 && a.uploads >= a.clients, "need at least one upload per client");
    anyhow::ensure!(a.repeats >= 1, "--repeats must be at least 1");
    let stamp = format!("{}-{}", chrono_stamp(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let serve_args = a.store.under(&format!("bench-{stamp}/serve"));
    let served = ingest::Store::open(&serve_args)?;
    let direct = ingest::Store::open(&a.store.under(&format!("bench-{stamp}/direct")))?;
    let scratch = crate::bench_score::ScratchDb::create(&a.superuser_url, "upload").await?;
    let r = upload_in(&a, &scratch.url, &stamp, &serve_args, &direct).await;
    // What either side stored is of no further use: it goes with the database, also after a failure.
    let cleaned = empty(&served).await.and(empty(&direct).await);
    scratch.drop_db().await?;
    r.and(cleaned)
}

/// `serve_args`: the server's store; `direct_store`: the baseline's, beside it.
async fn upload_in(a: &UploadArgs, db_url: &str, stamp: &str, serve_args: &ingest::StoreArgs, direct_store: &ingest::Store) -> anyhow::Result<()> {
    let base = Arc::new(base_photo((a.size_mb * 1e6) as usize));
    eprintln!("photo: {:.2} MB JPEG, 2592x1944; {} uploads per side and run, {} clients", base.len() as f64 / 1e6, a.uploads, a.clients);

    // The server, as its own process so its memory can be read.
    let pool = db::connect(db_url, 2, Duration::from_secs(5))?;
    db::migrate(&pool).await?;
    let site = format!("bench-{stamp}");
    let site_id = db::access::site_create(&pool, &site).await?;
    let token = ingest::auth::new_token();
    db::access::device_create(&pool, site_id, "bench", &ingest::auth::hash_token(&token)).await?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("FUNDUS_LISTEN", addr.to_string())
        .env("FUNDUS_DATABASE_URL", db_url)
        .envs(serve_args.env())
        .env("FUNDUS_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting fundus serve")?;
    let pid = child.id().context("server pid")?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(a.clients).build()?;
    let api = format!("http://{addr}");
    let mut ready = false;
    for _ in 0..200 {
        if http.get(format!("{api}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(ready, "fundus serve did not become ready");
    let study: serde_json::Value = http
        .post(format!("{api}/v1/studies"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"patient_ref": "BENCH", "captured_at": "2026-01-01T00:00:00Z"}))
        .send()
        .await?
        .json()
        .await?;
    let study = study["id"].as_str().context("study id")?.to_owned();
    let idle_rss = rss_kib(pid, "VmRSS:");

    // Sample the server's RSS through the runs to show whether it stays flat.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };

    // The baseline, PUT straight into the same store, and the server,
    // alternating; every upload a distinct photo.
    let url = format!("{api}/v1/studies/{study}/images?eye=left");
    let n = a.uploads;
    let (mut direct, mut served) = (Vec::new(), Vec::new());
    let (mut cpu_direct, mut cpu_served) = ([0.0; 4], [0.0; 4]);
    let add = |acc: &mut [f64; 4], from: [f64; 4], to: [f64; 4]| (0..4).for_each(|i| acc[i] += to[i] - from[i]);
    for round in 0..=a.repeats {
        let first = round * n;
        let (b, s) = (base.clone(), direct_store.clone());
        let from = cpu_by_part(Some(pid));
        let d = drive(n, a.clients, move |i| {
            let (b, s) = (b.clone(), s.clone());
            async move {
                s.put_if_absent(&format!("raw/{}.jpg", first + i), variant(&b, first + i)).await?;
                Ok(())
            }
        })
        .await
        .context("direct PUT")?;
        let mid = cpu_by_part(Some(pid));
        let (b, h, url, token) = (base.clone(), http.clone(), url.clone(), token.clone());
        let v = drive(n, a.clients, move |i| {
            let (b, h, url, token) = (b.clone(), h.clone(), url.clone(), token.clone());
            async move {
                let r = h.post(url).bearer_auth(token).header("content-type", "image/jpeg").body(variant(&b, first + i)).send().await?;
                anyhow::ensure!(r.status() == reqwest::StatusCode::CREATED, "upload {i}: {} {}", r.status(), r.text().await?);
                Ok(())
            }
        })
        .await
        .context("uploads through fundus serve")?;
        let to = cpu_by_part(Some(pid));
        // The baseline's copies are of no further use (untimed).
        for i in 0..n {
            direct_store.delete(&format!("raw/{}.jpg", first + i)).await?;
        }
        if round > 0 {
            add(&mut cpu_direct, from, mid);
            add(&mut cpu_served, mid, to);
            direct.push(d);
            served.push(v);
        }
    }
    done.store(true, Ordering::Relaxed);
    let peak_rss = sampler.await?;
    let peak = rss_kib(pid, "VmHWM:");
    let _ = child.start_kill();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rates = |v: &[Run]| v.iter().map(|r| r.per_sec).collect::<Vec<_>>();
    let p99 = |v: &[Run]| v.iter().map(|r| ms(r.p99)).collect::<Vec<_>>();
    let p50 = |v: &[Run]| v.iter().map(|r| ms(r.p50)).collect::<Vec<_>>();
    println!("{}; median (min–max) of {} alternating runs each, after one untimed", machine(), a.repeats);
    for (name, v) in [("direct PUT to store", &direct), ("fundus serve", &served)] {
        println!("{name:<20} {} uploads/s   p50 {} ms   p99 {} ms", spread(&rates(v)), spread(&p50(v)), spread(&p99(v)));
    }
    println!("ratio of medians (serve / direct): {:.2}   (goal >= 0.6 here, 0.7 with the load generator on its own cores)", median(&rates(&served)) / median(&rates(&direct)));
    let uploads = (n * a.repeats) as f64;
    let per = |c: [f64; 4]| format!("server {:.1} / Garage {:.1} / Postgres {:.1} / load generator {:.1}", c[0] * 1e3 / uploads, c[1] * 1e3 / uploads, c[2] * 1e3 / uploads, c[3] * 1e3 / uploads);
    println!("CPU ms per upload, direct PUT:   {}", per(cpu_direct));
    println!("CPU ms per upload, fundus serve: {}", per(cpu_served));
    println!("server RSS: idle {} MiB; highest sampled {} MiB; peak (VmHWM) {} MiB", idle_rss / 1024, peak_rss / 1024, peak / 1024);
    Ok(())
}

fn chrono_stamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}", now.as_millis())
}

#[cfg(test)]
mod tests {
    /// Variants stay distinct after de-identification (the upload bench
    /// would otherwise upload one photo again and again) and pass the checks.
    #[test]
    fn variants_are_distinct_valid_photos() {
        let base = imaging::synth::to_jpeg(&imaging::synth::render(&imaging::synth::Params::healthy(640, 512, 1)), 90);
        let stored: Vec<Vec<u8>> = [0, 1, 254, 255, 70_000]
            .iter()
            .map(|&i| {
                let v = super::variant(&base, i);
                assert_eq!(v.len(), base.len());
                imaging::inspect(&v, imaging::Format::Jpeg, imaging::Limits::default()).expect("a valid photo");
                imaging::deidentify(&v, imaging::Format::Jpeg).expect("de-identified")
            })
            .collect();
        for (a, x) in stored.iter().enumerate() {
            for y in &stored[a + 1..] {
                assert_ne!(x, y);
            }
        }
    }
}
