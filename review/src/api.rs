//! The review JSON API under `/v1/review/`: the contract for integrations and
//! for tests. A session cookie on every call, `X-CSRF-Token` on every POST.

use axum::Json;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::State;
use crate::auth::Reader;
use crate::error::{ReviewError, bad};
use crate::work::{self, DecisionIn, DecisionOut, ItemView, parse_id};

#[derive(Serialize)]
pub struct SessionOut {
    pub user: String,
    pub role: &'static str,
    pub sites: Vec<String>,
    pub csrf_token: String,
}

pub async fn session(r: Reader) -> Json<SessionOut> {
    Json(SessionOut { user: r.name, role: r.role.as_str(), sites: r.site_names, csrf_token: r.csrf })
}

#[derive(Deserialize)]
pub struct ItemsQuery {
    pub state: Option<String>,
    pub reason: Option<String>,
    pub site: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Serialize)]
pub struct ItemsOut {
    pub items: Vec<db::review::WorkItem>,
}

/// The sites a listing covers: all the reader's, or the one asked for when
/// the reader has it (another site's name is simply an empty list).
pub fn sites_for(r: &Reader, site: Option<&str>) -> Vec<Uuid> {
    match site.filter(|s| !s.is_empty()) {
        None => r.site_ids.clone(),
        Some(name) => r
            .site_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| r.site_ids.get(i).copied())
            .into_iter()
            .collect(),
    }
}

pub async fn list(s: &State, r: &Reader, q: &ItemsQuery) -> Result<Vec<db::review::WorkItem>, ReviewError> {
    let reason = work::parse_reason(q.reason.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad("invalid_limit", "limit must be 1 to 1000"));
    }
    let sites = sites_for(r, q.site.as_deref());
    let states = match q.state.as_deref().unwrap_or("") {
        "" => work::worklist_states(r),
        "open" => vec!["open".into()],
        "arbitration" if r.role.is_senior() => vec!["arbitration".into()],
        "arbitration" => return Err(ReviewError::Forbidden("only seniors see the arbitration list")),
        "decided" => return Ok(db::review::decided(&s.db, &sites, reason, limit).await?),
        other => return Err(bad("invalid_state", format!("state must be open, arbitration or decided, not {other:?}"))),
    };
    Ok(db::review::worklist(&s.db, &sites, &states, reason, r.user_id, limit).await?)
}

pub async fn items(AxState(s): AxState<State>, r: Reader, Query(q): Query<ItemsQuery>) -> Result<Json<ItemsOut>, ReviewError> {
    Ok(Json(ItemsOut { items: list(&s, &r, &q).await? }))
}

pub async fn item(AxState(s): AxState<State>, r: Reader, Path(id): Path<String>) -> Result<Json<ItemView>, ReviewError> {
    let id = parse_id(&id, "review item")?;
    let it = work::visible_item(&s, &r, id).await?;
    Ok(Json(work::view(&s, &r, it).await?))
}

#[derive(Serialize)]
pub struct Claimed {
    pub id: Uuid,
    pub claimed_at: chrono::DateTime<chrono::Utc>,
    pub claim_seconds: f64,
}

pub async fn claim(AxState(s): AxState<State>, r: Reader, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Claimed>, ReviewError> {
    r.check_csrf_header(&headers)?;
    let id = parse_id(&id, "review item")?;
    let at = work::claim(&s, &r, id).await?;
    Ok(Json(Claimed { id, claimed_at: at, claim_seconds: s.config.claim_secs() }))
}

pub async fn release(AxState(s): AxState<State>, r: Reader, headers: HeaderMap, Path(id): Path<String>) -> Result<StatusCode, ReviewError> {
    r.check_csrf_header(&headers)?;
    let id = parse_id(&id, "review item")?;
    work::release(&s, &r, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn decide(
    AxState(s): AxState<State>,
    r: Reader,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Result<Json<DecisionOut>, ReviewError> {
    r.check_csrf_header(&headers)?;
    let id = parse_id(&id, "review item")?;
    let d: DecisionIn = serde_json::from_slice(&body).map_err(|e| bad("invalid_json", e.to_string()))?;
    Ok(Json(work::decide(&s, &r, id, &d).await?))
}

pub async fn stats(AxState(s): AxState<State>, r: Reader) -> Result<Json<crate::stats::Stats>, ReviewError> {
    r.require_senior()?;
    Ok(Json(crate::stats::stats(&s.db, &r.site_ids).await?))
}
