//! Calibrated glaucoma probabilities: Platt scaling, `p = sigmoid(scale * z +
//! shift)` on the network's logit `z`, fitted on validation data. Training
//! weighs positives up (class balance), which shifts every logit; a
//! temperature alone cannot undo a shift, so the fit has both terms.

/// The fitted map from logit to calibrated probability.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Platt {
    pub scale: f32,
    pub shift: f32,
}

impl Platt {
    pub const IDENTITY: Platt = Platt { scale: 1.0, shift: 0.0 };

    pub fn logit(&self, z: f32) -> f32 {
        self.scale * z + self.shift
    }

    pub fn prob(&self, z: f32) -> f32 {
        sigmoid(self.logit(z))
    }

    /// Whether the map is usable: finite, and increasing (it must keep the
    /// order of the scores, so the ROC curve and AUC do not change).
    pub fn check(&self) -> Result<(), String> {
        if self.scale.is_finite() && self.shift.is_finite() && (0.01..=100.0).contains(&self.scale) && self.shift.abs() <= 100.0 {
            Ok(())
        } else {
            Err(format!("calibration scale {} and shift {} must be finite, the scale within 0.01..100", self.scale, self.shift))
        }
    }
}

/// Where the uncertain review band starts: the probability whose odds are the
/// threshold's divided by `odds` (at least 1).
pub fn band_floor(threshold: f32, odds: f32) -> f32 {
    let t = f64::from(threshold.clamp(0.0, 1.0));
    if t <= 0.0 || t >= 1.0 {
        return threshold;
    }
    let o = t / (1.0 - t) / f64::from(odds.max(1.0));
    (o / (1.0 + o)) as f32
}

/// Checks an uncertain band's factor in odds: finite, 1 (no band) to 100.
pub fn check_odds(odds: f32) -> Result<(), String> {
    if odds.is_finite() && (1.0..=100.0).contains(&odds) {
        Ok(())
    } else {
        Err(format!("the uncertain band's factor in odds must be from 1 to 100, not {odds}"))
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// What calibration did, for the model card.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    pub method: String,
    /// `scale` and `shift`, beside the rest in the card's JSON.
    #[serde(flatten)]
    pub platt: Platt,
    /// Validation photos it was fitted on.
    pub n: usize,
    /// Expected calibration error (10 bins) on validation data before and after.
    pub ece_before: f64,
    pub ece_after: f64,
    /// Where the uncertain review band starts (calibrated probability), and
    /// the share of validation photos that fall in it.
    pub band_floor: f32,
    pub band_share: f64,
}

/// Fits `scale` and `shift` by maximum likelihood (Newton's method on the
/// two-parameter logistic regression), with Platt's smoothed targets so that
/// separable data gives a finite fit. Identity when there is nothing to fit.
pub fn fit(logits: &[f32], labels: &[bool]) -> Platt {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Platt::IDENTITY;
    }
    let (hi, lo) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let target = |l: bool| if l { hi } else { lo };
    // Negative log-likelihood, written so that large margins do not overflow.
    let nll = |a: f64, b: f64| -> f64 {
        logits.iter().zip(labels).map(|(&z, &l)| {
            let m = a * f64::from(z) + b;
            let t = target(l);
            // -(t ln p + (1-t) ln(1-p)) with p = sigmoid(m)
            m.max(0.0) - t * m + (-m.abs()).exp().ln_1p()
        }).sum()
    };
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let mut current = nll(a, b);
    for _ in 0..100 {
        // Gradient and Hessian of the negative log-likelihood.
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&z, &l) in logits.iter().zip(labels) {
            let z = f64::from(z);
            let p = 1.0 / (1.0 + (-(a * z + b)).exp());
            let w = (p * (1.0 - p)).max(1e-12);
            ga += (p - target(l)) * z;
            gb += p - target(l);
            haa += w * z * z;
            hab += w * z;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        // Damped: halve the step until the likelihood improves.
        let mut step = 1.0;
        let mut moved = false;
        for _ in 0..30 {
            let (na, nb) = (a - step * da, b - step * db);
            let next = nll(na, nb);
            if next.is_finite() && next <= current {
                (a, b, current, moved) = (na, nb, next, true);
                break;
            }
            step *= 0.5;
        }
        if !moved || (step * da).abs() < 1e-9 && (step * db).abs() < 1e-9 {
            break;
        }
    }
    let p = Platt { scale: a as f32, shift: b as f32 };
    if p.check().is_ok() { p } else { Platt::IDENTITY }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Scores whose true probability is `sigmoid(0.5 * z - 1)`: the fit finds
    /// the map back, and calibration error falls to the sampling noise.
    #[test]
    fn recovers_a_known_miscalibration() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let z: Vec<f32> = (0..20_000).map(|_| rng.random_range(-8.0..8.0)).collect();
        let y: Vec<bool> = z.iter().map(|&z| rng.random_bool(f64::from(sigmoid(0.5 * z - 1.0)))).collect();
        let p = fit(&z, &y);
        assert!((p.scale - 0.5).abs() < 0.05 && (p.shift + 1.0).abs() < 0.08, "{p:?}");
        let raw: Vec<f32> = z.iter().map(|&z| sigmoid(z)).collect();
        let cal: Vec<f32> = z.iter().map(|&z| p.prob(z)).collect();
        let (before, after) = (crate::metrics::expected_calibration_error(&raw, &y, 10), crate::metrics::expected_calibration_error(&cal, &y, 10));
        assert!(before > 0.1 && after < 0.02, "ECE {before} -> {after}");
        // Order is kept: calibration never changes which photo scores higher.
        assert!(p.scale > 0.0);
    }

    #[test]
    fn separable_or_one_class_data_gives_a_finite_fit() {
        let z = [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0];
        let p = fit(&z, &[false, false, false, true, true, true]);
        assert!(p.check().is_ok(), "{p:?}");
        assert_eq!(fit(&z, &[true; 6]), Platt::IDENTITY);
        assert!(Platt { scale: f32::NAN, shift: 0.0 }.check().is_err());
        assert!(Platt { scale: -1.0, shift: 0.0 }.check().is_err());
    }
}
