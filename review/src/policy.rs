//! The reading policy, as pure functions: when a read is final, when it goes
//! to a senior, what the final outcome is, and what a study's outcome (per
//! person) follows from its photos' outcomes.

use serde::Serialize;

/// How many graders read a photo before it is final.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Two graders read each photo (a second reading); one when false.
    pub second_reading: bool,
}

/// One first-stage read, as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadView<'a> {
    pub decision: &'a str,
    pub action: Option<&'a str>,
    pub cdr: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Final {
    pub decision: String,
    pub action: Option<String>,
    pub cdr: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Another grader must read it first.
    AnotherRead,
    /// The reads disagree (with each other, or with a referable model
    /// output): a senior decides.
    Arbitration,
    Final(Final),
}

impl Policy {
    /// Where an item goes after its first-stage reads (in order).
    pub fn after_reads(&self, model_label: Option<&str>, reads: &[ReadView<'_>]) -> Next {
        let needed = if self.second_reading { 2 } else { 1 };
        if reads.len() < needed {
            return Next::AnotherRead;
        }
        let first = reads[0].decision;
        if reads.iter().any(|r| r.decision != first) {
            return Next::Arbitration;
        }
        if model_label == Some("referable") && first != "referable" {
            return Next::Arbitration;
        }
        Next::Final(combine(reads))
    }
}

/// The agreed outcome of reads that agree: an ungradable photo is sent for
/// examination if any reader said so; the cup-to-disc ratio is their mean.
fn combine(reads: &[ReadView<'_>]) -> Final {
    let action = if reads[0].decision != "ungradable" {
        None
    } else if reads.iter().any(|r| r.action == Some("examine")) {
        Some("examine".to_owned())
    } else {
        Some("retake".to_owned())
    };
    let cdrs: Vec<f32> = reads.iter().filter_map(|r| r.cdr).collect();
    let cdr = (!cdrs.is_empty()).then(|| cdrs.iter().sum::<f32>() / cdrs.len() as f32);
    Final { decision: reads[0].decision.to_owned(), action, cdr }
}

/// An arbitration decision is final as it stands.
pub fn arbitrated(r: &ReadView<'_>) -> Final {
    Final { decision: r.decision.to_owned(), action: r.action.map(str::to_owned), cdr: r.cdr }
}

/// Checks a decision's fields together; returns a stable error code and message.
pub fn validate(decision: &str, action: Option<&str>, cdr: Option<f32>, note: Option<&str>) -> Result<(), (&'static str, String)> {
    match decision {
        "referable" | "not_referable" => {
            if action.is_some() {
                return Err(("invalid_decision", "ungradable_action is only for an ungradable decision".into()));
            }
        }
        "ungradable" => match action {
            Some("retake" | "examine") => {}
            _ => return Err(("invalid_decision", "an ungradable decision needs ungradable_action: retake or examine".into())),
        },
        other => return Err(("invalid_decision", format!("decision must be referable, not_referable or ungradable, not {other:?}"))),
    }
    if let Some(c) = cdr {
        if !(0.0..=1.0).contains(&c) || c.is_nan() {
            return Err(("invalid_cdr", "cdr (vertical cup-to-disc ratio) must be between 0 and 1".into()));
        }
    }
    if note.is_some_and(|n| n.chars().count() > 2000) {
        return Err(("invalid_note", "a note may have at most 2000 characters".into()));
    }
    Ok(())
}

/// A photo's outcome as the phone sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhotoOutcome {
    /// `final` (a human's), `preliminary` (the model's only) or `pending` (not scored yet).
    pub result: &'static str,
    /// `referable`, `not_referable` or `ungradable` (model labels map `non_referable` here).
    pub label: Option<String>,
    /// For an ungradable photo: `retake` or `examine`.
    pub ungradable_action: Option<String>,
}

/// What one photo's latest model label and review say.
pub fn photo_outcome(status: &str, model_label: Option<&str>, final_decision: Option<&str>, final_action: Option<&str>) -> PhotoOutcome {
    if let Some(d) = final_decision {
        return PhotoOutcome { result: "final", label: Some(d.to_owned()), ungradable_action: final_action.map(str::to_owned) };
    }
    match model_label {
        Some(l) => {
            let label = if l == "non_referable" { "not_referable" } else { l };
            let action = (label == "ungradable").then(|| "retake".to_owned());
            PhotoOutcome { result: "preliminary", label: Some(label.to_owned()), ungradable_action: action }
        }
        // A photo that could not be scored at all needs taking again.
        None if status == "failed" => {
            PhotoOutcome { result: "preliminary", label: Some("ungradable".into()), ungradable_action: Some("retake".into()) }
        }
        None => PhotoOutcome { result: "pending", label: None, ungradable_action: None },
    }
}

/// A photo's outcome from its row in a study's listing.
pub fn of_image(i: &db::review::StudyImage) -> PhotoOutcome {
    photo_outcome(&i.status, i.model_label.as_deref(), i.final_decision.as_deref(), i.final_action.as_deref())
}

/// What follows for the person from all photos of a study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyOutcome {
    /// `refer`, `recapture`, `rescreen` (at the routine interval) or `pending`.
    pub recommendation: &'static str,
    /// `final` when humans decided every photo, or a human's referral already
    /// decides the study; `preliminary` otherwise.
    pub result: &'static str,
}

pub fn study_outcome(photos: &[PhotoOutcome]) -> StudyOutcome {
    let refers = |p: &PhotoOutcome| {
        p.label.as_deref() == Some("referable")
            || (p.label.as_deref() == Some("ungradable") && p.ungradable_action.as_deref() == Some("examine"))
    };
    let all_final = !photos.is_empty() && photos.iter().all(|p| p.result == "final");
    let recommendation = if photos.iter().any(refers) {
        "refer"
    } else if photos.iter().any(|p| p.result == "pending") || photos.is_empty() {
        "pending"
    } else if photos.iter().any(|p| p.label.as_deref() == Some("ungradable")) {
        "recapture"
    } else {
        "rescreen"
    };
    let human_refers = photos.iter().any(|p| p.result == "final" && refers(p));
    StudyOutcome { recommendation, result: if all_final || human_refers { "final" } else { "preliminary" } }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(d: &str) -> ReadView<'_> {
        let action = (d == "ungradable").then_some("retake");
        ReadView { decision: d, action, cdr: None }
    }

    #[test]
    fn one_grader_decides_unless_they_overrule_a_referable_model() {
        let p = Policy { second_reading: false };
        assert_eq!(p.after_reads(Some("referable"), &[]), Next::AnotherRead);
        assert!(matches!(p.after_reads(Some("referable"), &[read("referable")]), Next::Final(f) if f.decision == "referable"));
        assert_eq!(p.after_reads(Some("referable"), &[read("not_referable")]), Next::Arbitration);
        assert_eq!(p.after_reads(Some("referable"), &[read("ungradable")]), Next::Arbitration);
        // A grader may call a negative positive on their own authority.
        assert!(matches!(p.after_reads(Some("non_referable"), &[read("referable")]), Next::Final(f) if f.decision == "referable"));
        assert!(matches!(p.after_reads(Some("ungradable"), &[read("not_referable")]), Next::Final(_)));
    }

    #[test]
    fn a_second_reading_goes_to_arbitration_when_the_graders_disagree() {
        let p = Policy { second_reading: true };
        assert_eq!(p.after_reads(Some("non_referable"), &[read("referable")]), Next::AnotherRead);
        assert_eq!(p.after_reads(Some("non_referable"), &[read("referable"), read("not_referable")]), Next::Arbitration);
        let a = ReadView { decision: "ungradable", action: Some("retake"), cdr: Some(0.4) };
        let b = ReadView { decision: "ungradable", action: Some("examine"), cdr: Some(0.6) };
        let Next::Final(f) = p.after_reads(Some("ungradable"), &[a, b]) else { panic!("agreeing reads are final") };
        assert_eq!(f.action.as_deref(), Some("examine"));
        assert!((f.cdr.expect("cdr") - 0.5).abs() < 1e-6);
    }

    #[test]
    fn decisions_are_validated_field_by_field() {
        assert!(validate("referable", None, Some(0.7), Some("notch at 6 o'clock")).is_ok());
        assert_eq!(validate("ungradable", None, None, None).unwrap_err().0, "invalid_decision");
        assert_eq!(validate("referable", Some("retake"), None, None).unwrap_err().0, "invalid_decision");
        assert_eq!(validate("maybe", None, None, None).unwrap_err().0, "invalid_decision");
        assert_eq!(validate("referable", None, Some(1.5), None).unwrap_err().0, "invalid_cdr");
        assert_eq!(validate("referable", None, Some(f32::NAN), None).unwrap_err().0, "invalid_cdr");
        assert_eq!(validate("referable", None, None, Some(&"x".repeat(2001))).unwrap_err().0, "invalid_note");
    }

    #[test]
    fn a_study_follows_from_both_eyes() {
        let fin = |l: &str, a: Option<&str>| photo_outcome("reviewed", Some("referable"), Some(l), a);
        let pre = |l: &str| photo_outcome("scored", Some(l), None, None);
        assert_eq!(study_outcome(&[fin("referable", None), pre("non_referable")]), StudyOutcome { recommendation: "refer", result: "final" });
        assert_eq!(study_outcome(&[pre("referable"), pre("non_referable")]), StudyOutcome { recommendation: "refer", result: "preliminary" });
        assert_eq!(study_outcome(&[fin("not_referable", None), fin("not_referable", None)]), StudyOutcome { recommendation: "rescreen", result: "final" });
        assert_eq!(study_outcome(&[fin("ungradable", Some("retake")), fin("not_referable", None)]).recommendation, "recapture");
        assert_eq!(study_outcome(&[fin("ungradable", Some("examine")), fin("not_referable", None)]).recommendation, "refer");
        assert_eq!(study_outcome(&[pre("non_referable"), photo_outcome("queued", None, None, None)]).recommendation, "pending");
        assert_eq!(photo_outcome("failed", None, None, None).ungradable_action.as_deref(), Some("retake"));
        assert_eq!(pre("non_referable").label.as_deref(), Some("not_referable"));
        assert_eq!(study_outcome(&[]).recommendation, "pending");
    }
}
