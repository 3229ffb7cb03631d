//! Screening metrics, computed exactly from scores and labels (no binning
//! except for calibration): ROC curve and AUC, sensitivity at a specificity
//! and the threshold that achieves it, partial AUC over a specificity range,
//! and expected calibration error.

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
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![RocPoint { threshold: f32::INFINITY, fpr: 0.0, tpr: 0.0 }];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let t = scores[order[i]];
        while i < order.len() && scores[order[i]] == t {
            if labels[order[i]] { tp += 1.0 } else { fp += 1.0 }
            i += 1;
        }
        points.push(RocPoint { threshold: t, fpr: fp / neg, tpr: tp / pos });
    }
    points
}

/// Area under the ROC curve (trapezoids; ties count one half). NaN when a class is missing.
pub fn auc(scores: &[f32], labels: &[bool]) -> f64 {
    let roc = roc_curve(scores, labels);
    if roc.is_empty() {
        return f64::NAN;
    }
    roc.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum()
}

/// The highest sensitivity reachable with specificity at least `spec`, and the
/// threshold (score >= threshold is positive) that reaches it.
pub fn sensitivity_at_specificity(scores: &[f32], labels: &[bool], spec: f64) -> Option<(f64, f32)> {
    roc_curve(scores, labels)
        .into_iter()
        .filter(|p| 1.0 - p.fpr >= spec - 1e-12 && p.threshold.is_finite())
        .map(|p| (p.tpr, p.threshold))
        .last()
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
    let mut count = vec![0usize; bins];
    let mut conf = vec![0f64; bins];
    let mut hits = vec![0f64; bins];
    for (&p, &l) in probs.iter().zip(labels) {
        let b = ((p as f64 * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf[b] += p as f64;
        hits[b] += l as u8 as f64;
    }
    let n = probs.len().max(1) as f64;
    (0..bins).filter(|&b| count[b] > 0).map(|b| (conf[b] - hits[b]).abs() / n).sum()
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
    fn calibration_error_of_calibrated_and_overconfident_models() {
        let labels: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
        assert!(expected_calibration_error(&[0.5; 100], &labels, 10) < 1e-9);
        let over: Vec<f32> = (0..100).map(|i| if i % 4 == 0 { 0.0 } else { 1.0 }).collect();
        assert!(expected_calibration_error(&over, &labels, 10) > 0.4);
    }
}
