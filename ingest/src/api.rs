//! The phone app's contract: create a study, upload its photos, ask how they
//! are doing. See docs/errors.md for the error codes.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use imaging::Format;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Device;
use crate::error::ApiError;
use store::raw_key;

/// Queue priority of phone uploads; batch screening enqueues below it.
pub const PHONE_PRIORITY: i16 = 100;
const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewStudy {
    /// Pseudonymous patient reference (never a name or a national ID).
    pub patient_ref: String,
    /// The site's name; optional, but when given it must be the token's site.
    pub site: Option<String>,
    /// When the photos were taken (RFC 3339).
    pub captured_at: DateTime<Utc>,
    /// The phone or ophthalmoscope model.
    pub device_model: Option<String>,
    /// Free metadata, a JSON object of at most 16 KiB.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    pub id: Uuid,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImageAccepted {
    pub id: Uuid,
    pub status_url: String,
    pub status: String,
    /// Quick quality feedback: ask for a retake when `retake` is true.
    #[schema(value_type = Object)]
    pub quality: serde_json::Value,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImageState {
    pub id: Uuid,
    pub study_id: Uuid,
    pub eye: String,
    /// received, queued, scored, in_review, reviewed or failed (dead-lettered).
    pub status: String,
    pub format: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i64,
    pub sha256: String,
    #[schema(value_type = Object)]
    pub quality: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub result: Option<ImageResult>,
    pub outcome: Outcome,
}

/// Where a photo stands for the patient: the model's preliminary label, or a
/// human's final one (the deciding role, never a name).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Outcome {
    /// `final` (a human's decision), `preliminary` (the model's only) or `pending`.
    pub result: &'static str,
    /// referable, not_referable or ungradable.
    pub label: Option<String>,
    /// For an ungradable photo: retake or examine.
    pub ungradable_action: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// grader, senior or admin.
    pub decided_by_role: Option<String>,
}

/// The phone's view of a photo's outcome: the deciding time and role only when final.
fn outcome_of(i: &db::review::StudyImage, o: review::policy::PhotoOutcome) -> Outcome {
    let decided = o.result == "final";
    Outcome {
        result: o.result,
        label: o.label,
        ungradable_action: o.ungradable_action,
        decided_at: if decided { i.decided_at } else { None },
        decided_by_role: if decided { i.decided_role.clone() } else { None },
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StudyPhoto {
    pub id: Uuid,
    pub eye: String,
    pub status: String,
    pub outcome: Outcome,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StudyState {
    pub id: Uuid,
    pub site: String,
    pub captured_at: DateTime<Utc>,
    /// What follows for the person: refer, recapture, rescreen (at the routine interval) or pending.
    pub recommendation: &'static str,
    /// `final` when humans decided every photo (or a human's referral decides the study), else `preliminary`.
    pub result: &'static str,
    /// The latest human decision among the photos, and its role.
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by_role: Option<String>,
    pub images: Vec<StudyPhoto>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImageResult {
    pub glaucoma_score: f32,
    pub gradable_score: f32,
    /// referable, non_referable or ungradable.
    pub label: String,
    pub threshold: f32,
    pub model: String,
    pub model_version: String,
    pub scored_at: DateTime<Utc>,
    /// Why a clinician will look at it (referable, ungradable, uncertain); absent when not routed.
    pub review: Option<String>,
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(code, msg.into())
}

fn parse_id(s: &str, what: &'static str) -> Result<Uuid, ApiError> {
    s.parse().map_err(|_| ApiError::NotFound(what))
}

#[utoipa::path(post, path = "/v1/studies", request_body = NewStudy,
    responses((status = 201, body = Created), (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)),
    security(("device_token" = [])))]
pub async fn create_study(
    State(s): State<AppState>,
    Device(dev): Device,
    body: Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let req: NewStudy = serde_json::from_slice(&body).map_err(|e| bad("invalid_json", e.to_string()))?;
    let patient_ref = req.patient_ref.trim();
    if patient_ref.is_empty() || patient_ref.len() > 128 || patient_ref.chars().any(char::is_control) {
        return Err(bad("invalid_patient_ref", "patient_ref must be 1 to 128 printable characters"));
    }
    if let Some(site) = &req.site {
        if *site != dev.site_name {
            return Err(ApiError::Forbidden("this device belongs to another site"));
        }
    }
    if req.captured_at > Utc::now() + chrono::Duration::hours(24) {
        return Err(bad("invalid_captured_at", "captured_at is more than a day in the future"));
    }
    if req.device_model.as_deref().is_some_and(|m| m.len() > 128) {
        return Err(bad("invalid_device_model", "device_model is longer than 128 characters"));
    }
    let metadata = req.metadata.unwrap_or_else(|| serde_json::json!({}));
    if !metadata.is_object() || metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(bad("invalid_metadata", "metadata must be a JSON object of at most 16 KiB"));
    }
    let id = db::images::study_create(
        &s.db,
        &db::NewStudy {
            site_id: dev.site_id,
            device_id: Some(dev.device_id),
            patient_ref: &s.config.pseudonym.stored(&dev.site_name, patient_ref),
            captured_at: req.captured_at,
            device_model: req.device_model.as_deref(),
            metadata,
        },
    )
    .await?;
    tracing::info!(study_id = %id, "study created");
    Ok((StatusCode::CREATED, Json(Created { id })))
}

fn accepted(row: &db::ImageRow) -> ImageAccepted {
    ImageAccepted {
        id: row.id,
        status_url: format!("/v1/images/{}", row.id),
        status: row.status.clone(),
        quality: row.quality.clone(),
    }
}

/// Reads the body up to `limit` bytes. Chunks are kept as they arrive and
/// joined once at the end: nothing is allocated on the client's word.
async fn read_limited(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let mut chunks = Vec::new();
    let mut len = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad("body_read_failed", format!("reading the body failed: {e}")))?;
        len += chunk.len() as u64;
        if len > limit {
            return Err(ApiError::TooLarge(limit));
        }
        chunks.push(chunk);
    }
    if chunks.len() == 1 {
        return Ok(chunks.pop().unwrap_or_default());
    }
    let mut buf = Vec::with_capacity(len as usize);
    chunks.into_iter().for_each(|c| buf.extend_from_slice(&c));
    Ok(Bytes::from(buf))
}

/// Room in the server's buffer budget for an upload of at most `bytes`
/// bytes, twice over (the body and its de-identified copy).
async fn buffer_room(s: &AppState, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let kib = (2 * bytes).div_ceil(1024).clamp(1, u64::from(s.buffer_kib)) as u32;
    tokio::time::timeout(std::time::Duration::from_secs(10), s.buffer_budget.clone().acquire_many_owned(kib))
        .await
        .map_err(|_| ApiError::Busy)?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[utoipa::path(post, path = "/v1/studies/{id}/images",
    params(("id" = Uuid, Path, description = "study id"),
           ("eye" = String, Query, description = "left or right"),
           ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key return the same image")),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses((status = 201, body = ImageAccepted), (status = 200, description = "a retry of an upload already stored", body = ImageAccepted),
              (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
              (status = 415, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody),
              (status = 503, body = crate::error::ErrorBody)),
    security(("device_token" = [])))]
pub async fn upload_image(
    State(s): State<AppState>,
    Device(dev): Device,
    Path(study): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ImageAccepted>), ApiError> {
    let started = Instant::now();
    let out = upload(&s, dev, &study, &q, &headers, body).await;
    let outcome = match &out {
        Ok((StatusCode::CREATED, _)) => "created",
        Ok(_) => "duplicate",
        Err(e) => e.code(),
    };
    s.metrics.count(outcome);
    s.metrics.upload_seconds.observe(started.elapsed().as_secs_f64());
    out
}

async fn upload(
    s: &AppState,
    dev: db::DeviceAuth,
    study: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ImageAccepted>), ApiError> {
    let study_id = parse_id(study, "study")?;
    tracing::Span::current().record("study_id", tracing::field::display(study_id));
    let eye = match q.get("eye").map(String::as_str) {
        Some(e @ ("left" | "right")) => e,
        _ => return Err(bad("invalid_eye", "query parameter eye must be left or right")),
    };
    let media_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let declared = Format::from_media_type(media_type).ok_or_else(|| ApiError::UnsupportedMediaType(media_type.into()))?;
    let idem = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| bad("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters"))?,
        ),
    };
    let limit = s.config.max_upload_bytes;
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if declared_len > limit {
        return Err(ApiError::TooLarge(limit));
    }
    match db::images::study_site(&s.db, study_id).await? {
        None => return Err(ApiError::NotFound("study")),
        // Another site's study answers as a missing one: existence is not disclosed.
        Some(site) if site != dev.site_id => return Err(ApiError::NotFound("study")),
        Some(_) => {}
    }

    // A body without a length may be as large as the limit.
    let _room = buffer_room(s, if declared_len > 0 { declared_len } else { limit }).await?;
    let original = read_limited(body, limit).await?;
    // What is stored (and hashed) is the de-identified photo: the same upload
    // always gives the same bytes, so retries still find it. It parses the
    // container (a DICOM file whole), so it takes a decode slot like the checks.
    let bytes: Bytes = {
        let _permit = s.decode_slots.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || imaging::deidentify(&original, declared))
            .await
            .map_err(|e| ApiError::Internal(format!("de-identification task: {e}")))??
            .into()
    };
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    // A retry of something already stored answers now, without decoding pixels.
    if let Some(key) = idem {
        if let Some(row) = db::images::image_by_idempotency_key(&s.db, study_id, key).await? {
            if row.sha256 != digest {
                return Err(ApiError::IdempotencyKeyReused);
            }
            return Ok((StatusCode::OK, Json(accepted(&row))));
        }
    }
    if let Some(row) = db::images::image_by_sha256(&s.db, study_id, &digest).await? {
        return Ok((StatusCode::OK, Json(accepted(&row))));
    }

    let inspection = {
        let _permit = s.decode_slots.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
        let (limits, b) = (s.config.limits(), bytes.clone());
        let t = Instant::now();
        let r = tokio::task::spawn_blocking(move || imaging::inspect(&b, declared, limits))
            .await
            .map_err(|e| ApiError::Internal(format!("validation task: {e}")))??;
        s.metrics.validate_seconds.observe(t.elapsed().as_secs_f64());
        r
    };
    let hex = hex::encode(digest);
    let key = raw_key(&hex, inspection.format.extension());
    let quality = serde_json::to_value(&inspection.quality).map_err(|e| ApiError::Internal(e.to_string()))?;
    let size = bytes.len() as i64;
    // Reserve the key before looking at the store: from here until the image
    // commits, the orphan sweep leaves the object alone.
    let reservation = db::images::reserve_object(&s.db, &key, db::images::RESERVATION_SECS).await?;
    s.store.put_if_absent(&key, bytes).await?;

    let new = db::NewImage {
        study_id,
        eye,
        sha256: &digest,
        object_key: &key,
        format: inspection.format.as_str(),
        width: inspection.width as i32,
        height: inspection.height as i32,
        size_bytes: size,
        quality,
        idempotency_key: idem,
        priority: PHONE_PRIORITY,
    };
    // On failure the object stays: it may be the very object a concurrent
    // upload of the same bytes has just committed under its own row. Only the
    // sweep removes objects, once nothing references or reserves them.
    let inserted = db::images::image_insert_and_enqueue(&s.db, &new, reservation).await?;
    match inserted {
        Some(id) => {
            tracing::Span::current().record("image_id", tracing::field::display(id));
            tracing::info!(image_id = %id, %key, size, "image accepted");
            s.metrics.upload_bytes.inc_by(size as u64);
            let row = db::images::image_by_id(&s.db, id).await?.ok_or(ApiError::NotFound("image"))?;
            Ok((StatusCode::CREATED, Json(accepted(&row))))
        }
        None => {
            // A concurrent retry committed first.
            let row = match idem {
                Some(k) => db::images::image_by_idempotency_key(&s.db, study_id, k).await?,
                None => None,
            };
            let row = match row {
                Some(r) => r,
                None => db::images::image_by_sha256(&s.db, study_id, &digest).await?.ok_or(ApiError::IdempotencyKeyReused)?,
            };
            if row.sha256 != digest {
                return Err(ApiError::IdempotencyKeyReused);
            }
            Ok((StatusCode::OK, Json(accepted(&row))))
        }
    }
}

#[utoipa::path(get, path = "/v1/images/{id}", params(("id" = Uuid, Path, description = "image id")),
    responses((status = 200, body = ImageState), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("device_token" = [])))]
pub async fn get_image(
    State(s): State<AppState>,
    Device(dev): Device,
    Path(id): Path<String>,
) -> Result<Json<ImageState>, ApiError> {
    let id = parse_id(&id, "image")?;
    let row = db::images::image_by_id(&s.db, id).await?.ok_or(ApiError::NotFound("image"))?;
    if row.site_id != dev.site_id {
        return Err(ApiError::NotFound("image")); // as if it did not exist
    }
    let photos = db::review::study_images(&s.db, row.study_id).await?;
    let outcome = photos
        .iter()
        .find(|p| p.id == id)
        .map(|p| outcome_of(p, review::policy::of_image(p)))
        .ok_or(ApiError::NotFound("image"))?;
    let result = db::images::result_latest(&s.db, id).await?.map(|r| ImageResult {
        glaucoma_score: r.glaucoma_score,
        gradable_score: r.gradable_score,
        label: r.label,
        threshold: r.threshold,
        model: r.model_name,
        model_version: r.model_version,
        scored_at: r.created_at,
        review: r.review_reason,
    });
    Ok(Json(ImageState {
        id: row.id,
        study_id: row.study_id,
        eye: row.eye,
        status: row.status,
        format: row.format,
        width: row.width,
        height: row.height,
        size_bytes: row.size_bytes,
        sha256: hex::encode(&row.sha256),
        quality: row.quality,
        created_at: row.created_at,
        result,
        outcome,
    }))
}

#[utoipa::path(get, path = "/v1/studies/{id}", params(("id" = Uuid, Path, description = "study id")),
    responses((status = 200, body = StudyState), (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("device_token" = [])))]
pub async fn get_study(
    State(s): State<AppState>,
    Device(dev): Device,
    Path(id): Path<String>,
) -> Result<Json<StudyState>, ApiError> {
    let id = parse_id(&id, "study")?;
    let study = db::review::study(&s.db, id).await?.ok_or(ApiError::NotFound("study"))?;
    if study.site_id != dev.site_id {
        return Err(ApiError::NotFound("study")); // as if it did not exist
    }
    let photos = db::review::study_images(&s.db, id).await?;
    let outcomes: Vec<review::policy::PhotoOutcome> = photos.iter().map(review::policy::of_image).collect();
    let o = review::policy::study_outcome(&outcomes);
    let latest = photos.iter().filter(|p| p.final_decision.is_some()).max_by_key(|p| p.decided_at);
    Ok(Json(StudyState {
        id,
        site: study.site,
        captured_at: study.captured_at,
        recommendation: o.recommendation,
        result: o.result,
        decided_at: latest.and_then(|p| p.decided_at),
        decided_by_role: latest.and_then(|p| p.decided_role.clone()),
        images: photos
            .iter()
            .zip(outcomes)
            .map(|(p, o)| StudyPhoto { id: p.id, eye: p.eye.clone(), status: p.status.clone(), outcome: outcome_of(p, o) })
            .collect(),
    }))
}
