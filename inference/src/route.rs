//! Who needs a clinician: the referral decision at the model's operating
//! point, and the review queue's reasons.

/// How scores become a label and, when a human should look, a review reason.
#[derive(Debug, Clone, Copy)]
pub struct Routing {
    /// Gradability probability under which a photo is ungradable.
    pub gradable_threshold: f32,
    /// Photos scoring within this distance below the referral threshold are
    /// reviewed as uncertain.
    pub uncertainty_band: f32,
}

impl Default for Routing {
    fn default() -> Self {
        Routing { gradable_threshold: 0.5, uncertainty_band: 0.05 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `referable`, `non_referable` or `ungradable`.
    pub label: &'static str,
    /// `referable`, `ungradable` or `uncertain`; `None` when no one need look.
    pub review: Option<&'static str>,
}

impl Routing {
    pub fn decide(&self, glaucoma: f32, gradable: f32, threshold: f32) -> Decision {
        if gradable < self.gradable_threshold {
            Decision { label: "ungradable", review: Some("ungradable") }
        } else if glaucoma >= threshold {
            Decision { label: "referable", review: Some("referable") }
        } else if threshold - glaucoma <= self.uncertainty_band {
            Decision { label: "non_referable", review: Some("uncertain") }
        } else {
            Decision { label: "non_referable", review: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_at_the_edges() {
        let r = Routing { gradable_threshold: 0.5, uncertainty_band: 0.05 };
        assert_eq!(r.decide(0.9, 0.2, 0.3), Decision { label: "ungradable", review: Some("ungradable") });
        assert_eq!(r.decide(0.3, 0.9, 0.3), Decision { label: "referable", review: Some("referable") });
        assert_eq!(r.decide(0.26, 0.9, 0.3), Decision { label: "non_referable", review: Some("uncertain") });
        assert_eq!(r.decide(0.2, 0.9, 0.3), Decision { label: "non_referable", review: None });
        assert_eq!(r.decide(0.2, 0.5, 0.3).label, "non_referable");
    }
}
