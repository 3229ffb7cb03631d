//! The clinician review queue: the worklist, claims under a lease, reads and
//! their outcome, what the viewer and the phone are shown, the monitoring
//! figures, and the labels that go back to training. The reading policy
//! itself (when a read is final) lives in the `review` crate; the functions
//! taking a connection are its steps inside one transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{PgPool, Result};

/// A worklist row (also the JSON API's list item, as it is).
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkItem {
    pub id: Uuid,
    pub image_id: Uuid,
    pub study_id: Uuid,
    pub site: String,
    pub eye: String,
    pub reason: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    /// The reader holding a live claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Count {
    pub reason: String,
    pub state: String,
    pub n: i64,
    pub oldest: DateTime<Utc>,
}

/// An item with everything the viewer shows.
#[derive(Debug, Clone)]
pub struct ItemDetail {
    pub id: Uuid,
    pub image_id: Uuid,
    pub reason: String,
    pub state: String,
    pub blinded: bool,
    pub created_at: DateTime<Utc>,
    pub site_id: Uuid,
    pub site: String,
    pub claimed_by: Option<Uuid>,
    pub claimed_by_name: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub study_id: Uuid,
    pub eye: String,
    pub width: i32,
    pub height: i32,
    pub format: String,
    pub quality: serde_json::Value,
    pub uploaded_at: DateTime<Utc>,
    pub patient_ref: String,
    pub captured_at: DateTime<Utc>,
    pub glaucoma_score: Option<f32>,
    pub gradable_score: Option<f32>,
    pub label: Option<String>,
    pub heatmap_key: Option<String>,
    pub model_name: Option<String>,
    pub model_version: Option<String>,
    pub threshold: Option<f32>,
    pub final_decision: Option<String>,
    pub final_action: Option<String>,
    pub final_cdr: Option<f32>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_role: Option<String>,
}

/// An item locked for a decision.
#[derive(Debug, Clone)]
pub struct Locked {
    pub state: String,
    pub reason: String,
    pub blinded: bool,
    pub site_id: Uuid,
    pub image_id: Uuid,
    pub claimed_by: Option<Uuid>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub claim_live: bool,
    pub model_label: Option<String>,
}

/// A read as the policy sees it.
#[derive(Debug, Clone)]
pub struct Read {
    pub user_id: Uuid,
    pub role: String,
    pub stage: String,
    pub decision: String,
    pub ungradable_action: Option<String>,
    pub cdr: Option<f32>,
}

/// A read as the viewer lists it.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub id: i64,
    pub user_name: String,
    pub role: String,
    pub stage: String,
    pub decision: String,
    pub ungradable_action: Option<String>,
    pub cdr: Option<f32>,
    pub note: Option<String>,
    pub model_shown: bool,
    pub started_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

pub struct NewDecision<'a> {
    pub item_id: Uuid,
    pub user_id: Uuid,
    pub role: &'a str,
    pub stage: &'a str,
    pub decision: &'a str,
    pub ungradable_action: Option<&'a str>,
    pub cdr: Option<f32>,
    pub note: Option<&'a str>,
    pub model_shown: bool,
    pub started_at: DateTime<Utc>,
}

/// Where an item goes after a read.
pub struct Advance<'a> {
    pub state: &'a str,
    pub final_decision: Option<&'a str>,
    pub final_action: Option<&'a str>,
    pub final_cdr: Option<f32>,
    pub decided_role: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct ImageAccess {
    pub object_key: String,
    pub format: String,
    pub site_id: Uuid,
    pub blinded: bool,
    pub heatmap_key: Option<String>,
    pub item_id: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct StudyImage {
    pub id: Uuid,
    pub eye: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub model_label: Option<String>,
    pub item_id: Option<Uuid>,
    pub review_state: Option<String>,
    /// An undecided blinded read of this photo is under way.
    pub blinded: bool,
    pub final_decision: Option<String>,
    pub final_action: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_role: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StudyRow {
    pub id: Uuid,
    pub site_id: Uuid,
    pub site: String,
    pub patient_ref: String,
    pub captured_at: DateTime<Utc>,
}

pub async fn all_site_ids(pool: &PgPool) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_file_scalar!("queries/site_ids_all.sql").fetch_one(pool).await?)
}

/// Undecided items of `sites` in `states`, in clinical order, without those `user` has read.
pub async fn worklist(
    pool: &PgPool,
    sites: &[Uuid],
    states: &[String],
    reason: Option<&str>,
    user: Uuid,
    limit: i64,
) -> Result<Vec<WorkItem>> {
    Ok(sqlx::query_file_as!(WorkItem, "queries/review_worklist.sql", sites, states, reason, user, limit)
        .fetch_all(pool)
        .await?)
}

pub async fn decided(pool: &PgPool, sites: &[Uuid], reason: Option<&str>, limit: i64) -> Result<Vec<WorkItem>> {
    Ok(sqlx::query_file_as!(WorkItem, "queries/review_decided.sql", sites, reason, limit).fetch_all(pool).await?)
}

/// Per reason: undecided items (counted up to `cap`), those awaiting arbitration, the oldest.
#[derive(Debug, Clone)]
pub struct PageCount {
    pub reason: String,
    pub n: i64,
    pub arbitration: i64,
    pub oldest: Option<DateTime<Utc>>,
}

pub async fn page_counts(pool: &PgPool, sites: &[Uuid], cap: i64) -> Result<Vec<PageCount>> {
    Ok(sqlx::query_file_as!(PageCount, "queries/review_counts_page.sql", sites, cap).fetch_all(pool).await?)
}

/// Exact counts per reason and state (for the gauges; a scan of the backlog).
pub async fn counts(pool: &PgPool, sites: &[Uuid]) -> Result<Vec<Count>> {
    Ok(sqlx::query_file_as!(Count, "queries/review_counts.sql", sites).fetch_all(pool).await?)
}

pub async fn item(pool: &PgPool, id: Uuid) -> Result<Option<ItemDetail>> {
    Ok(sqlx::query_file_as!(ItemDetail, "queries/review_item.sql", id).fetch_optional(pool).await?)
}

pub async fn decisions(pool: &PgPool, item: Uuid) -> Result<Vec<DecisionRow>> {
    Ok(sqlx::query_file_as!(DecisionRow, "queries/review_decisions_of.sql", item).fetch_all(pool).await?)
}

/// Takes or renews `user`'s claim; `None` when someone else holds a live one
/// (or the item is decided). Returns when the claim began.
pub async fn claim(conn: &mut PgConnection, item: Uuid, user: Uuid, senior: bool, lease_secs: f64) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_file_scalar!("queries/review_claim.sql", item, user, lease_secs, senior).fetch_optional(conn).await?)
}

/// Whether `user` has already read the item.
pub async fn has_read(conn: &mut PgConnection, item: Uuid, user: Uuid) -> Result<bool> {
    Ok(sqlx::query_file_scalar!("queries/review_has_read.sql", item, user).fetch_one(conn).await?)
}

/// Claims the next item of the user's worklist nobody holds.
pub async fn claim_next(conn: &mut PgConnection, sites: &[Uuid], states: &[String], user: Uuid, lease_secs: f64) -> Result<Option<Uuid>> {
    Ok(sqlx::query_file_scalar!("queries/review_claim_next.sql", sites, states, user, lease_secs)
        .fetch_optional(conn)
        .await?)
}

/// Gives the user's claim back; false when they did not hold it.
pub async fn release(conn: &mut PgConnection, item: Uuid, user: Uuid) -> Result<bool> {
    Ok(sqlx::query_file_scalar!("queries/review_release.sql", item, user).fetch_optional(conn).await?.is_some())
}

pub async fn lock(conn: &mut PgConnection, item: Uuid) -> Result<Option<Locked>> {
    Ok(sqlx::query_file_as!(Locked, "queries/review_item_for_update.sql", item).fetch_optional(conn).await?)
}

pub async fn reads(conn: &mut PgConnection, item: Uuid) -> Result<Vec<Read>> {
    Ok(sqlx::query_file_as!(Read, "queries/review_reads.sql", item).fetch_all(conn).await?)
}

pub async fn insert_decision(conn: &mut PgConnection, d: &NewDecision<'_>) -> Result<i64> {
    Ok(sqlx::query_file_scalar!(
        "queries/review_decision_insert.sql",
        d.item_id,
        d.user_id,
        d.role,
        d.stage,
        d.decision,
        d.ungradable_action,
        d.cdr,
        d.note,
        d.model_shown,
        d.started_at
    )
    .fetch_one(conn)
    .await?)
}

/// Moves the item on after a read; a decided item marks its photo reviewed.
pub async fn advance(conn: &mut PgConnection, item: Uuid, image: Uuid, a: &Advance<'_>) -> Result<()> {
    sqlx::query_file!(
        "queries/review_item_advance.sql",
        item,
        a.state,
        a.final_decision,
        a.final_action,
        a.final_cdr,
        a.decided_role
    )
    .execute(&mut *conn)
    .await?;
    if a.state == "decided" {
        sqlx::query_file!("queries/image_mark_reviewed.sql", image).execute(&mut *conn).await?;
    }
    Ok(())
}

pub async fn image_access(pool: &PgPool, image: Uuid) -> Result<Option<ImageAccess>> {
    Ok(sqlx::query_file_as!(ImageAccess, "queries/review_image_access.sql", image).fetch_optional(pool).await?)
}

pub async fn study(pool: &PgPool, id: Uuid) -> Result<Option<StudyRow>> {
    Ok(sqlx::query_file_as!(StudyRow, "queries/study_by_id.sql", id).fetch_optional(pool).await?)
}

pub async fn study_images(pool: &PgPool, study: Uuid) -> Result<Vec<StudyImage>> {
    Ok(sqlx::query_file_as!(StudyImage, "queries/study_outcomes.sql", study).fetch_all(pool).await?)
}

/// The same patient's earlier studies at the site (captured no later than
/// `before`): (id, captured_at), newest first.
pub async fn patient_studies(
    pool: &PgPool,
    site: Uuid,
    patient_ref: &str,
    except: Uuid,
    before: DateTime<Utc>,
) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
    let rows = sqlx::query_file!("queries/patient_studies.sql", site, patient_ref, except, before).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|r| (r.id, r.captured_at)).collect())
}

// ---------------------------------------------------------------------------
// Monitoring

#[derive(Debug, Clone)]
pub struct OutcomeCount {
    pub model_name: String,
    pub model_version: String,
    pub reason: String,
    pub model_label: String,
    pub final_decision: String,
    pub n: i64,
}

#[derive(Debug, Clone)]
pub struct PairCount {
    pub model_name: String,
    pub model_version: String,
    pub reader: String,
    pub model: String,
    pub n: i64,
}

#[derive(Debug, Clone)]
pub struct ReaderPair {
    pub first: String,
    pub second: String,
    pub n: i64,
}

#[derive(Debug, Clone)]
pub struct Turnaround {
    pub n: i64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Backlog {
    pub under_1h: i64,
    pub under_1d: i64,
    pub under_7d: i64,
    pub over_7d: i64,
    pub oldest: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct ReaderStats {
    pub name: String,
    pub reads: i64,
    pub decided: i64,
    pub agreed: i64,
    pub median_secs: Option<f64>,
}

pub async fn stats_outcomes(pool: &PgPool, sites: &[Uuid]) -> Result<Vec<OutcomeCount>> {
    Ok(sqlx::query_file_as!(OutcomeCount, "queries/stats_outcomes.sql", sites).fetch_all(pool).await?)
}

pub async fn stats_reader_model(pool: &PgPool, sites: &[Uuid]) -> Result<Vec<PairCount>> {
    Ok(sqlx::query_file_as!(PairCount, "queries/stats_reader_model.sql", sites).fetch_all(pool).await?)
}

pub async fn stats_reader_reader(pool: &PgPool, sites: &[Uuid]) -> Result<Vec<ReaderPair>> {
    Ok(sqlx::query_file_as!(ReaderPair, "queries/stats_reader_reader.sql", sites).fetch_all(pool).await?)
}

pub async fn stats_turnaround(pool: &PgPool, sites: &[Uuid]) -> Result<Turnaround> {
    Ok(sqlx::query_file_as!(Turnaround, "queries/stats_turnaround.sql", sites).fetch_one(pool).await?)
}

pub async fn stats_backlog(pool: &PgPool, sites: &[Uuid]) -> Result<Backlog> {
    Ok(sqlx::query_file_as!(Backlog, "queries/stats_backlog.sql", sites).fetch_one(pool).await?)
}

pub async fn stats_readers(pool: &PgPool, sites: &[Uuid]) -> Result<Vec<ReaderStats>> {
    Ok(sqlx::query_file_as!(ReaderStats, "queries/stats_readers.sql", sites).fetch_all(pool).await?)
}

// ---------------------------------------------------------------------------
// Labels back to training

#[derive(Debug, Clone)]
pub struct ExportRow {
    pub image_id: Uuid,
    pub object_key: String,
    pub format: String,
    pub eye: String,
    pub patient_ref: String,
    pub site: String,
    pub final_decision: String,
    pub final_action: Option<String>,
    /// The vertical cup-to-disc ratio the deciding reader measured, if any.
    pub final_cdr: Option<f32>,
    pub decided_at: DateTime<Utc>,
    pub decided_role: String,
    pub reason: String,
}

pub async fn labels(pool: &PgPool, since: Option<DateTime<Utc>>) -> Result<Vec<ExportRow>> {
    Ok(sqlx::query_file_as!(ExportRow, "queries/labels_export.sql", since).fetch_all(pool).await?)
}
