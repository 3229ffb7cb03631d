//! Batch screening: a batch is named by its source, holds its photos under
//! the names the source gave them, and reports a row per photo.

use uuid::Uuid;

use crate::{PgPool, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub total: i64,
    pub done: i64,
    pub dead: i64,
}

impl Progress {
    pub fn finished(&self) -> bool {
        self.done + self.dead >= self.total
    }
}

#[derive(Debug, Clone)]
pub struct ReportRow {
    pub name: String,
    pub image_id: Uuid,
    pub site: String,
    pub truth: Option<bool>,
    pub job_state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub glaucoma_score: Option<f32>,
    pub gradable_score: Option<f32>,
    pub label: Option<String>,
    pub heatmap_key: Option<String>,
    pub model_name: Option<String>,
    pub model_version: Option<String>,
    pub threshold: Option<f32>,
    pub review_reason: Option<String>,
}

/// The batch for `source` as `(batch id, study id)`, if it exists.
pub async fn by_source(pool: &PgPool, source: &str) -> Result<Option<(Uuid, Uuid)>> {
    Ok(sqlx::query_file!("queries/batch_by_source.sql", source)
        .fetch_optional(pool)
        .await?
        .map(|r| (r.id, r.study_id)))
}

/// Creates the batch; `None` when another process created it first.
pub async fn create(pool: &PgPool, source: &str, study_id: Uuid) -> Result<Option<Uuid>> {
    Ok(sqlx::query_file_scalar!("queries/batch_create.sql", source, study_id).fetch_optional(pool).await?)
}

pub async fn set_state(pool: &PgPool, batch_id: Uuid, state: &str) -> Result<()> {
    sqlx::query_file!("queries/batch_set_state.sql", batch_id, state).execute(pool).await?;
    Ok(())
}

pub async fn add_image(pool: &PgPool, batch_id: Uuid, name: &str, image_id: Uuid, label: Option<bool>) -> Result<()> {
    sqlx::query_file!("queries/batch_image_add.sql", batch_id, name, image_id, label).execute(pool).await?;
    Ok(())
}

/// Names already registered in the batch (a re-run skips them).
pub async fn names(pool: &PgPool, batch_id: Uuid) -> Result<Vec<String>> {
    Ok(sqlx::query_file_scalar!("queries/batch_names.sql", batch_id).fetch_all(pool).await?)
}

pub async fn progress(pool: &PgPool, batch_id: Uuid) -> Result<Progress> {
    let r = sqlx::query_file!("queries/batch_progress.sql", batch_id).fetch_one(pool).await?;
    Ok(Progress { total: r.total, done: r.done, dead: r.dead })
}

pub async fn report(pool: &PgPool, batch_id: Uuid) -> Result<Vec<ReportRow>> {
    let rows = sqlx::query_file!("queries/batch_report.sql", batch_id).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|r| ReportRow {
            name: r.name,
            image_id: r.image_id,
            site: r.site,
            truth: r.truth,
            job_state: r.job_state,
            attempts: r.attempts,
            last_error: r.last_error,
            glaucoma_score: r.glaucoma_score,
            gradable_score: r.gradable_score,
            label: r.label,
            heatmap_key: r.heatmap_key,
            model_name: r.model_name,
            model_version: r.model_version,
            threshold: r.threshold,
            review_reason: r.review_reason,
        })
        .collect())
}
