//! `fundus worker`: claims scoring jobs in batches, fetches the photos
//! concurrently, preprocesses them on the rayon pool, scores them on the model
//! thread with dynamic batching, stores heatmaps for the photos routed to
//! review, and finishes the jobs as their holder, as many per transaction as
//! are ready together (group commit: one transaction per scored batch under
//! load, no waiting when idle).
//!
//! Failures are of two kinds. A photo that cannot be scored (missing object,
//! wrong digest, undecodable, a panic) fails its attempt: retried with
//! exponential backoff, dead-lettered with its last error after the job's
//! `max_attempts`. A service outage (store or database) is not the photo's
//! fault: the worker keeps the job, under heartbeat, and retries until the
//! service is back, so an outage never burns attempts. On shutdown it stops
//! claiming, gives in-flight jobs `grace` to finish and releases the rest
//! without counting their attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use db::queue::{self, Claimed};
use store::Store;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batcher::{BatchConfig, Batcher};
use crate::metrics::Metrics;
use crate::pipeline::{heatmap_key, heatmap_png, on_rayon, prepare};
use crate::registry::{self, ModelSource};
use crate::route::Routing;

mod finish;
use finish::{Finish, finisher};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Recorded as `locked_by`; unique per process.
    pub id: String,
    /// Jobs claimed per query.
    pub claim_batch: i64,
    /// Jobs held at once (fetching, preprocessing, scoring, finishing).
    pub in_flight: usize,
    pub lease: Duration,
    /// Poll interval when no NOTIFY arrives.
    pub poll: Duration,
    /// Backoff after a failed attempt: `retry_base * 2^(attempt-1)`, capped.
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub grace: Duration,
    pub batch: BatchConfig,
    pub routing: Routing,
    /// How often to check the MLflow alias for a new version.
    pub reload_every: Duration,
    /// Return once no job is queued or running (batch runs, benchmarks).
    pub exit_when_idle: bool,
    /// How long one job may wait out a store outage, or the model, before it
    /// is given back (attempt not counted) so that it does not hold a slot.
    pub patience: Duration,
}

impl WorkerConfig {
    pub fn new(id: String) -> WorkerConfig {
        WorkerConfig {
            id,
            claim_batch: 32,
            in_flight: 64,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            grace: Duration::from_secs(30),
            batch: BatchConfig { max_batch: 32, max_wait: Duration::from_millis(10) },
            routing: Routing::default(),
            reload_every: Duration::from_secs(30),
            exit_when_idle: false,
            patience: Duration::from_secs(120),
        }
    }
}

/// A worker id: host name, pid and a random suffix.
pub fn default_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
    format!("{host}-{}-{:04x}", std::process::id(), rand::rng().random::<u16>())
}

/// What a worker did before it returned.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub done: u64,
    pub retried: u64,
    pub dead: u64,
    pub released: u64,
    pub lost: u64,
    /// Database transactions that finished scored jobs (fewer than `done`
    /// when completions were grouped).
    pub finish_transactions: u64,
}

struct Ctx {
    cfg: WorkerConfig,
    pool: db::PgPool,
    store: Store,
    batcher: Batcher,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    held: Mutex<HashMap<i64, Claimed>>,
    summary: Mutex<Summary>,
    finish: mpsc::Sender<Finish>,
}

enum JobError {
    /// The photo's fault: counts as an attempt.
    Failed(String),
    /// The photo's bytes cannot be scored by this model however often it is
    /// tried (they do not decode, or hold no optic disc): dead-lettered to a
    /// person at once rather than retried.
    Unscorable(String),
    /// Not the photo's fault (stopping, an outage past `patience`, a model
    /// swap): give the job back without counting the attempt.
    Release,
}

impl Ctx {
    fn note(&self, f: impl FnOnce(&mut Summary)) {
        f(&mut self.summary.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Waits out an outage: false once the worker is stopping or the job
    /// has waited `patience`.
    async fn pause(&self, tries: u32, since: Instant) -> bool {
        if since.elapsed() >= self.cfg.patience {
            return false;
        }
        let d = Duration::from_millis((200u64 << tries.min(5)).min(5_000));
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// Runs a store call until it succeeds, waiting out an outage for up to
    /// `patience`; a missing object is the photo's fault.
    async fn with_store<T, Fut>(&self, key: &str, op: impl Fn() -> Fut) -> Result<T, JobError>
    where
        Fut: std::future::Future<Output = Result<T, store::StoreError>>,
    {
        let (mut tries, since) = (0, Instant::now());
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_not_found() => return Err(JobError::Failed(format!("object_missing: object {key} is missing from the store"))),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "store unavailable; retrying");
                    if !self.pause(tries, since).await {
                        return Err(JobError::Release);
                    }
                    tries += 1;
                }
            }
        }
    }

    fn backoff(&self, attempt: i32) -> f64 {
        let base = self.cfg.retry_base.as_secs_f64() * 2f64.powi(attempt.max(1) - 1);
        base.min(self.cfg.retry_max.as_secs_f64()) * rand::rng().random_range(0.8..1.2)
    }
}

/// Runs until `stop` is cancelled (or, with `exit_when_idle`, the queue is empty).
pub async fn run(
    cfg: WorkerConfig,
    pool: db::PgPool,
    store: Store,
    source: ModelSource,
    device: tch::Device,
    precision: model::Precision,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<Summary> {
    let model = registry::load(&source, device, precision, Some(&pool)).await?;
    tracing::info!(worker = %cfg.id, model = %model.name, version = %model.version, ?device, "worker started");
    metrics.model_in_use(&model.name, &model.version);
    let m = metrics.clone();
    let batcher = Batcher::start(model, cfg.batch, cfg.routing, move |s| {
        m.batch_size.observe(s.size as f64);
        m.inference_seconds.observe(s.seconds);
    });
    let (finish, finishing) = mpsc::channel(cfg.in_flight.max(1));
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        pool: pool.clone(),
        store,
        batcher,
        metrics,
        stop: stop.clone(),
        held: Mutex::new(HashMap::new()),
        summary: Mutex::new(Summary::default()),
        finish,
    });
    let wake = Arc::new(Notify::new());
    let background = CancellationToken::new();
    tokio::spawn(listen(pool.clone(), wake.clone(), background.clone()));
    tokio::spawn(heartbeat(ctx.clone(), background.clone()));
    tokio::spawn(finisher(ctx.clone(), finishing, background.clone()));
    if matches!(source, ModelSource::Alias { .. }) {
        tokio::spawn(reload(ctx.clone(), source, device, precision, background.clone()));
    }

    let slots = Arc::new(Semaphore::new(cfg.in_flight));
    let mut tasks = JoinSet::new();
    let mut last_reclaim = Instant::now() - cfg.poll;
    let mut claim_failures = 0u32;
    while !stop.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => p?,
        };
        let more = (cfg.claim_batch - 1).min(slots.available_permits() as i64);
        let mut permits = vec![first];
        if more > 0 {
            permits.push(slots.clone().try_acquire_many_owned(more as u32)?);
        }
        if last_reclaim.elapsed() >= cfg.poll {
            last_reclaim = Instant::now();
            match queue::reclaim_expired(&pool, cfg.lease.as_secs_f64()).await {
                Ok((0, 0)) => {}
                Ok((requeued, dead)) => tracing::warn!(requeued, dead, "expired leases put back"),
                Err(e) => tracing::warn!(error = %e, "reclaiming expired leases"),
            }
        }
        let t = Instant::now();
        let claimed = match queue::claim(&pool, &cfg.id, 1 + more, cfg.lease.as_secs_f64()).await {
            Ok(c) => {
                claim_failures = 0;
                ctx.metrics.claim_seconds.observe(t.elapsed().as_secs_f64());
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming jobs failed; retrying");
                drop(permits);
                if !ctx.pause(claim_failures, Instant::now()).await {
                    break;
                }
                claim_failures += 1;
                continue;
            }
        };
        if claimed.is_empty() {
            drop(permits);
            if cfg.exit_when_idle && tasks.is_empty() {
                if let Ok(d) = queue::depth(&pool).await {
                    if d.queued == 0 && d.running == 0 {
                        break;
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = wake.notified() => {},
                _ = tokio::time::sleep(cfg.poll) => {},
                _ = tasks.join_next(), if !tasks.is_empty() => {},
            }
            continue;
        }
        // One permit per claimed job; any left over go back.
        let mut singles = Vec::new();
        for p in permits {
            let mut p = p;
            while p.num_permits() > 1 {
                singles.push(p.split(1).expect("permit"));
            }
            singles.push(p);
        }
        {
            let mut held = ctx.held.lock().unwrap_or_else(|p| p.into_inner());
            for j in &claimed {
                held.insert(j.id, j.clone());
            }
        }
        for (job, permit) in claimed.into_iter().zip(singles) {
            let ctx = ctx.clone();
            tasks.spawn(async move {
                handle(&ctx, job).await;
                drop(permit);
            });
        }
    }

    // Stop claiming; give what is in flight `grace` to finish, then release the rest.
    let deadline = tokio::time::sleep(cfg.grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = tasks.join_next() => if r.is_none() { break },
            _ = &mut deadline => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    let left: Vec<Claimed> = ctx.held.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, j)| j).collect();
    for job in left {
        // A shutdown is not the job's fault: this give-back is not counted.
        match queue::release(&pool, &job, &cfg.id, 0.0, false).await {
            Ok(queue::Released::Queued | queue::Released::Dead) => {
                ctx.note(|s| s.released += 1);
                ctx.metrics.outcome("released");
            }
            Ok(queue::Released::NotHeld) => ctx.note(|s| s.lost += 1),
            Err(e) => tracing::warn!(job = job.id, error = %e, "could not release; its lease will expire"),
        }
    }
    background.cancel();
    let summary = *ctx.summary.lock().unwrap_or_else(|p| p.into_inner());
    tracing::info!(worker = %cfg.id, ?summary, "worker stopped");
    Ok(summary)
}

async fn handle(ctx: &Arc<Ctx>, job: Claimed) {
    let started = Instant::now();
    let r = score_one(ctx, &job).await;
    let worker = &ctx.cfg.id;
    let mut tries = 0;
    // Recording the outcome survives a database outage: retry until it is back.
    loop {
        let db_result = match &r {
            Ok(None) => Ok("lost"),
            Ok(Some(())) => Ok("done"),
            Err(e @ (JobError::Failed(msg) | JobError::Unscorable(msg))) => {
                let backoff = ctx.backoff(job.attempts);
                let last = matches!(e, JobError::Unscorable(_));
                queue::fail(&ctx.pool, &job, worker, backoff, msg, last).await.map(|o| match o {
                    Some(true) => "dead",
                    Some(false) => "retry",
                    None => "lost",
                })
            }
            // Ready again in a few seconds: an outage or a swap is likely still on.
            // Counted: a photo given back again and again is dead-lettered.
            Err(JobError::Release) => queue::release(&ctx.pool, &job, worker, 5.0, true).await.map(|r| match r {
                queue::Released::Queued => "released",
                queue::Released::Dead => "dead",
                queue::Released::NotHeld => "lost",
            }),
        };
        match db_result {
            Ok(outcome) => {
                match outcome {
                    "done" => ctx.note(|s| s.done += 1),
                    "retry" => ctx.note(|s| s.retried += 1),
                    "dead" => ctx.note(|s| s.dead += 1),
                    "released" => ctx.note(|s| s.released += 1),
                    _ => ctx.note(|s| s.lost += 1),
                }
                if let Err(JobError::Failed(msg) | JobError::Unscorable(msg)) = &r {
                    tracing::warn!(job = job.id, image = %job.image_id, attempt = job.attempts, outcome, error = %msg, "job failed");
                }
                ctx.metrics.outcome(outcome);
                ctx.metrics.job_seconds.observe(started.elapsed().as_secs_f64());
                break;
            }
            Err(e) if e.is_unavailable() && tries < 60 => {
                tracing::warn!(job = job.id, error = %e, "database unavailable; retrying");
                tokio::time::sleep(Duration::from_millis((200u64 << tries.min(4)).min(3_000))).await;
                tries += 1;
            }
            Err(e) => {
                tracing::error!(job = job.id, error = %e, "could not record the job's outcome; its lease will expire");
                break;
            }
        }
    }
    // Only this claim's entry: the same job may have been claimed again since.
    let mut held = ctx.held.lock().unwrap_or_else(|p| p.into_inner());
    if held.get(&job.id).is_some_and(|h| h.attempts == job.attempts) {
        held.remove(&job.id);
    }
}

/// Scores one photo and finishes its job. `Ok(None)`: the lease was lost.
async fn score_one(ctx: &Arc<Ctx>, job: &Claimed) -> Result<Option<()>, JobError> {
    let bytes = ctx.with_store(&job.object_key, || ctx.store.get(&job.object_key)).await?;
    if Sha256::digest(&bytes)[..] != job.sha256[..] {
        return Err(JobError::Failed(format!("digest_mismatch: object {} does not match the upload's SHA-256", job.object_key)));
    }
    let model = ctx.batcher.model();
    let prep = model.preprocessing.clone();
    let prepared = on_rayon(move || prepare(&bytes, &prep))
        .await
        .map_err(|e| format!("preprocess_panic: {e}"))
        .and_then(|r| r)
        .map_err(JobError::Unscorable)?;
    let scored = match tokio::time::timeout(ctx.cfg.patience, ctx.batcher.score(prepared.chw, model.preprocessing.clone())).await {
        Ok(Ok(s)) => s,
        // A model swapped in meanwhile, or a stopping model thread: not the photo's fault.
        Ok(Err(e)) if e.starts_with("model_changed") || e.starts_with("model_stopped") => {
            tracing::info!(job = job.id, error = %e, "giving the job back");
            return Err(JobError::Release);
        }
        Ok(Err(e)) => return Err(JobError::Failed(e)),
        Err(_) => {
            tracing::error!(job = job.id, "the model did not answer within {:?}; giving the job back", ctx.cfg.patience);
            return Err(JobError::Release);
        }
    };
    // A model that gives NaN or infinity has failed; its output decides nothing.
    if !(scored.glaucoma.is_finite() && scored.gradable.is_finite()) {
        return Err(JobError::Failed(format!(
            "model_error: the model gave a non-finite score (glaucoma {}, gradability {})",
            scored.glaucoma, scored.gradable
        )));
    }
    ctx.metrics.images_scored.inc();
    let mut key = None;
    if let Some(map) = scored.map.clone() {
        let k = heatmap_key(&job.image_id, &scored.model.version_id);
        let crop = prepared.crop;
        let png = on_rayon(move || heatmap_png(&crop, &map))
            .await
            .map_err(|e| JobError::Failed(format!("heatmap_failed: {e}")))?;
        let png = Bytes::from(png);
        // Where it lies first: a heatmap is never shown without its place.
        let (bk, bx) = (store::heatmap_box_key(&k), Bytes::from(store::box_text(&prepared.glaucoma_box)));
        ctx.with_store(&bk, || ctx.store.put(&bk, bx.clone())).await?;
        ctx.with_store(&k, || ctx.store.put(&k, png.clone())).await?;
        key = Some(k);
    }
    // QA reads are blinded, so a photo drawn for the sample needs no heatmap.
    let (decision, qa_sampled) = ctx.cfg.routing.qa_sample(scored.decision, job.image_id);
    let outcome = queue::Outcome {
        model_version_id: scored.model.version_id,
        glaucoma: scored.glaucoma,
        gradable: scored.gradable,
        label: decision.label,
        heatmap_key: key,
        review: decision.review,
        qa_rate: ctx.cfg.routing.qa_rate,
        qa_sampled,
        threshold: scored.model.threshold,
        gradable_threshold: ctx.cfg.routing.gradable_threshold,
        uncertainty_band: scored.model.threshold - scored.model.band_floor(&ctx.cfg.routing),
    };
    let (reply, fate) = oneshot::channel();
    if ctx.finish.send(Finish { job: job.clone(), outcome, reply }).await.is_err() {
        return Err(JobError::Release);
    }
    match fate.await {
        Ok(Ok(true)) => Ok(Some(())),
        Ok(Ok(false)) => {
            tracing::warn!(job = job.id, "lease lost before completion; another worker has the job");
            Ok(None)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(JobError::Release),
    }
}

/// Wakes the claim loop on NOTIFY; reconnects after an outage.
async fn listen(pool: db::PgPool, wake: Arc<Notify>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let mut l = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if l.listen("fundus_jobs").await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                n = l.try_recv() => match n {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection dropped: notifications may be lost, so look now.
                    Ok(None) => wake.notify_one(),
                    Err(_) => break,
                },
            }
        }
    }
}

/// Extends the leases of held jobs every third of a lease, and samples the queue depth.
async fn heartbeat(ctx: Arc<Ctx>, stop: CancellationToken) {
    let every = ctx.cfg.lease / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {},
        }
        let ids: Vec<i64> = ctx.held.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        if !ids.is_empty() {
            match queue::heartbeat(&ctx.pool, &ctx.cfg.id, &ids, ctx.cfg.lease.as_secs_f64()).await {
                Ok(kept) if kept.len() < ids.len() => {
                    tracing::warn!(lost = ids.len() - kept.len(), "leases lost (expired and reclaimed elsewhere)");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
        if let Ok(d) = queue::depth(&ctx.pool).await {
            ctx.metrics.queue_depth(&d);
            ctx.metrics.dead_jobs.set(d.dead);
        }
    }
}

/// Follows the MLflow alias: loads a new version beside the current one and
/// swaps it in between batches; no job is dropped.
async fn reload(ctx: Arc<Ctx>, source: ModelSource, device: tch::Device, precision: model::Precision, stop: CancellationToken) {
    // The version last loaded (the model thread swaps it in after the photos queued before it).
    let mut current = ctx.batcher.model().version.clone();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(ctx.cfg.reload_every) => {},
        }
        match source.current_version().await {
            Ok(Some(v)) if v != current => match registry::load(&source, device, precision, Some(&ctx.pool)).await {
                Ok(m) => {
                    tracing::info!(from = %current, to = %m.version, "the alias moved; swapping in the new version");
                    current = m.version.clone();
                    let (b, name) = (ctx.batcher.clone(), m.name.clone());
                    let _ = tokio::task::spawn_blocking(move || b.swap(m)).await;
                    ctx.metrics.model_in_use(&name, &current);
                }
                Err(e) => tracing::warn!(error = %e, "could not load the new model version; keeping {current}"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checking the model alias"),
        }
    }
}
