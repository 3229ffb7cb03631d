//! Screening metrics, computed exactly from scores and labels (no binning
//! except for calibration): ROC curve and AUC, sensitivity at a specificity
//! and the threshold that achieves it, partial AUC over a specificity range,
//! and expected calibration error; and the paired bootstrap that puts a 95%
//! interval on any of them, or on the difference of two scorers on the same
//! photos.

use rand::{Rng, SeedableRng};

/// One point of the ROC curve: a threshold and what it achieves.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RocPoint {
    pub threshold: f32,
    pub fpr: f64,
    pub tpr: f64,
}

/// The ROC curve from the highest threshold down, tied scores taken together.
/// Empty when either class is missing.
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Vec<RocPoint> {
    Ranked::new(scores, labels).roc(None)
}

/// Scores sorted once, highest first, so that the ROC curve of each bootstrap
/// resample is one pass over the photos rather than a sort.
pub struct Ranked<'a> {
    scores: &'a [f32],
    labels: &'a [bool],
    order: Vec<usize>,
}

impl<'a> Ranked<'a> {
    pub fn new(scores: &'a [f32], labels: &'a [bool]) -> Ranked<'a> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        Ranked { scores, labels, order }
    }

    /// The ROC curve with photo `i` counted `w[i]` times (each once without
    /// `w`). Empty when either class has no weight.
    pub fn roc(&self, w: Option<&[u32]>) -> Vec<RocPoint> {
        let weight = |i: usize| w.map_or(1.0, |w| w[i] as f64);
        let (mut pos, mut neg) = (0.0, 0.0);
        for (i, &l) in self.labels.iter().enumerate() {
            if l { pos += weight(i) } else { neg += weight(i) }
        }
        if pos == 0.0 || neg == 0.0 {
            return Vec::new();
        }
        let (scores, order) = (self.scores, &self.order);
        let mut points = vec![RocPoint { threshold: f32::INFINITY, fpr: 0.0, tpr: 0.0 }];
        let (mut tp, mut fp) = (0.0, 0.0);
        let mut i = 0;
        while i < order.len() {
            let t = scores[order[i]];
            let mut any = false;
            while i < order.len() && scores[order[i]] == t {
                let k = order[i];
                any |= weight(k) > 0.0;
                if self.labels[k] { tp += weight(k) } else { fp += weight(k) }
                i += 1;
            }
            if any {
                points.push(RocPoint { threshold: t, fpr: fp / neg, tpr: tp / pos });
            }
        }
        points
    }
}

/// Area under the ROC curve (trapezoids; ties count one half). NaN when a class is missing.
pub fn auc(scores: &[f32], labels: &[bool]) -> f64 {
    roc_auc(&roc_curve(scores, labels))
}

/// The area under a curve from `roc_curve` or `Ranked::roc`.
pub fn roc_auc(roc: &[RocPoint]) -> f64 {
    if roc.is_empty() {
        return f64::NAN;
    }
    roc.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum()
}

/// The highest sensitivity reachable with specificity at least `spec`, and the
/// threshold (score >= threshold is positive) that reaches it.
pub fn sensitivity_at_specificity(scores: &[f32], labels: &[bool], spec: f64) -> Option<(f64, f32)> {
    roc_sensitivity(&roc_curve(scores, labels), spec)
}

/// `sensitivity_at_specificity` on a curve already drawn.
pub fn roc_sensitivity(roc: &[RocPoint], spec: f64) -> Option<(f64, f32)> {
    roc.iter().filter(|p| 1.0 - p.fpr >= spec - 1e-12 && p.threshold.is_finite()).map(|p| (p.tpr, p.threshold)).next_back()
}

/// Area under the ROC curve where specificity is at least `min_spec`
/// (false-positive rate 0..1-min_spec), divided by that range: 1 is perfect.
pub fn partial_auc(scores: &[f32], labels: &[bool], min_spec: f64) -> f64 {
    let roc = roc_curve(scores, labels);
    let max_fpr = 1.0 - min_spec;
    if roc.is_empty() || max_fpr <= 0.0 {
        return f64::NAN;
    }
    let mut area = 0.0;
    for w in roc.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.fpr >= max_fpr {
            break;
        }
        let (x1, mut y1) = (b.fpr.min(max_fpr), b.tpr);
        if b.fpr > max_fpr {
            // interpolate the segment at max_fpr
            y1 = a.tpr + (b.tpr - a.tpr) * (max_fpr - a.fpr) / (b.fpr - a.fpr);
        }
        area += (x1 - a.fpr) * (a.tpr + y1) / 2.0;
    }
    area / max_fpr
}

/// Expected calibration error over `bins` equal-width probability bins.
pub fn expected_calibration_error(probs: &[f32], labels: &[bool], bins: usize) -> f64 {
    weighted_calibration_error(probs, labels, bins, None)
}

/// The expected calibration error with photo `i` counted `w[i]` times.
pub fn weighted_calibration_error(probs: &[f32], labels: &[bool], bins: usize, w: Option<&[u32]>) -> f64 {
    let mut count = vec![0f64; bins];
    let mut conf = vec![0f64; bins];
    let mut hits = vec![0f64; bins];
    for (i, (&p, &l)) in probs.iter().zip(labels).enumerate() {
        let k = w.map_or(1.0, |w| w[i] as f64);
        let b = ((p as f64 * bins as f64) as usize).min(bins - 1);
        count[b] += k;
        conf[b] += k * p as f64;
        hits[b] += k * l as u8 as f64;
    }
    let n: f64 = count.iter().sum();
    if n == 0.0 {
        return 0.0;
    }
    (0..bins).filter(|&b| count[b] > 0.0).map(|b| (conf[b] - hits[b]).abs() / n).sum()
}

/// Resamples in `bootstrap95`.
pub const BOOTSTRAP_ROUNDS: usize = 2000;

/// A 95% percentile interval by the bootstrap: `BOOTSTRAP_ROUNDS` resamples
/// of the `n` photos with replacement, drawn from a fixed seed so the same
/// figures always give the same interval. `stat` gets each photo's count in
/// the resample; a statistic of two scorers computed from the same counts is
/// a paired comparison, whose interval is far narrower than the two
/// intervals side by side. Resamples where `stat` is not finite (a class
/// missing) are left out; `None` when most are, or when `n` is 0.
pub fn bootstrap95(n: usize, mut stat: impl FnMut(&[u32]) -> f64) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xB007);
    let mut w = vec![0u32; n];
    let mut values = Vec::with_capacity(BOOTSTRAP_ROUNDS);
    for _ in 0..BOOTSTRAP_ROUNDS {
        w.fill(0);
        for _ in 0..n {
            w[rng.random_range(0..n)] += 1;
        }
        let v = stat(&w);
        if v.is_finite() {
            values.push(v);
        }
    }
    if values.len() < BOOTSTRAP_ROUNDS / 2 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some([at(0.025), at(0.975)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_scores() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &labels), 0.5);
        // One of four positive-negative pairs is misordered.
        assert_eq!(auc(&[0.1, 0.6, 0.5, 0.9], &labels), 0.75);
        assert!(auc(&[0.1, 0.2], &[true, true]).is_nan());
    }

    #[test]
    fn sensitivity_at_specificity_and_its_threshold() {
        // 20 negatives at 0..0.19, 10 positives at 0.15..0.24: one negative
        // above 0.18 is allowed at 95% specificity.
        let mut s: Vec<f32> = (0..20).map(|i| i as f32 / 100.0).collect();
        s.extend((0..10).map(|i| 0.15 + i as f32 / 100.0));
        let l: Vec<bool> = (0..30).map(|i| i >= 20).collect();
        let (sens, thr) = sensitivity_at_specificity(&s, &l, 0.95).expect("reachable");
        // threshold 0.19: negatives >= 0.19: one (5%); positives >= 0.19: 0.19..0.24 = 6.
        assert!((thr - 0.19).abs() < 1e-6, "{thr}");
        assert!((sens - 0.6).abs() < 1e-9, "{sens}");
    }

    #[test]
    fn partial_auc_is_one_when_perfect_and_smaller_otherwise() {
        let labels = [false, false, true, true];
        assert!((partial_auc(&[0.1, 0.2, 0.8, 0.9], &labels, 0.9) - 1.0).abs() < 1e-12);
        assert!(partial_auc(&[0.1, 0.95, 0.8, 0.9], &labels, 0.9) < 0.6);
    }

    #[test]
    fn weights_count_photos_as_copies() {
        // Counting photo i w[i] times gives the figures of the set with those copies.
        let s = [0.9f32, 0.7, 0.7, 0.4, 0.3, 0.2, 0.1];
        let p = [0.95f32, 0.05, 0.6, 0.62, 0.3, 0.9, 0.15];
        let l = [true, false, true, true, false, true, false];
        let w = [2u32, 0, 1, 3, 1, 0, 2];
        let (mut cs, mut cp, mut cl) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..s.len() {
            for _ in 0..w[i] {
                cs.push(s[i]);
                cp.push(p[i]);
                cl.push(l[i]);
            }
        }
        let ranked = Ranked::new(&s, &l);
        assert_eq!(ranked.roc(Some(&w)), roc_curve(&cs, &cl));
        assert_eq!(roc_auc(&ranked.roc(Some(&w))), auc(&cs, &cl));
        assert_eq!(ranked.roc(None).len(), 7, "six distinct scores and the start");
        assert!((weighted_calibration_error(&p, &l, 10, Some(&w)) - expected_calibration_error(&cp, &cl, 10)).abs() < 1e-12);
        // Without a negative, there is no curve.
        assert!(Ranked::new(&s, &l).roc(Some(&[1, 0, 1, 1, 0, 1, 0])).is_empty());
    }

    #[test]
    fn bootstrap_interval_of_a_proportion_matches_wilson() {
        // 300 of 1000: Wilson's 95% interval is 0.2724-0.3291.
        let hits: Vec<bool> = (0..1000).map(|i| i % 10 < 3).collect();
        let share = |w: &[u32]| {
            let n: u32 = w.iter().sum();
            w.iter().zip(&hits).filter(|&(_, &h)| h).map(|(&k, _)| k as f64).sum::<f64>() / n as f64
        };
        let [lo, hi] = bootstrap95(hits.len(), share).expect("interval");
        assert!((lo - 0.2724).abs() < 0.006 && (hi - 0.3291).abs() < 0.006, "{lo} {hi}");
        assert_eq!(bootstrap95(hits.len(), share), Some([lo, hi]), "seeded: the same interval again");
        assert_eq!(bootstrap95(0, share), None);
        assert_eq!(bootstrap95(5, |_| f64::NAN), None);
    }

    #[test]
    fn calibration_error_of_calibrated_and_overconfident_models() {
        let labels: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
        assert!(expected_calibration_error(&[0.5; 100], &labels, 10) < 1e-9);
        let over: Vec<f32> = (0..100).map(|i| if i % 4 == 0 { 0.0 } else { 1.0 }).collect();
        assert!(expected_calibration_error(&over, &labels, 10) > 0.4);
    }
}
