//! `fundus worker`, `fundus batch`, `fundus score` and `fundus export`: thin
//! wrappers over the inference crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use inference::{BatchConfig, ModelSource, Routing, WorkerConfig};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// The model: `models:/NAME@ALIAS` from the MLflow registry, or a model
    /// directory (ours, or a TorchScript export with its card).
    #[arg(long, env = "FUNDUS_MODEL", default_value = "models:/fundus-glaucoma@champion")]
    pub model: String,
    /// MLflow tracking server, for `models:/` sources.
    #[arg(long, env = "FUNDUS_MLFLOW_URI")]
    pub tracking_uri: Option<String>,
    /// Where registry versions are downloaded to.
    #[arg(long, env = "FUNDUS_MODEL_CACHE", default_value = "fundus-data/models")]
    pub model_cache: PathBuf,
    /// Compute precision: auto is bf16 on a GPU and f32 on the CPU.
    #[arg(long, value_enum, default_value_t = model::Precision::Auto)]
    pub precision: model::Precision,
    /// Run on the CPU even when a GPU is present.
    #[arg(long)]
    pub cpu: bool,
    /// Most photos per forward pass.
    #[arg(long, env = "FUNDUS_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// Longest wait (ms) for a batch to fill once its first photo arrived.
    #[arg(long, env = "FUNDUS_MAX_WAIT_MS", default_value_t = 10)]
    pub max_wait_ms: u64,
    /// Photos whose gradability probability is below this are ungradable.
    #[arg(long, default_value_t = 0.5)]
    pub gradable_threshold: f32,
    /// Non-referable photos whose odds of glaucoma are within this factor of
    /// the threshold's go to review as uncertain (1: no band). Default: the
    /// model card's, or 2 for cards without one.
    #[arg(long)]
    pub uncertain_odds: Option<f32>,
    /// Fraction of the photos called non-referable that clinicians read anyway,
    /// blinded (the internal QA sample; drawn reproducibly from the image id).
    #[arg(long, env = "FUNDUS_QA_RATE", default_value_t = 0.10)]
    pub qa_rate: f32,
}

impl ModelArgs {
    pub fn source(&self) -> anyhow::Result<ModelSource> {
        ModelSource::parse(&self.model, self.tracking_uri.as_deref(), &self.model_cache)
    }
    pub fn device(&self) -> tch::Device {
        if self.cpu { tch::Device::Cpu } else { tch::Device::cuda_if_available() }
    }
    pub fn batch(&self) -> anyhow::Result<BatchConfig> {
        anyhow::ensure!((1..=4096).contains(&self.max_batch), "--max-batch must be 1 to 4096, not {}", self.max_batch);
        Ok(BatchConfig { max_batch: self.max_batch, max_wait: Duration::from_millis(self.max_wait_ms) })
    }
    pub fn routing(&self) -> anyhow::Result<Routing> {
        anyhow::ensure!((0.0..=1.0).contains(&self.gradable_threshold), "--gradable-threshold must be within 0..1");
        if let Some(o) = self.uncertain_odds {
            model::calibrate::check_odds(o).map_err(|e| anyhow::anyhow!("--uncertain-odds: {e}"))?;
        }
        anyhow::ensure!((0.0..=1.0).contains(&self.qa_rate), "--qa-rate must be within 0..1");
        Ok(Routing { gradable_threshold: self.gradable_threshold, uncertain_odds: self.uncertain_odds, qa_rate: self.qa_rate })
    }
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    db: ingest::DbArgs,
    #[command(flatten)]
    store: ingest::StoreArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Name recorded on claimed jobs (default: host-pid-random).
    #[arg(long, env = "FUNDUS_WORKER_ID")]
    id: Option<String>,
    /// Jobs claimed per query.
    #[arg(long, default_value_t = 32)]
    claim_batch: i64,
    /// Jobs held at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Lease per claim, in seconds (renewed every third).
    #[arg(long, default_value_t = 60.0)]
    lease_secs: f64,
    /// Poll interval in seconds, besides NOTIFY.
    #[arg(long, default_value_t = 2.0)]
    poll_secs: f64,
    /// First retry delay in seconds after a failed attempt; doubles each time.
    #[arg(long, default_value_t = 5.0)]
    retry_secs: f64,
    /// Seconds to finish jobs in flight after SIGTERM before releasing them.
    #[arg(long, default_value_t = 30.0)]
    grace_secs: f64,
    /// Seconds between checks of the MLflow alias.
    #[arg(long, default_value_t = 30.0)]
    reload_secs: f64,
    /// Seconds one job may wait out a store outage (or the model) before it
    /// is given back without counting the attempt.
    #[arg(long, default_value_t = 120.0)]
    patience_secs: f64,
    /// Exit once nothing is queued or running.
    #[arg(long)]
    exit_when_idle: bool,
    /// Serve /metrics here.
    #[arg(long, env = "FUNDUS_WORKER_METRICS")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    influx: crate::influx::InfluxArgs,
}

/// A pool on the configured database, its migrations applied.
async fn migrated_pool(args: &ingest::DbArgs) -> anyhow::Result<db::PgPool> {
    let pool = args.connect()?;
    db::migrate(&pool).await.context("database")?;
    Ok(pool)
}

fn secs(name: &str, v: f64, min: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(v.is_finite() && v >= min && v <= 86_400.0, "--{name} must be between {min} and 86400 seconds, not {v}");
    Ok(Duration::from_secs_f64(v))
}

pub async fn worker(a: WorkerArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let mut cfg = WorkerConfig::new(a.id.clone().unwrap_or_else(inference::worker::default_id));
    anyhow::ensure!((1..=1000).contains(&a.claim_batch), "--claim-batch must be 1 to 1000");
    anyhow::ensure!(a.in_flight >= 1, "--in-flight must be at least 1");
    cfg.claim_batch = a.claim_batch;
    cfg.in_flight = a.in_flight;
    cfg.lease = secs("lease-secs", a.lease_secs, 1.0)?;
    cfg.poll = secs("poll-secs", a.poll_secs, 0.01)?;
    cfg.retry_base = secs("retry-secs", a.retry_secs, 0.0)?;
    cfg.grace = secs("grace-secs", a.grace_secs, 0.0)?;
    cfg.reload_every = secs("reload-secs", a.reload_secs, 0.1)?;
    cfg.batch = a.model.batch()?;
    cfg.routing = a.model.routing()?;
    cfg.exit_when_idle = a.exit_when_idle;
    cfg.patience = secs("patience-secs", a.patience_secs, 1.0)?;
    let pool = migrated_pool(&a.db).await?;
    let store = ingest::Store::open(&a.store)?;
    let metrics = Arc::new(inference::metrics::Metrics::default());
    if let Some(addr) = a.metrics_listen {
        let m = metrics.clone();
        ingest::ops::serve_metrics(addr, move || m.encode()).await?;
    }
    let pushing = CancellationToken::new();
    let m = metrics.clone();
    let pusher = crate::influx::spawn(&a.influx, move || std::future::ready(m.encode()), pushing.clone())?;
    let source = a.model.source()?;
    let s = inference::worker::run(cfg, pool, store, source, a.model.device(), a.model.precision, metrics, stop).await;
    // The last figures go out before the worker exits.
    pushing.cancel();
    if let Some(p) = pusher {
        let _ = p.await;
    }
    let s = s?;
    eprintln!("worker stopped: {} done, {} retried, {} dead-lettered, {} released, {} lost", s.done, s.retried, s.dead, s.released, s.lost);
    Ok(())
}

#[derive(clap::Args)]
pub struct BatchArgs {
    #[command(flatten)]
    db: ingest::DbArgs,
    #[command(flatten)]
    store: ingest::StoreArgs,
    /// Screen every object under this store prefix.
    #[arg(long, conflicts_with = "manifest", required_unless_present = "manifest")]
    prefix: Option<String>,
    /// Screen the files a CSV lists (`path`, optional `label`, `eye`).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Let manifest paths point outside the manifest's folder (absolute
    /// paths, `..`, links out of it); refused by default.
    #[arg(long, requires = "manifest", visible_alias = "allow-absolute")]
    allow_outside: bool,
    /// Where report.csv, report.html and summary.json go.
    #[arg(long, default_value = "fundus-data/report")]
    report: PathBuf,
    /// Where clinicians reach the review UI; the report links its photos there.
    #[arg(long, env = "FUNDUS_REVIEW_URL", default_value = "http://127.0.0.1:8080")]
    review_url: String,
    /// Register and enqueue only; don't wait for the scores.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this many seconds (the jobs stay queued).
    #[arg(long)]
    timeout_secs: Option<u64>,
    #[arg(long, default_value_t = 30_000_000)]
    max_bytes: u64,
    #[arg(long, default_value_t = 100)]
    max_megapixels: u32,
    #[arg(long, default_value_t = 512)]
    min_side: u32,
}

pub async fn batch(a: BatchArgs) -> anyhow::Result<()> {
    let pool = migrated_pool(&a.db).await?;
    let store = ingest::Store::open(&a.store)?;
    let source = match (a.prefix, a.manifest) {
        (Some(p), None) => inference::screen::Source::Prefix(p),
        (None, Some(m)) => inference::screen::Source::Manifest { path: m, allow_outside: a.allow_outside },
        _ => anyhow::bail!("give one of --prefix or --manifest"),
    };
    let limits = imaging::Limits { max_megapixels: a.max_megapixels, min_side: a.min_side };
    let reg = inference::screen::register(&pool, &store, &source, limits, a.max_bytes).await?;
    eprintln!(
        "batch {}: {} registered, {} already registered, {} rejected",
        reg.batch_id,
        reg.added,
        reg.skipped,
        reg.rejected.len()
    );
    for (name, why) in &reg.rejected {
        eprintln!("  rejected {name}: {why}");
    }
    if !a.no_wait {
        let p = inference::screen::wait(&pool, reg.batch_id, true, a.timeout_secs.map(Duration::from_secs)).await?;
        eprintln!("{} of {} scored, {} dead-lettered", p.done, p.total, p.dead);
    }
    let s = inference::screen::report(&pool, &reg, &a.report, &a.review_url).await?;
    println!(
        "report: {} ({} photos: {} scored, {} referable, {} ungradable, {} to review, {} dead-lettered, {} rejected{})",
        a.report.join("report.html").display(),
        s.photos,
        s.scored,
        s.referable,
        s.ungradable,
        s.in_review,
        s.dead,
        s.rejected,
        match (s.auc, s.sensitivity, s.specificity) {
            (Some(auc), Some(se), Some(sp)) => format!("; AUC {auc:.4}, sensitivity {se:.3}, specificity {sp:.3} on {} labelled", s.labelled),
            _ => String::new(),
        }
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// Folder of photos (.jpg, .jpeg, .png, .dcm), searched recursively.
    dir: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// The CSV to write.
    #[arg(long, default_value = "scores.csv")]
    out: PathBuf,
    /// Write heatmaps of the photos routed to review into this folder.
    #[arg(long)]
    heatmaps: Option<PathBuf>,
}

pub async fn score(a: ScoreArgs) -> anyhow::Result<()> {
    let model = inference::registry::load(&a.model.source()?, a.model.device(), a.model.precision, None).await?;
    let (batch, routing) = (a.model.batch()?, a.model.routing()?);
    let (name, version) = (model.name.clone(), model.version.clone());
    let s = tokio::task::spawn_blocking(move || {
        inference::offline::score_dir(model, &a.dir, &a.out, a.heatmaps.as_deref(), batch, routing, true).map(|s| (s, a.out))
    })
    .await??;
    let (s, out) = s;
    println!(
        "{} photos in {:.1} s ({:.1}/s) with {name} {version}: {} referable, {} ungradable, {} failed; {}",
        s.photos,
        s.seconds,
        s.photos as f64 / s.seconds,
        s.referable,
        s.ungradable,
        s.failed,
        out.display()
    );
    anyhow::ensure!(s.failed < s.photos, "no photo could be scored");
    Ok(())
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A model directory of ours (model_card.json, weights.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Where model.pt and its card go.
    #[arg(long)]
    out: PathBuf,
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let p = model::score::export_torchscript(&a.model, &a.out)?;
    println!("TorchScript model: {} (normalised [N,3,S,S] in, [N,2] logits out)", p.display());
    Ok(())
}
