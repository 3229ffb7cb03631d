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
pub async fn image_insert_and_enqueue(pool: &PgPool, img: &NewImage<'_>) -> Result<Option<Uuid>> {
    let mut tx = pool.begin().await?;
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

/// Whether any image row still points at this object (the orphan sweep asks).
pub async fn object_key_in_use(pool: &PgPool, key: &str) -> Result<bool> {
    Ok(sqlx::query_file_scalar!("queries/object_key_in_use.sql", key)
        .fetch_one(pool)
        .await?)
}
