//! The work queue: claim in batches with `FOR UPDATE SKIP LOCKED` under a
//! lease, heartbeat, and finish, fail or release only as the holder (same
//! worker, same attempt). Results are written once per (image, model version)
//! in the transaction that finishes the job.

use uuid::Uuid;

use crate::{PgPool, Result};

/// A claimed job and what the worker needs to fetch its photo.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub image_id: Uuid,
    /// This claim's attempt number: part of the holder check.
    pub attempts: i32,
    pub max_attempts: i32,
    pub priority: i16,
    pub object_key: String,
    pub format: String,
    pub sha256: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub queued: i64,
    /// Of `queued`, those ahead of batch work (phone uploads).
    pub urgent: i64,
    pub running: i64,
    pub dead: i64,
}

/// What the worker concluded about one photo.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub model_version_id: Uuid,
    pub glaucoma: f32,
    pub gradable: f32,
    /// `referable`, `non_referable` or `ungradable`.
    pub label: &'static str,
    pub heatmap_key: Option<String>,
    /// `referable`, `ungradable`, `uncertain` or `qa_sample` when a clinician should look.
    pub review: Option<&'static str>,
    /// The QA sampling rate in force, and whether this photo was drawn.
    pub qa_rate: f32,
    pub qa_sampled: bool,
    /// The model's operating threshold and the routing that decided `label` and `review`.
    pub threshold: f32,
    pub gradable_threshold: f32,
    /// How far below `threshold` (in probability) the uncertain band reached.
    pub uncertainty_band: f32,
}

/// Puts jobs with expired leases back (or dead-letters them). Returns
/// (requeued, dead).
/// Requeues (or dead-letters) the jobs whose leases ran out; within
/// `lease_secs` of the database's start, only leases that ran out since.
pub async fn reclaim_expired(pool: &PgPool, lease_secs: f64) -> Result<(i64, i64)> {
    let r = sqlx::query_file!("queries/queue_reclaim_expired.sql", lease_secs).fetch_one(pool).await?;
    Ok((r.requeued, r.dead))
}

pub async fn claim(pool: &PgPool, worker: &str, n: i64, lease_secs: f64) -> Result<Vec<Claimed>> {
    let rows = sqlx::query_file!("queries/queue_claim.sql", worker, n, lease_secs).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|r| Claimed {
            id: r.id,
            image_id: r.image_id,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            priority: r.priority,
            object_key: r.object_key,
            format: r.format,
            sha256: r.sha256,
        })
        .collect())
}

/// Extends the leases of `ids` still held by `worker`; returns the ids it holds.
pub async fn heartbeat(pool: &PgPool, worker: &str, ids: &[i64], lease_secs: f64) -> Result<Vec<i64>> {
    Ok(sqlx::query_file_scalar!("queries/queue_heartbeat.sql", worker, ids, lease_secs).fetch_all(pool).await?)
}

/// Finishes the job and records its result, review item and the photo's status
/// in one transaction. Returns false (and writes nothing) when this worker no
/// longer holds the job: its lease expired and another claim took it.
pub async fn finish(pool: &PgPool, job: &Claimed, worker: &str, o: &Outcome) -> Result<bool> {
    Ok(!finish_many(pool, worker, &[(job.clone(), o.clone())]).await?.is_empty())
}

/// Finishes many jobs in one transaction of five statements, whatever their
/// number: each job only if this worker holds it on the same attempt, and
/// for each one finished its result (once per image and model version), its
/// review item and its photo's status. Returns the ids finished; a job not
/// held writes nothing.
pub async fn finish_many(pool: &PgPool, worker: &str, done: &[(Claimed, Outcome)]) -> Result<Vec<i64>> {
    let ids: Vec<i64> = done.iter().map(|(j, _)| j.id).collect();
    let attempts: Vec<i32> = done.iter().map(|(j, _)| j.attempts).collect();
    let mut tx = pool.begin().await?;
    let held = sqlx::query_file_scalar!("queries/job_finish_many.sql", worker, &ids, &attempts).fetch_all(&mut *tx).await?;
    let done: Vec<&(Claimed, Outcome)> = done.iter().filter(|(j, _)| held.contains(&j.id)).collect();
    if done.is_empty() {
        return Ok(held);
    }
    let col = |f: fn(&Outcome) -> f32| -> Vec<f32> { done.iter().map(|(_, o)| f(o)).collect() };
    let images: Vec<Uuid> = done.iter().map(|(j, _)| j.image_id).collect();
    let versions: Vec<Uuid> = done.iter().map(|(_, o)| o.model_version_id).collect();
    let labels: Vec<String> = done.iter().map(|(_, o)| o.label.to_owned()).collect();
    let heatmaps: Vec<String> = done.iter().map(|(_, o)| o.heatmap_key.clone().unwrap_or_default()).collect();
    let sampled: Vec<bool> = done.iter().map(|(_, o)| o.qa_sampled).collect();
    let results = sqlx::query_file!(
        "queries/result_insert_many.sql",
        &images,
        &versions,
        &col(|o| o.glaucoma),
        &col(|o| o.gradable),
        &labels,
        &heatmaps,
        &col(|o| o.qa_rate),
        &sampled,
        &col(|o| o.threshold),
        &col(|o| o.gradable_threshold),
        &col(|o| o.uncertainty_band),
    )
    .fetch_all(&mut *tx)
    .await?;
    let result_of = |j: &Claimed, o: &Outcome| {
        results.iter().find(|r| r.image_id == j.image_id && r.model_version_id == o.model_version_id).map(|r| r.id)
    };
    let (mut items, mut item_results, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    for (j, o) in &done {
        if let (Some(reason), Some(result)) = (o.review, result_of(j, o)) {
            items.push(j.image_id);
            item_results.push(result);
            reasons.push(reason.to_owned());
        }
    }
    sqlx::query_file!("queries/review_insert_many.sql", &items, &item_results, &reasons).execute(&mut *tx).await?;
    sqlx::query_file!("queries/review_drop_failed_many.sql", &images).execute(&mut *tx).await?;
    let status: Vec<String> = done.iter().map(|(_, o)| if o.review.is_some() { "in_review" } else { "scored" }.to_owned()).collect();
    sqlx::query_file!("queries/image_set_status_many.sql", &images, &status).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(held)
}

/// A failed attempt. Returns `Some(true)` when the job was dead-lettered (its
/// photo then goes to review as `scoring_failed`),
/// `Some(false)` when it will be retried after `backoff_secs`, `None` when this
/// worker no longer held it.
pub async fn fail(pool: &PgPool, job: &Claimed, worker: &str, backoff_secs: f64, error: &str, last: bool) -> Result<Option<bool>> {
    let mut tx = pool.begin().await?;
    let r = sqlx::query_file!("queries/job_fail.sql", job.id, worker, job.attempts, backoff_secs, error, last)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(r) = r else { return Ok(None) };
    let dead = r.state == "dead";
    if dead {
        sqlx::query_file!("queries/image_set_status.sql", r.image_id, "failed").execute(&mut *tx).await?;
        // Failing closed: a photo that cannot be scored is one a person must look at.
        sqlx::query_file!("queries/review_insert_failed.sql", r.image_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Some(dead))
}

/// Give-backs counted against one job (timeouts, a dead model thread) before
/// it is dead-lettered.
pub const MAX_GIVE_BACKS: i32 = 10;

/// What became of a job given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    Queued,
    /// Its give-backs ran out: dead-lettered, its photo sent to review.
    Dead,
    /// This worker no longer held it.
    NotHeld,
}

/// Gives the job back without counting the attempt. `counted`: the job's own
/// trouble (a timeout, a dead model thread), which counts towards
/// [`MAX_GIVE_BACKS`]; a shutdown's give-back does not.
pub async fn release(pool: &PgPool, job: &Claimed, worker: &str, delay_secs: f64, counted: bool) -> Result<Released> {
    let state = sqlx::query_file_scalar!("queries/job_release.sql", job.id, worker, job.attempts, delay_secs, counted, MAX_GIVE_BACKS)
        .fetch_optional(pool)
        .await?;
    Ok(match state.as_deref() {
        None => Released::NotHeld,
        Some("dead") => Released::Dead,
        Some(_) => Released::Queued,
    })
}

pub async fn depth(pool: &PgPool) -> Result<Depth> {
    let r = sqlx::query_file!("queries/queue_depth.sql").fetch_one(pool).await?;
    Ok(Depth { queued: r.queued, urgent: r.urgent, running: r.running, dead: r.dead })
}

/// The `model_versions` row for (name, version), created on first use.
pub async fn model_version(
    pool: &PgPool,
    name: &str,
    version: &str,
    mlflow_run_id: Option<&str>,
    weights_uri: &str,
    threshold: f32,
    preprocessing: &serde_json::Value,
    digest: &str,
) -> Result<Uuid> {
    sqlx::query_file_scalar!(
        "queries/model_version_upsert.sql",
        name,
        version,
        mlflow_run_id,
        weights_uri,
        threshold,
        preprocessing,
        digest
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        crate::Error::Conflict(format!(
            "model {name} version {version} is already recorded with other weights, threshold or preprocessing; \
             refusing to merge them: register the new model as a new version"
        ))
    })
}

#[derive(Debug, Clone)]
pub struct DeadJob {
    pub id: i64,
    pub image_id: Uuid,
    pub site: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Dead-lettered jobs, oldest first.
pub async fn dead(pool: &PgPool, limit: i64) -> Result<Vec<DeadJob>> {
    Ok(sqlx::query_file_as!(DeadJob, "queries/jobs_dead.sql", limit).fetch_all(pool).await?)
}

/// Re-queues dead jobs (`ids`, or all of them) with fresh attempts, audited,
/// and wakes the workers. Returns the (job, image) pairs re-queued.
pub async fn retry_dead(pool: &PgPool, ids: &[i64], all: bool, actor: &str) -> Result<Vec<(i64, Uuid)>> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query_file!("queries/jobs_retry.sql", ids, all).fetch_all(&mut *tx).await?;
    for r in &rows {
        crate::audit(&mut *tx, actor, "job.retry", Some(&r.id.to_string()), serde_json::json!({ "image_id": r.image_id })).await?;
        sqlx::query_file!("queries/notify_jobs.sql", r.image_id.to_string()).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(rows.into_iter().map(|r| (r.id, r.image_id)).collect())
}
