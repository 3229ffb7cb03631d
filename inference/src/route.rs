//! Who needs a clinician: the referral decision at the model's operating
//! point, the review queue's reasons, and the QA sample of negatives.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How scores become a label and, when a human should look, a review reason.
#[derive(Debug, Clone, Copy)]
pub struct Routing {
    /// Gradability probability under which a photo is ungradable.
    pub gradable_threshold: f32,
    /// Non-referable photos whose odds of glaucoma are within this factor of
    /// the threshold's odds are reviewed as uncertain; `None` takes the model
    /// card's (`DEFAULT_UNCERTAIN_ODDS` for cards without one). On calibrated
    /// probabilities a factor means the same for every model, where a fixed
    /// distance in probability would not: 0.05 below a threshold of 0.04 is
    /// every photo.
    pub uncertain_odds: Option<f32>,
    /// Fraction of the photos called `non_referable` (outside the band) that
    /// are read anyway, blinded, as the internal QA sample.
    pub qa_rate: f32,
}

impl Default for Routing {
    fn default() -> Self {
        Routing { gradable_threshold: 0.5, uncertain_odds: None, qa_rate: 0.10 }
    }
}

/// The uncertain band's width when neither the card nor the operator sets one:
/// odds within a factor of two of the threshold's.
pub const DEFAULT_UNCERTAIN_ODDS: f32 = 2.0;

pub use model::calibrate::band_floor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `referable`, `non_referable` or `ungradable`.
    pub label: &'static str,
    /// `referable`, `ungradable`, `uncertain` or `qa_sample`; `None` when no one need look.
    pub review: Option<&'static str>,
}

/// Whether the QA sample draws this photo: random across photos, but the same
/// answer for the same image id every time (a re-scored photo is not re-drawn).
pub fn qa_drawn(image_id: Uuid, rate: f32) -> bool {
    let h = Sha256::new().chain_update(b"fundus-qa-sample").chain_update(image_id.as_bytes()).finalize();
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    (x as f64) < f64::from(rate.clamp(0.0, 1.0)) * 2f64.powi(64)
}

impl Routing {
    /// The band's factor in force for a model whose card says `card_odds`.
    pub fn odds(&self, card_odds: Option<f32>) -> f32 {
        self.uncertain_odds.or(card_odds).unwrap_or(DEFAULT_UNCERTAIN_ODDS)
    }

    /// The decision from the scores alone (no QA sample: see `qa_sample`), at
    /// a model's threshold and uncertain band (`band_floor`).
    pub fn decide(&self, glaucoma: f32, gradable: f32, threshold: f32, floor: f32) -> Decision {
        if gradable < self.gradable_threshold {
            Decision { label: "ungradable", review: Some("ungradable") }
        } else if glaucoma >= threshold {
            Decision { label: "referable", review: Some("referable") }
        } else if glaucoma >= floor {
            Decision { label: "non_referable", review: Some("uncertain") }
        } else {
            Decision { label: "non_referable", review: None }
        }
    }

    /// Routes a photo that no one would otherwise read to the QA sample when
    /// it is drawn; returns the decision and whether it was drawn.
    pub fn qa_sample(&self, d: Decision, image_id: Uuid) -> (Decision, bool) {
        if d.review.is_none() && qa_drawn(image_id, self.qa_rate) {
            (Decision { review: Some("qa_sample"), ..d }, true)
        } else {
            (d, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_at_the_edges() {
        let r = Routing { gradable_threshold: 0.5, uncertain_odds: None, qa_rate: 0.0 };
        let f = band_floor(0.3, 1.5);
        let id = Uuid::new_v4();
        assert_eq!(r.decide(0.9, 0.2, 0.3, f), Decision { label: "ungradable", review: Some("ungradable") });
        assert_eq!(r.decide(0.3, 0.9, 0.3, f), Decision { label: "referable", review: Some("referable") });
        assert_eq!(r.decide(0.26, 0.9, 0.3, f), Decision { label: "non_referable", review: Some("uncertain") });
        assert_eq!(r.decide(0.2, 0.9, 0.3, f), Decision { label: "non_referable", review: None });
        assert_eq!(r.decide(0.2, 0.5, 0.3, f).label, "non_referable");
        assert_eq!(r.qa_sample(r.decide(0.2, 0.9, 0.3, f), id).1, false);
        let all = Routing { qa_rate: 1.0, ..r };
        let (d, drawn) = all.qa_sample(all.decide(0.2, 0.9, 0.3, f), id);
        assert_eq!((d, drawn), (Decision { label: "non_referable", review: Some("qa_sample") }, true));
        // The sample never takes a photo that is already routed for another reason.
        assert_eq!(all.qa_sample(all.decide(0.3, 0.9, 0.3, f), id), (Decision { label: "referable", review: Some("referable") }, false));
    }

    /// The band is a factor in odds, so a model whose threshold is low sends
    /// only photos near that threshold to review, and one whose threshold is
    /// high gets a band of sensible width too; a fixed 0.05 in probability
    /// sent every photo of the low-threshold model to review.
    #[test]
    fn the_uncertain_band_means_the_same_at_low_and_high_thresholds() {
        let r = Routing { gradable_threshold: 0.5, uncertain_odds: None, qa_rate: 0.0 };
        let odds = r.odds(None);
        assert_eq!(odds, DEFAULT_UNCERTAIN_ODDS);
        assert_eq!(Routing { uncertain_odds: Some(3.0), ..r }.odds(Some(1.5)), 3.0, "the operator's factor wins");
        assert_eq!(r.odds(Some(1.5)), 1.5, "then the card's");
        let odds_of = |p: f32| f64::from(p) / (1.0 - f64::from(p));
        for threshold in [0.041f32, 0.3, 0.9] {
            let floor = band_floor(threshold, odds);
            let ratio = odds_of(threshold) / odds_of(floor);
            assert!((ratio - 2.0).abs() < 1e-3, "threshold {threshold}: floor {floor} has odds {ratio}x smaller");
            let reason = |g: f32| r.decide(g, 0.9, threshold, floor).review;
            assert_eq!(reason(threshold), Some("referable"));
            assert_eq!(reason(floor), Some("uncertain"));
            assert_eq!(reason((threshold + floor) / 2.0), Some("uncertain"));
            assert_eq!(reason(floor * 0.9), None, "threshold {threshold}: below the band");
        }
        // The photo that showed the old band's fault: a clear normal at 0.005
        // under a model whose threshold is 0.041.
        assert_eq!(r.decide(0.005, 0.9, 0.041, band_floor(0.041, odds)).review, None);
        // A high threshold keeps a band wider than 0.05 below it.
        assert!(0.9 - band_floor(0.9, odds) > 0.05);
        // A factor of 1 is no band at all.
        assert_eq!(band_floor(0.3, 1.0), 0.3);
    }

    #[test]
    fn the_qa_sample_is_reproducible_and_near_its_rate() {
        let ids: Vec<Uuid> = (0..20_000u128).map(|i| Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))).collect();
        let drawn = ids.iter().filter(|&&id| qa_drawn(id, 0.10)).count() as f64 / ids.len() as f64;
        // 20,000 draws at 10%: the standard error is 0.21 points.
        assert!((drawn - 0.10).abs() < 0.01, "drew {drawn}");
        assert!(ids.iter().all(|&id| qa_drawn(id, 0.10) == qa_drawn(id, 0.10)));
        assert!(!ids.iter().any(|&id| qa_drawn(id, 0.0)));
        assert!(ids.iter().all(|&id| qa_drawn(id, 1.0)));
    }
}
