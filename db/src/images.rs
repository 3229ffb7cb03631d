//! Studies, images and their enqueued jobs: the rows an upload creates.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{PgPool, Result};

pub struct NewStudy<'a> {
    pub site_id: Uuid,
    /// The uploading device; none for batch imports.
    pub device_id: Option<Uuid>,
    pub patient_ref: &'a str,
    pub captured_at: DateTime<Utc>,
    pub device_model: Option<&'a str>,
    pub metadata: serde_json::Value,
}

pub struct NewImage<'a> {
    pub study_id: Uuid,
    pub eye: &'a str,
    pub sha256: &'a [u8],
    pub object_key: &'a str,
    pub format: &'a str,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i64,
    pub quality: serde_json::Value,
    pub idempotency_key: Option<&'a str>,
    /// Queue priority of its scoring job: phone uploads outrank batch work.
    pub priority: i16,
}

#[derive(Debug, Clone)]
pub struct ImageRow {
    pub id: Uuid,
    pub study_id: Uuid,
    pub site_id: Uuid,
    pub eye: String,
    pub status: String,
    pub format: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i64,
    pub sha256: Vec<u8>,
    pub quality: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ResultRow {
    pub glaucoma_score: f32,
    pub gradable_score: f32,
    pub label: String,
    pub heatmap_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub model_name: String,
    pub model_version: String,
    pub threshold: f32,
    /// Why the photo went to clinician review, when it did.
    pub review_reason: Option<String>,
}

pub async fn study_create(pool: &PgPool, s: &NewStudy<'_>) -> Result<Uuid> {
    let id = sqlx::query_file_scalar!(
        "queries/study_create.sql",
        s.site_id,
        s.device_id,
        s.patient_ref,
        s.captured_at,
        s.device_model,
        s.metadata
    )
    .fetch_one(pool)
    .await?;
    Ok(id)
}

pub async fn study_site(pool: &PgPool, study_id: Uuid) -> Result<Option<Uuid>> {
    Ok(sqlx::query_file_scalar!("queries/study_site.sql", study_id)
        .fetch_optional(pool)
        .await?)
}

pub async fn image_by_idempotency_key(pool: &PgPool, study_id: Uuid, key: &str) -> Result<Option<ImageRow>> {
    Ok(sqlx::query_file_as!(ImageRow, "queries/image_by_idempotency_key.sql", study_id, key)
        .fetch_optional(pool)
        .await?)
}

pub async fn image_by_sha256(pool: &PgPool, study_id: Uuid, sha256: &[u8]) -> Result<Option<ImageRow>> {
    Ok(sqlx::query_file_as!(ImageRow, "queries/image_by_sha256.sql", study_id, sha256)
        .fetch_optional(pool)
        .await?)
}

pub async fn image_by_id(pool: &PgPool, id: Uuid) -> Result<Option<ImageRow>> {
    Ok(sqlx::query_file_as!(ImageRow, "queries/image_by_id.sql", id)
        .fetch_optional(pool)
        .await?)
}

pub async fn result_latest(pool: &PgPool, image_id: Uuid) -> Result<Option<ResultRow>> {
    Ok(sqlx::query_file_as!(ResultRow, "queries/result_latest.sql", image_id)
        .fetch_optional(pool)
        .await?)
}

/// Inserts the image and its scoring job in one transaction and wakes the
/// workers. Returns `None` when an identical upload (same study and bytes, or
/// same idempotency key) committed first; the caller then reads that row.
pub async fn image_insert_and_enqueue(pool: &PgPool, img: &NewImage<'_>, reservation: Uuid) -> Result<Option<Uuid>> {
    let mut tx = pool.begin().await?;
    // The row (ours or a concurrent retry's) now holds the object: the reservation is done.
    sqlx::query_file!("queries/object_release.sql", reservation).execute(&mut *tx).await?;
    let id = sqlx::query_file_scalar!(
        "queries/image_insert.sql",
        img.study_id,
        img.eye,
        img.sha256,
        img.object_key,
        img.format,
        img.width,
        img.height,
        img.size_bytes,
        img.quality,
        img.idempotency_key
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        tx.commit().await?;
        return Ok(None);
    };
    sqlx::query_file_scalar!("queries/job_enqueue.sql", id, img.priority)
        .fetch_one(&mut *tx)
        .await?;
    // NOTIFY is delivered at commit, so a woken worker always finds the job.
    sqlx::query_file!("queries/notify_jobs.sql", id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(id))
}

/// How long a reservation holds an object key: far longer than any upload.
pub const RESERVATION_SECS: f64 = 3600.0;

/// Reserves `key` for an upload for `secs` seconds, waiting while a sweep
/// holds it. Taken before the upload looks at the store; released by
/// [`image_insert_and_enqueue`] when the image commits.
pub async fn reserve_object(pool: &PgPool, key: &str, secs: f64) -> Result<Uuid> {
    Ok(sqlx::query_file_scalar!("queries/object_reserve.sql", key, secs).fetch_one(pool).await?)
}

/// The orphan sweep's hold on one object key: a transaction with the key's
/// exclusive lock, so no upload can reserve it until [`SweepLock::release`].
pub struct SweepLock {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

impl SweepLock {
    pub async fn take(pool: &PgPool, key: &str) -> Result<SweepLock> {
        let mut tx = pool.begin().await?;
        sqlx::query_file!("queries/object_sweep_lock.sql", key).fetch_one(&mut *tx).await?;
        Ok(SweepLock { tx })
    }

    /// An image row points at the object, or an upload has it reserved.
    pub async fn claimed(&mut self, key: &str) -> Result<bool> {
        Ok(sqlx::query_file_scalar!("queries/object_claimed.sql", key).fetch_one(&mut *self.tx).await?)
    }

    pub async fn release(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Drops reservations that have expired (their uploads are long over).
pub async fn expire_reservations(pool: &PgPool) -> Result<u64> {
    Ok(sqlx::query_file!("queries/object_reservations_expire.sql").execute(pool).await?.rows_affected())
}
