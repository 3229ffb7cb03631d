//! What a trained model is: its model card (architecture, preprocessing, the
//! operating threshold, metrics, a fingerprint of its training data) beside
//! its weights as safetensors. Inference reads the card to preprocess and
//! decide exactly as training did.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::data::Sample;
use crate::metrics::{self, RocPoint};
use crate::train::{EpochLog, TrainConfig};
use crate::Error;

pub const CARD_FILE: &str = "model_card.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    pub n: usize,
    pub positives: usize,
    /// The threshold applied: given, or the one reaching 95% specificity here.
    pub threshold: f32,
    pub auc: f64,
    /// Sensitivity at the card's threshold (or at 95% specificity on this set when none is given).
    pub sensitivity: f64,
    pub specificity: f64,
    /// Partial AUC over 90-100% specificity, normalised to 0..1.
    pub partial_auc_90: f64,
    pub gradable_auc: f64,
    pub calibration_error: f64,
    /// 95% intervals: the AUC's (Hanley and McNeil), sensitivity's and
    /// specificity's (Wilson).
    #[serde(default)]
    pub auc_ci95: Option<[f64; 2]>,
    #[serde(default)]
    pub sensitivity_ci95: Option<[f64; 2]>,
    #[serde(default)]
    pub specificity_ci95: Option<[f64; 2]>,
    /// On a synthetic set, the ceiling: the AUC of the generator's own
    /// probability on the same photos, and its sensitivity at this
    /// evaluation's specificity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_sensitivity: Option<f64>,
    /// The oracle's own calibration error on the same photos: calibrated by
    /// construction, so this is what sampling alone gives at this n.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_calibration_error: Option<f64>,
    /// The gradability head's ceiling: the AUC of the generator's own
    /// probability of a gradable call, over the photos `gradable_auc` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_gradable_auc: Option<f64>,
    /// The calibration error's 95% interval, and paired-bootstrap 95%
    /// intervals of how far the model falls short of the oracle on the same
    /// photos: in AUC, in sensitivity at this evaluation's specificity, in
    /// calibration error (the model's less the oracle's) and in gradability
    /// AUC. Pairing removes what the photos share, so these intervals are
    /// far narrower than the two figures' own intervals side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_error_ci95: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc_gap_ci95: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity_gap_ci95: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_gap_ci95: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradable_auc_gap_ci95: Option<[f64; 2]>,
    #[serde(skip)]
    pub roc: Vec<RocPoint>,
}

/// Wilson's 95% interval for `k` successes in `n`.
pub fn wilson95(k: usize, n: usize) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let (z, n, p) = (1.959_964f64, n as f64, k as f64 / n as f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    Some([(centre - half).max(0.0), (centre + half).min(1.0)])
}

/// Hanley and McNeil's 95% interval for an AUC with `pos` positives and `neg` negatives.
pub fn auc_ci95(auc: f64, pos: usize, neg: usize) -> Option<[f64; 2]> {
    if pos == 0 || neg == 0 || !auc.is_finite() {
        return None;
    }
    let (q1, q2) = (auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc));
    let (p, n) = (pos as f64, neg as f64);
    let var = (auc * (1.0 - auc) + (p - 1.0) * (q1 - auc * auc) + (n - 1.0) * (q2 - auc * auc)) / (p * n);
    let half = 1.959_964 * var.max(0.0).sqrt();
    Some([(auc - half).max(0.0), (auc + half).min(1.0)])
}

impl Evaluation {
    /// Adds the oracle's figures from the generator's `oracle_p` of each
    /// photo, and the intervals of the model's shortfall from it: `g` are
    /// the model's scores as `evaluate` was given them, over the same rows.
    /// Nothing when any of those photos has no `oracle_p`.
    pub fn with_oracle(mut self, g: &[f32], oracle: &[Option<f32>], glaucoma: &[bool], gmask: &[bool]) -> Evaluation {
        let Some((os, ol)) = oracle_rows(oracle, glaucoma, gmask) else { return self };
        let (gs, _) = masked(g, glaucoma, gmask);
        let (model, orc) = (metrics::Ranked::new(&gs, &ol), metrics::Ranked::new(&os, &ol));
        let roc = orc.roc(None);
        self.oracle_auc = Some(metrics::roc_auc(&roc));
        self.oracle_sensitivity = metrics::roc_sensitivity(&roc, self.specificity).map(|x| x.0);
        self.oracle_calibration_error = Some(metrics::expected_calibration_error(&os, &ol, 10));
        let n = ol.len();
        self.auc_gap_ci95 = auc_gap_ci95(&orc, &model, n);
        let threshold = self.threshold;
        self.sensitivity_gap_ci95 = metrics::bootstrap95(n, |w| {
            // The model's operating point in this resample, and the oracle's
            // sensitivity at the specificity the model reaches there.
            let (mut tp, mut pos, mut tn, mut neg) = (0.0, 0.0, 0.0, 0.0);
            for i in 0..n {
                let (k, above) = (w[i] as f64, gs[i] >= threshold);
                if ol[i] {
                    pos += k;
                    tp += if above { k } else { 0.0 };
                } else {
                    neg += k;
                    tn += if above { 0.0 } else { k };
                }
            }
            match metrics::roc_sensitivity(&orc.roc(Some(w)), tn / neg) {
                Some((sens, _)) if pos > 0.0 && neg > 0.0 => sens - tp / pos,
                _ => f64::NAN,
            }
        });
        self.calibration_gap_ci95 = metrics::bootstrap95(n, |w| {
            metrics::weighted_calibration_error(&gs, &ol, 10, Some(w)) - metrics::weighted_calibration_error(&os, &ol, 10, Some(w))
        });
        self
    }

    /// Adds the gradability ceiling from the generator's `gradable_p`, over
    /// the rows the gradability AUC counts, and the interval of the model's
    /// shortfall from it (`q`: the model's gradability scores as `evaluate`
    /// was given them); nothing when one has none.
    pub fn with_gradable_oracle(mut self, q: &[f32], oracle: &[Option<f32>], gradable: &[bool], qmask: &[bool]) -> Evaluation {
        let Some((os, ol)) = oracle_rows(oracle, gradable, qmask) else { return self };
        let (qs, _) = masked(q, gradable, qmask);
        let (model, orc) = (metrics::Ranked::new(&qs, &ol), metrics::Ranked::new(&os, &ol));
        self.oracle_gradable_auc = Some(metrics::roc_auc(&orc.roc(None)));
        self.gradable_auc_gap_ci95 = auc_gap_ci95(&orc, &model, ol.len());
        self
    }
}

/// The paired-bootstrap interval of the oracle's AUC less the model's, over
/// the same `n` photos.
fn auc_gap_ci95(oracle: &metrics::Ranked, model: &metrics::Ranked, n: usize) -> Option<[f64; 2]> {
    metrics::bootstrap95(n, |w| metrics::roc_auc(&oracle.roc(Some(w))) - metrics::roc_auc(&model.roc(Some(w))))
}

/// The scores and labels of the masked rows.
fn masked(scores: &[f32], labels: &[bool], mask: &[bool]) -> (Vec<f32>, Vec<bool>) {
    (0..mask.len()).filter(|&i| mask[i]).map(|i| (scores[i], labels[i])).unzip()
}

/// The oracle's probabilities and the labels over the masked rows; `None`
/// when there are none or any of them has no probability.
fn oracle_rows(oracle: &[Option<f32>], labels: &[bool], mask: &[bool]) -> Option<(Vec<f32>, Vec<bool>)> {
    let rows: Vec<(f32, bool)> = (0..mask.len()).filter(|&i| mask[i]).map(|i| oracle.get(i).copied().flatten().map(|p| (p, labels[i]))).collect::<Option<_>>()?;
    (!rows.is_empty()).then(|| rows.into_iter().unzip())
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub preprocessing: imaging::Preprocessing,
    pub train: TrainConfig,
    /// Glaucoma probability at or above which a photo is referable: chosen on
    /// validation data at 95% specificity.
    pub threshold: f32,
    /// Platt scaling of the glaucoma logit, fitted on validation data: every
    /// probability the model reports, the threshold included, is calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibrate::Calibration>,
    /// The uncertain review band: non-referable photos whose odds are within
    /// this factor of the threshold's are reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain_odds: Option<f32>,
    pub validation: Evaluation,
    pub test: Option<Evaluation>,
    /// SHA-256 over the sorted (file name, size, labels) of the training data.
    pub data_fingerprint: String,
    /// SHA-256 of the weights file: loading refuses weights that differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    pub best_epoch: usize,
    pub history: Vec<EpochLog>,
    pub created_at: String,
}

impl ModelCard {
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        std::fs::write(dir.join(CARD_FILE), serde_json::to_string_pretty(self)?)?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<ModelCard, Error> {
        Ok(read_card(dir)?.0)
    }
}

/// The card in `dir` as `T` (the full card, or what inference needs of it),
/// and its text. Errors name the file.
pub(crate) fn read_card<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<(T, String), Error> {
    let path = dir.join(CARD_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let card = serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    Ok((card, text))
}

/// SHA-256 of a file, in hex.
pub fn file_sha256(path: &Path) -> Result<String, Error> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

pub fn fingerprint(samples: &[Sample]) -> String {
    let mut lines: Vec<String> = samples
        .iter()
        .map(|s| {
            let size = std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
            let name = s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            format!("{name},{size},{:?},{:?}", s.glaucoma, s.gradable)
        })
        .collect();
    lines.sort();
    hex::encode(Sha256::digest(lines.join("\n").as_bytes()))
}

/// Metrics of glaucoma scores `g` and gradability scores `q` against labels;
/// glaucoma rows are those with `gmask`, gradability rows those with `qmask`.
pub fn evaluate(
    g: &[f32],
    glaucoma: &[bool],
    gmask: &[bool],
    q: &[f32],
    gradable: &[bool],
    qmask: &[bool],
    threshold: Option<f32>,
) -> Evaluation {
    let (gs, gl) = masked(g, glaucoma, gmask);
    let (qs, ql) = masked(q, gradable, qmask);
    let threshold = threshold.or_else(|| metrics::sensitivity_at_specificity(&gs, &gl, 0.95).map(|x| x.1)).unwrap_or(0.5);
    let pos = gl.iter().filter(|&&l| l).count();
    let tp = gs.iter().zip(&gl).filter(|(s, l)| **l && **s >= threshold).count();
    let tn = gs.iter().zip(&gl).filter(|(s, l)| !**l && **s < threshold).count();
    let auc = metrics::auc(&gs, &gl);
    Evaluation {
        n: gs.len(),
        positives: pos,
        threshold,
        auc,
        sensitivity: tp as f64 / pos.max(1) as f64,
        specificity: tn as f64 / (gs.len() - pos).max(1) as f64,
        partial_auc_90: metrics::partial_auc(&gs, &gl, 0.9),
        gradable_auc: metrics::auc(&qs, &ql),
        calibration_error: metrics::expected_calibration_error(&gs, &gl, 10),
        auc_ci95: auc_ci95(auc, pos, gs.len() - pos),
        sensitivity_ci95: wilson95(tp, pos),
        specificity_ci95: wilson95(tn, gs.len() - pos),
        calibration_error_ci95: metrics::bootstrap95(gs.len(), |w| metrics::weighted_calibration_error(&gs, &gl, 10, Some(w))),
        oracle_auc: None,
        oracle_sensitivity: None,
        oracle_calibration_error: None,
        oracle_gradable_auc: None,
        auc_gap_ci95: None,
        sensitivity_gap_ci95: None,
        calibration_gap_ci95: None,
        gradable_auc_gap_ci95: None,
        roc: metrics::roc_curve(&gs, &gl),
    }
}

/// Draws the ROC curve (with the chance diagonal and the operating point) as a PNG.
pub fn roc_png(roc: &[RocPoint], operating: Option<(f64, f64)>, path: &Path) -> Result<(), Error> {
    let (side, m) = (480u32, 40u32);
    let mut img = image::RgbImage::from_pixel(side, side, image::Rgb([255, 255, 255]));
    let plot = (side - 2 * m) as f64;
    let to_px = |fpr: f64, tpr: f64| (m as f64 + fpr * plot, (side - m) as f64 - tpr * plot);
    let mut line = |a: (f64, f64), b: (f64, f64), colour: [u8; 3]| {
        let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) as usize).max(1);
        for k in 0..=steps {
            let t = k as f64 / steps as f64;
            let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            for (dx, dy) in [(0i64, 0i64), (1, 0), (0, 1)] {
                let (px, py) = (x as i64 + dx, y as i64 + dy);
                if px >= 0 && py >= 0 && (px as u32) < side && (py as u32) < side {
                    img.put_pixel(px as u32, py as u32, image::Rgb(colour));
                }
            }
        }
    };
    let black = [0, 0, 0];
    line(to_px(0.0, 0.0), to_px(1.0, 0.0), black);
    line(to_px(0.0, 0.0), to_px(0.0, 1.0), black);
    line(to_px(0.0, 0.0), to_px(1.0, 1.0), [180, 180, 180]);
    for w in roc.windows(2) {
        line(to_px(w[0].fpr, w[0].tpr), to_px(w[1].fpr, w[1].tpr), [200, 40, 40]);
    }
    if let Some((fpr, tpr)) = operating {
        let (x, y) = to_px(fpr, tpr);
        for dx in -4..=4 {
            line((x - 4.0, y + dx as f64), (x + 4.0, y + dx as f64), [30, 90, 200]);
        }
    }
    img.save(path).map_err(|e| Error::Data(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// 3,000 photos whose labels are drawn from the oracle's probability,
    /// and a model that sees the oracle's logit through noise.
    fn noisy_model() -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let normal = |rng: &mut rand_chacha::ChaCha8Rng| (0..12).map(|_| rng.random_range(-0.5f32..0.5)).sum::<f32>();
        let (mut model, mut oracle, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3000 {
            let z = 2.0 * normal(&mut rng) - 1.5;
            let p = crate::calibrate::sigmoid(z);
            labels.push(rng.random_range(0.0f32..1.0) < p);
            oracle.push(p);
            model.push(crate::calibrate::sigmoid(z + 1.2 * normal(&mut rng)));
        }
        (model, oracle, labels)
    }

    #[test]
    fn shortfall_from_the_oracle_has_a_paired_interval() {
        let (g, o, l) = noisy_model();
        let all = vec![true; l.len()];
        let oracle: Vec<Option<f32>> = o.iter().map(|&p| Some(p)).collect();
        let e = evaluate(&g, &l, &all, &g, &l, &all, None).with_oracle(&g, &oracle, &l, &all).with_gradable_oracle(&g, &oracle, &l, &all);
        let inside = |x: f64, [a, b]: [f64; 2]| a <= x && x <= b;
        let gap = e.oracle_auc.expect("oracle AUC") - e.auc;
        let [lo, hi] = e.auc_gap_ci95.expect("AUC gap interval");
        assert!(inside(gap, [lo, hi]) && lo > 0.0, "gap {gap} in {lo}..{hi}, clearly short");
        let [a, b] = e.auc_ci95.expect("AUC interval");
        assert!(hi - lo < 0.6 * (b - a), "paired {lo}..{hi} against the model's own {a}..{b}");
        let sens_gap = e.oracle_sensitivity.expect("oracle sensitivity") - e.sensitivity;
        assert!(inside(sens_gap, e.sensitivity_gap_ci95.expect("sensitivity gap interval")), "{sens_gap} {:?}", e.sensitivity_gap_ci95);
        assert!(inside(e.calibration_error, e.calibration_error_ci95.expect("ECE interval")), "{e:?}");
        let ece_gap = e.calibration_error - e.oracle_calibration_error.expect("oracle ECE");
        assert!(inside(ece_gap, e.calibration_gap_ci95.expect("ECE gap interval")), "{ece_gap} {:?}", e.calibration_gap_ci95);
        assert_eq!(e.gradable_auc_gap_ci95, e.auc_gap_ci95, "the same scores against the same oracle");

        // The oracle against itself falls short by nothing in AUC and
        // calibration, in every resample; in sensitivity by at most what a
        // resample's own best threshold at that specificity gains over the
        // fixed one.
        let e = evaluate(&o, &l, &all, &o, &l, &all, None).with_oracle(&o, &oracle, &l, &all);
        assert_eq!((e.auc_gap_ci95, e.calibration_gap_ci95), (Some([0.0; 2]), Some([0.0; 2])));
        let [lo, hi] = e.sensitivity_gap_ci95.expect("sensitivity gap interval");
        assert!(lo == 0.0 && hi < 0.01, "{lo}..{hi}");

        // A photo without an oracle probability: no oracle figures at all.
        let mut some = oracle.clone();
        some[7] = None;
        let e = evaluate(&g, &l, &all, &g, &l, &all, None).with_oracle(&g, &some, &l, &all);
        assert!(e.oracle_auc.is_none() && e.auc_gap_ci95.is_none());
    }
}
