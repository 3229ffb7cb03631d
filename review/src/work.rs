//! The reading workflow, shared by the JSON API and the pages: the worklist,
//! opening (claiming) an item, releasing it, taking the next one, and
//! deciding under the reading policy. Each state change and its audit row are
//! one transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::State;
use crate::auth::Reader;
use crate::error::{ReviewError, bad};
use crate::policy::{self, Next, ReadView};

/// In clinical order.
pub const REASONS: [&str; 5] = ["referable", "ungradable", "scoring_failed", "uncertain", "qa_sample"];

/// The states a reader's worklist holds: seniors also arbitrate.
pub fn worklist_states(r: &Reader) -> Vec<String> {
    if r.role.is_senior() { vec!["open".into(), "arbitration".into()] } else { vec!["open".into()] }
}

pub fn parse_id(s: &str, what: &'static str) -> Result<Uuid, ReviewError> {
    s.parse().map_err(|_| ReviewError::NotFound(what))
}

pub fn parse_reason(r: Option<&str>) -> Result<Option<&str>, ReviewError> {
    match r.filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) if REASONS.contains(&r) => Ok(Some(r)),
        Some(r) => Err(bad("invalid_reason", format!("reason must be one of {REASONS:?}, not {r:?}"))),
    }
}

/// The item if this reader may see it; 404 otherwise, so another site's
/// items are not even known to exist.
pub async fn visible_item(s: &State, r: &Reader, id: Uuid) -> Result<db::review::ItemDetail, ReviewError> {
    match db::review::item(&s.db, id).await? {
        Some(it) if r.sees(it.site_id) => Ok(it),
        _ => Err(ReviewError::NotFound("review item")),
    }
}

/// Takes (or renews) the reader's claim, with its audit row.
pub async fn claim(s: &State, r: &Reader, id: Uuid) -> Result<DateTime<Utc>, ReviewError> {
    let item = visible_item(s, r, id).await?;
    if item.state == "decided" {
        return Err(ReviewError::Decided);
    }
    if item.state == "arbitration" && !r.role.is_senior() {
        return Err(ReviewError::Forbidden("only a senior grader arbitrates"));
    }
    let mut tx = s.db.begin().await?;
    if db::review::has_read(&mut tx, id, r.user_id).await? {
        return Err(ReviewError::Forbidden("you have already read this photo; another reader must"));
    }
    // The statement re-checks all of it, so a state change since the read above cannot slip through.
    let Some(at) = db::review::claim(&mut tx, id, r.user_id, r.role.is_senior(), s.config.claim_secs()).await? else {
        return Err(match db::review::item(&s.db, id).await?.map(|i| i.state) {
            Some(st) if st == "decided" => ReviewError::Decided,
            Some(st) if st == "arbitration" && !r.role.is_senior() => ReviewError::Forbidden("only a senior grader arbitrates"),
            _ => ReviewError::Claimed,
        });
    };
    // A renewal (the viewer's keep-alive) is not a new claim in the trail.
    if item.claimed_by != Some(r.user_id) {
        db::audit(&mut *tx, &r.name, "review.claim", Some(&id.to_string()), serde_json::json!({ "role": r.role })).await?;
    }
    tx.commit().await?;
    Ok(at)
}

pub async fn release(s: &State, r: &Reader, id: Uuid) -> Result<(), ReviewError> {
    visible_item(s, r, id).await?;
    let mut tx = s.db.begin().await?;
    if !db::review::release(&mut tx, id, r.user_id).await? {
        return Err(ReviewError::NotClaimed);
    }
    db::audit(&mut *tx, &r.name, "review.release", Some(&id.to_string()), serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// Claims the next item of the reader's worklist; `None` when it is empty.
pub async fn next(s: &State, r: &Reader) -> Result<Option<Uuid>, ReviewError> {
    let mut tx = s.db.begin().await?;
    let id = db::review::claim_next(&mut tx, &r.site_ids, &worklist_states(r), r.user_id, s.config.claim_secs()).await?;
    if let Some(id) = id {
        db::audit(&mut *tx, &r.name, "review.claim", Some(&id.to_string()), serde_json::json!({ "role": r.role, "next": true })).await?;
    }
    tx.commit().await?;
    Ok(id)
}

#[derive(Debug, Clone, Deserialize)]
pub struct DecisionIn {
    pub decision: String,
    pub ungradable_action: Option<String>,
    pub cdr: Option<f32>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionOut {
    /// The item's state after this read: `open` (another read is due),
    /// `arbitration` or `decided`.
    pub state: &'static str,
    pub final_decision: Option<String>,
}

/// Records a read by its claim holder and moves the item on by the policy.
pub async fn decide(s: &State, r: &Reader, id: Uuid, d: &DecisionIn) -> Result<DecisionOut, ReviewError> {
    let note = d.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let action = d.ungradable_action.as_deref().filter(|a| !a.is_empty());
    let mut tx = s.db.begin().await?;
    // Visibility first: another site's item is not found, whatever the body.
    let it = match db::review::lock(&mut tx, id).await? {
        Some(it) if r.sees(it.site_id) => it,
        _ => return Err(ReviewError::NotFound("review item")),
    };
    policy::validate(&d.decision, action, d.cdr, note).map_err(|(code, msg)| bad(code, msg))?;
    if it.state == "decided" {
        return Err(ReviewError::Decided);
    }
    let arbitration = it.state == "arbitration";
    if arbitration && !r.role.is_senior() {
        return Err(ReviewError::Forbidden("only a senior grader arbitrates"));
    }
    let started_at = match (it.claimed_by, it.claim_live, it.claimed_at) {
        (Some(u), true, Some(at)) if u == r.user_id => at,
        _ => return Err(ReviewError::NotClaimed),
    };
    let reads = db::review::reads(&mut tx, id).await?;
    if reads.iter().any(|x| x.user_id == r.user_id) {
        return Err(ReviewError::Forbidden("you have already read this photo; another reader must"));
    }
    db::review::insert_decision(
        &mut tx,
        &db::review::NewDecision {
            item_id: id,
            user_id: r.user_id,
            role: r.role.as_str(),
            stage: if arbitration { "arbitration" } else { "read" },
            decision: &d.decision,
            ungradable_action: action,
            cdr: d.cdr,
            note,
            model_shown: !it.blinded,
            started_at,
        },
    )
    .await?;
    let this = ReadView { decision: &d.decision, action, cdr: d.cdr };
    let next = if arbitration {
        Next::Final(policy::arbitrated(&this))
    } else {
        let mut views: Vec<ReadView<'_>> = reads
            .iter()
            .filter(|x| x.stage == "read")
            .map(|x| ReadView { decision: &x.decision, action: x.ungradable_action.as_deref(), cdr: x.cdr })
            .collect();
        views.push(this);
        s.config.policy().after_reads(it.model_label.as_deref(), &views)
    };
    let out = match &next {
        Next::AnotherRead => DecisionOut { state: "open", final_decision: None },
        Next::Arbitration => DecisionOut { state: "arbitration", final_decision: None },
        Next::Final(f) => DecisionOut { state: "decided", final_decision: Some(f.decision.clone()) },
    };
    let advance = match &next {
        Next::Final(f) => db::review::Advance {
            state: "decided",
            final_decision: Some(&f.decision),
            final_action: f.action.as_deref(),
            final_cdr: f.cdr,
            decided_role: Some(r.role.as_str()),
        },
        _ => db::review::Advance { state: out.state, final_decision: None, final_action: None, final_cdr: None, decided_role: None },
    };
    db::review::advance(&mut tx, id, it.image_id, &advance).await?;
    db::audit(
        &mut *tx,
        &r.name,
        "review.decision",
        Some(&id.to_string()),
        serde_json::json!({
            "role": r.role, "decision": d.decision, "ungradable_action": action, "cdr": d.cdr,
            "model_shown": !it.blinded, "stage": if arbitration { "arbitration" } else { "read" }, "state": out.state,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// The photos of a study as the viewer lists them (model output left out
/// where a blinded read of that photo is under way).
#[derive(Debug, Clone, Serialize)]
pub struct StudyPhoto {
    pub image_id: Uuid,
    pub eye: String,
    pub preview_url: String,
    pub outcome: policy::PhotoOutcome,
}

pub fn study_photos(images: &[db::review::StudyImage]) -> Vec<StudyPhoto> {
    images
        .iter()
        .map(|i| {
            let outcome = if i.blinded {
                policy::PhotoOutcome { result: "pending", label: None, ungradable_action: None }
            } else {
                policy::of_image(i)
            };
            StudyPhoto { image_id: i.id, eye: i.eye.clone(), preview_url: format!("/v1/review/images/{}/preview", i.id), outcome }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelOutput {
    pub glaucoma_score: f32,
    pub gradable_score: f32,
    pub label: String,
    pub threshold: f32,
    pub model: String,
    pub model_version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EarlierStudy {
    pub study_id: Uuid,
    pub captured_at: DateTime<Utc>,
    pub photos: Vec<StudyPhoto>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadOut {
    pub reader: String,
    pub role: String,
    pub stage: String,
    pub decision: String,
    pub ungradable_action: Option<String>,
    pub cdr: Option<f32>,
    pub note: Option<String>,
    pub model_shown: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinalOut {
    pub decision: String,
    pub ungradable_action: Option<String>,
    pub cdr: Option<f32>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by_role: Option<String>,
}

/// An item as the viewer shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    pub id: Uuid,
    pub image_id: Uuid,
    pub study_id: Uuid,
    pub site: String,
    pub eye: String,
    pub reason: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    pub blinded: bool,
    pub width: i32,
    pub height: i32,
    pub preview_url: String,
    pub full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heatmap_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelOutput>,
    /// The upload's quick quality findings (not the model's output).
    pub quality_issues: Vec<String>,
    pub patient_ref: String,
    pub captured_at: DateTime<Utc>,
    /// Every photo of this study, this one included (both eyes side by side).
    pub study: Vec<StudyPhoto>,
    /// The same patient's earlier studies at this site.
    pub history: Vec<EarlierStudy>,
    /// Earlier reads: shown to the arbitrating senior and once decided, never
    /// to a second reader (reads are independent).
    pub reads: Vec<ReadOut>,
    #[serde(rename = "final", skip_serializing_if = "Option::is_none")]
    pub final_outcome: Option<FinalOut>,
}

/// Everything the viewer shows of a visible item, with the view audited.
pub async fn view(s: &State, r: &Reader, it: db::review::ItemDetail) -> Result<ItemView, ReviewError> {
    let images = db::review::study_images(&s.db, it.study_id).await?;
    let mut history = Vec::new();
    for (sid, at) in db::review::patient_studies(&s.db, it.site_id, &it.patient_ref, it.study_id, it.captured_at).await? {
        history.push(EarlierStudy { study_id: sid, captured_at: at, photos: study_photos(&db::review::study_images(&s.db, sid).await?) });
    }
    // Earlier reads are for the arbitrating senior, and for anyone once decided.
    let show_reads = it.state == "decided" || (it.state == "arbitration" && r.role.is_senior());
    let reads = if show_reads {
        db::review::decisions(&s.db, it.id)
            .await?
            .into_iter()
            .map(|d| ReadOut {
                reader: d.user_name,
                role: d.role,
                stage: d.stage,
                decision: d.decision,
                ungradable_action: d.ungradable_action,
                cdr: d.cdr,
                note: d.note,
                model_shown: d.model_shown,
                at: d.created_at,
            })
            .collect()
    } else {
        Vec::new()
    };
    // A blinded read shows no model output until the item is decided.
    let blinded = it.blinded && it.state != "decided";
    let model = match (blinded, it.glaucoma_score, it.gradable_score, &it.label, it.threshold) {
        (false, Some(g), Some(q), Some(l), Some(t)) => Some(ModelOutput {
            glaucoma_score: g,
            gradable_score: q,
            label: l.clone(),
            threshold: t,
            model: it.model_name.clone().unwrap_or_default(),
            model_version: it.model_version.clone().unwrap_or_default(),
        }),
        _ => None,
    };
    let quality_issues = it.quality["issues"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    db::audit(&s.db, &r.name, "review.view", Some(&it.id.to_string()), serde_json::json!({ "role": r.role, "image": it.image_id, "model_shown": !blinded })).await?;
    Ok(ItemView {
        id: it.id,
        image_id: it.image_id,
        study_id: it.study_id,
        site: it.site,
        eye: it.eye,
        reason: it.reason,
        state: it.state,
        created_at: it.created_at,
        claimed_by: it.claimed_by_name,
        blinded,
        width: it.width,
        height: it.height,
        preview_url: format!("/v1/review/images/{}/preview", it.image_id),
        full_url: format!("/v1/review/images/{}/full", it.image_id),
        heatmap_url: (!blinded && it.heatmap_key.is_some()).then(|| format!("/v1/review/images/{}/heatmap", it.image_id)),
        model,
        quality_issues,
        patient_ref: it.patient_ref,
        captured_at: it.captured_at,
        study: study_photos(&images),
        history,
        reads,
        final_outcome: it.final_decision.map(|d| FinalOut {
            decision: d,
            ungradable_action: it.final_action,
            cdr: it.final_cdr,
            decided_at: it.decided_at,
            decided_by_role: it.decided_role,
        }),
    })
}
