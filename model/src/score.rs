//! Inference: load a model directory (our own safetensors + model card, or a
//! TorchScript export with its short card), score batches of preprocessed
//! photos, and give each photo a heatmap for reviewers. Also the two bridges
//! to PyTorch: export to TorchScript, and ImageNet initialisation of a trunk
//! from a safetensors file in torchvision's names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::{CModule, Device, Kind, Tensor, nn};

use crate::card::{CARD_FILE, WEIGHTS_FILE, read_card};
use crate::net::{Arch, Net};
use crate::train::normalise;
use crate::Error;

/// The file a TorchScript model directory holds beside its card.
pub const SCRIPT_FILE: &str = "model.pt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// bf16 on a GPU, f32 on the CPU.
    #[default]
    Auto,
    F32,
    Bf16,
}

/// What inference reads from a card: a training card has more, which is ignored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InferenceCard {
    pub name: String,
    /// `torchscript` for an export; absent for our own weights.
    #[serde(default)]
    pub format: Option<String>,
    pub preprocessing: imaging::Preprocessing,
    pub threshold: f32,
    #[serde(default)]
    pub train: Option<TrainHead>,
    #[serde(default)]
    pub arch: Option<String>,
    /// The TorchScript file, relative to the card (`model.pt` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// SHA-256 of the weights file; when present, other weights are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// Platt scaling of the glaucoma logit, fitted on validation data (a
    /// training card's `calibration` has more, which is ignored); none: raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibrate::Platt>,
    /// The uncertain review band as a factor in odds below the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain_odds: Option<f32>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainHead {
    pub arch: Arch,
}

enum Loaded {
    Native { _vs: nn::VarStore, net: Net },
    Script(CModule),
}

pub struct Scorer {
    loaded: Loaded,
    pub card: InferenceCard,
    pub device: Device,
    kind: Kind,
    /// First 16 hex digits of a SHA-256 over weights and card (a changed
    /// threshold or preprocessing is another version even with the same
    /// weights): names a local model's version.
    pub digest: String,
}

/// Scores for a batch, in input order.
pub struct Scores {
    pub glaucoma: Vec<f32>,
    pub gradable: Vec<f32>,
    /// `[N, S, S]` in 0..1 on the CPU, when asked for.
    pub maps: Option<Tensor>,
}

impl Scorer {
    pub fn load(dir: &Path, device: Device, precision: Precision) -> Result<Scorer, Error> {
        let card_path = dir.join(CARD_FILE);
        let (card, text): (InferenceCard, String) = read_card(dir)?;
        if !(0.0..=1.0).contains(&card.threshold) {
            return Err(Error::Data(format!("{}: threshold {} is not a probability", card_path.display(), card.threshold)));
        }
        if let Some(Err(e)) = card.calibration.map(|c| c.check()) {
            return Err(Error::Data(format!("{}: {e}", card_path.display())));
        }
        if let Some(Err(e)) = card.uncertain_odds.map(crate::calibrate::check_odds) {
            return Err(Error::Data(format!("{}: uncertain_odds: {e}", card_path.display())));
        }
        let kind = match (precision, device) {
            (Precision::F32, _) | (Precision::Auto, Device::Cpu) => Kind::Float,
            _ => Kind::BFloat16,
        };
        // The weights file, and for our own weights the architecture they fit.
        let (weights, arch) = match card.format.as_deref() {
            Some("torchscript") => {
                let file = card.weights.as_deref().unwrap_or(SCRIPT_FILE);
                if file.contains('/') || file.contains("..") {
                    return Err(Error::Data(format!("{}: weights {file:?} must be a file beside the card", card_path.display())));
                }
                (dir.join(file), None)
            }
            None | Some("native") => {
                let arch = card.train.as_ref().map(|t| t.arch).ok_or_else(|| Error::Data(format!("{}: no train.arch", card_path.display())))?;
                (dir.join(WEIGHTS_FILE), Some(arch))
            }
            Some(other) => return Err(Error::Data(format!("{}: unknown format {other:?}", card_path.display()))),
        };
        // One read of the weights: checked against the card before anything
        // is loaded, then (with the card's text) the version's digest.
        let mut h = Sha256::new();
        let mut f = std::fs::File::open(&weights).map_err(|e| Error::Data(format!("{}: {e}", weights.display())))?;
        std::io::copy(&mut f, &mut h)?;
        if let Some(want) = &card.weights_sha256 {
            let got = hex::encode(h.clone().finalize());
            if !got.eq_ignore_ascii_case(want) {
                return Err(Error::Data(format!(
                    "{}: SHA-256 {got} is not the {want} its card names; refusing to load other weights",
                    weights.display()
                )));
            }
        }
        h.update(text.as_bytes());
        let digest = hex::encode(&h.finalize()[..8]);
        let loaded = match arch {
            None => {
                let mut m = CModule::load_on_device(&weights, device).map_err(|e| Error::Data(format!("{}: {e}", weights.display())))?;
                m.set_eval();
                m.to(device, kind, false);
                Loaded::Script(m)
            }
            Some(arch) => {
                let mut vs = nn::VarStore::new(device);
                let net = Net::for_input(&vs.root(), arch, &card.preprocessing);
                vs.load(&weights).map_err(|e| Error::Data(format!("{}: {e}", weights.display())))?;
                vs.set_kind(kind);
                Loaded::Native { _vs: vs, net }
            }
        };
        Ok(Scorer { loaded, digest, card, device, kind })
    }

    /// Whether heatmaps come with the scores at little cost (our own nets) or
    /// need a gradient pass (TorchScript).
    pub fn maps_are_cheap(&self) -> bool {
        matches!(self.loaded, Loaded::Native { .. })
    }

    pub fn size(&self) -> u32 {
        self.card.preprocessing.size
    }

    /// Scores `x`, u8 `[N, 3, S, W]` on the CPU (the preprocessed inputs).
    pub fn score(&self, x: &Tensor, maps: bool) -> Scores {
        let xs = normalise(x, &self.card.preprocessing, self.device).to_kind(self.kind);
        let probs = |t: Tensor| Vec::<f32>::try_from(t.to_kind(Kind::Float).sigmoid().to_device(Device::Cpu)).unwrap_or_default();
        let platt = self.card.calibration.unwrap_or(crate::calibrate::Platt::IDENTITY);
        let calibrated = |t: Tensor| probs(t.to_kind(Kind::Float) * f64::from(platt.scale) + f64::from(platt.shift));
        let (h, w) = (x.size()[2], x.size()[3]);
        let up = |m: Tensor| m.unsqueeze(1).upsample_bilinear2d([h, w], false, None, None).squeeze_dim(1).to_device(Device::Cpu);
        match (&self.loaded, maps) {
            (Loaded::Native { net, .. }, false) => {
                let (g, q) = tch::no_grad(|| net.forward_t(&xs, false));
                Scores { glaucoma: calibrated(g), gradable: probs(q), maps: None }
            }
            (Loaded::Native { net, .. }, true) => {
                let (g, q, cam) = tch::no_grad(|| net.forward_cam(&xs));
                Scores { glaucoma: calibrated(g), gradable: probs(q), maps: Some(tch::no_grad(|| up(cam))) }
            }
            (Loaded::Script(m), false) => {
                let out = tch::no_grad(|| m.forward_ts(&[xs])).expect("TorchScript forward");
                Scores { glaucoma: calibrated(out.select(1, 0)), gradable: probs(out.select(1, 1)), maps: None }
            }
            (Loaded::Script(m), true) => {
                // No feature map to reach into: the gradient of the glaucoma
                // logit with respect to the input, smoothed, stands in.
                let xs = xs.detach().set_requires_grad(true);
                let out = m.forward_ts(&[&xs]).expect("TorchScript forward");
                out.select(1, 0).sum(Kind::Float).backward();
                let sal = tch::no_grad(|| {
                    let g = xs.grad().to_kind(Kind::Float).abs().amax([1], true);
                    let g = g.avg_pool2d([9, 9], [1, 1], [4, 4], false, true, None::<i64>).squeeze_dim(1);
                    let peak = g.amax([1, 2], true).clamp_min(1e-12);
                    g / peak
                });
                let out = out.detach();
                Scores { glaucoma: calibrated(out.select(1, 0)), gradable: probs(out.select(1, 1)), maps: Some(up(sal)) }
            }
        }
    }
}

/// A model directory with an architecture's seeded initial weights and a
/// short card: for measuring speed (weights do not change it) and for tests.
pub fn write_untrained(dir: &Path, arch: Arch, size: u32, threshold: f32, seed: i64) -> Result<(), Error> {
    write_untrained_for(dir, arch, &imaging::Preprocessing::new(size), threshold, seed)
}

/// `write_untrained` for the inputs `prep` makes (a disc view, say).
pub fn write_untrained_for(dir: &Path, arch: Arch, prep: &imaging::Preprocessing, threshold: f32, seed: i64) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = Net::for_input(&vs.root(), arch, prep);
    vs.save(dir.join(WEIGHTS_FILE))?;
    let card = InferenceCard {
        name: format!("untrained-{}", serde_json::to_value(arch)?.as_str().unwrap_or("net")),
        format: None,
        preprocessing: prep.clone(),
        threshold,
        train: Some(TrainHead { arch }),
        arch: None,
        weights: None,
        weights_sha256: Some(crate::card::file_sha256(&dir.join(WEIGHTS_FILE))?),
        calibration: None,
        uncertain_odds: None,
    };
    std::fs::write(dir.join(CARD_FILE), serde_json::to_string_pretty(&card)?)?;
    Ok(())
}

/// Writes `out/model.pt` (TorchScript: normalised `[N, 3, S, W]` floats in,
/// `[N, 2]` logits out, glaucoma then gradability) and its short card, from a
/// model directory of ours. Traced on the CPU in f32.
pub fn export_torchscript(model_dir: &Path, out: &Path) -> Result<PathBuf, Error> {
    let card_path = model_dir.join(CARD_FILE);
    let (card, _): (InferenceCard, String) = read_card(model_dir)?;
    let arch = match (&card.format, &card.train) {
        (None, Some(t)) => t.arch,
        _ => return Err(Error::Data(format!("{}: not a model of ours (no train.arch)", card_path.display()))),
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Net::for_input(&vs.root(), arch, &card.preprocessing);
    vs.load(model_dir.join(WEIGHTS_FILE))?;
    vs.freeze();
    let p = &card.preprocessing;
    let example = Tensor::zeros([1, 3, i64::from(p.size), i64::from(p.width())], (Kind::Float, Device::Cpu));
    let mut f = |xs: &[Tensor]| {
        let (g, q) = net.forward_t(&xs[0], false);
        vec![Tensor::stack(&[g, q], 1)]
    };
    let module = tch::no_grad(|| CModule::create_by_tracing("fundus", "forward", &[example], &mut f))?;
    std::fs::create_dir_all(out)?;
    let path = out.join(SCRIPT_FILE);
    module.save(&path)?;
    let short = InferenceCard {
        name: card.name.clone(),
        format: Some("torchscript".into()),
        preprocessing: card.preprocessing.clone(),
        threshold: card.threshold,
        train: None,
        arch: serde_json::to_value(arch)?.as_str().map(str::to_owned),
        weights: Some(SCRIPT_FILE.into()),
        weights_sha256: Some(crate::card::file_sha256(&path)?),
        calibration: card.calibration,
        uncertain_odds: card.uncertain_odds,
    };
    std::fs::write(out.join(CARD_FILE), serde_json::to_string_pretty(&short)?)?;
    Ok(path)
}

/// Copies a trunk's weights from a safetensors file in the checkpoint's own
/// names (torchvision's, without `fc.`) into `trunk.*` of `vs`. Every trunk
/// variable must be found with the same shape; extra tensors are ignored.
/// Returns how many tensors were copied.
pub fn import_trunk(vs: &mut nn::VarStore, file: &Path) -> Result<usize, Error> {
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(file)
        .map_err(|e| Error::Data(format!("{}: {e}", file.display())))?
        .into_iter()
        .collect();
    let mut copied = 0;
    let mut missing = Vec::new();
    tch::no_grad(|| -> Result<(), Error> {
        for (name, mut var) in vs.variables() {
            let Some(key) = name.strip_prefix("trunk.") else { continue };
            match tensors.get(key) {
                Some(t) if t.size() == var.size() => {
                    var.copy_(&t.to_kind(var.kind()));
                    copied += 1;
                }
                Some(t) => {
                    return Err(Error::Data(format!(
                        "{}: {key} has shape {:?}, the network wants {:?}",
                        file.display(),
                        t.size(),
                        var.size()
                    )))
                }
                None => missing.push(key.to_owned()),
            }
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        missing.sort();
        return Err(Error::Data(format!(
            "{}: {} of the trunk's tensors are missing, e.g. {} (is this the right architecture?)",
            file.display(),
            missing.len(),
            missing[0]
        )));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_that_differ_from_the_card_are_refused() {
        let dir = std::env::temp_dir().join(format!("fundus-weights-{}", std::process::id()));
        write_untrained(&dir, Arch::Small, 64, 0.5, 1).expect("model");
        Scorer::load(&dir, Device::Cpu, Precision::F32).expect("loads as written");
        // Other weights of the same shape, as a swapped or corrupted file would be.
        write_untrained(&dir.join("other"), Arch::Small, 64, 0.5, 2).expect("other");
        std::fs::copy(dir.join("other").join(WEIGHTS_FILE), dir.join(WEIGHTS_FILE)).expect("swap");
        let err = Scorer::load(&dir, Device::Cpu, Precision::F32).err().expect("refused").to_string();
        assert!(err.contains("refusing to load other weights"), "{err}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    /// The card's calibration maps every glaucoma logit, for our own weights
    /// and for the TorchScript export alike; gradability is left alone.
    #[test]
    fn scores_are_calibrated_as_the_card_says() {
        let dir = std::env::temp_dir().join(format!("fundus-platt-{}", std::process::id()));
        write_untrained(&dir, Arch::Small, 64, 0.5, 4).expect("model");
        tch::manual_seed(6);
        let x = Tensor::randint(256, [3, 3, 64, 64], (Kind::Uint8, Device::Cpu));
        let raw = Scorer::load(&dir, Device::Cpu, Precision::F32).expect("raw").score(&x, false);
        let platt = crate::calibrate::Platt { scale: 0.5, shift: -1.0 };
        let mut card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(CARD_FILE)).expect("card")).expect("json");
        card["calibration"] = serde_json::json!({"scale": 0.5, "shift": -1.0, "method": "platt", "n": 10});
        std::fs::write(dir.join(CARD_FILE), card.to_string()).expect("write card");
        let exported = export_torchscript(&dir, &dir.join("ts")).expect("export");
        for scorer in [Scorer::load(&dir, Device::Cpu, Precision::F32).expect("native"), Scorer::load(exported.parent().expect("dir"), Device::Cpu, Precision::F32).expect("script")] {
            let got = scorer.score(&x, false);
            for (p, q) in raw.glaucoma.iter().zip(&got.glaucoma) {
                let z = (p / (1.0 - p)).ln();
                assert!((platt.prob(z) - q).abs() < 1e-4, "raw {p} -> {q}, want {}", platt.prob(z));
            }
            assert_eq!(raw.gradable.len(), got.gradable.len());
            for (p, q) in raw.gradable.iter().zip(&got.gradable) {
                assert!((p - q).abs() < 1e-4);
            }
        }
        card["calibration"] = serde_json::json!({"scale": -2.0, "shift": 0.0});
        std::fs::write(dir.join(CARD_FILE), card.to_string()).expect("write card");
        let err = Scorer::load(&dir, Device::Cpu, Precision::F32).err().expect("refused").to_string();
        assert!(err.contains("calibration scale"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A two-view (disc view) model scores the same through its TorchScript
    /// export as natively, at any batch size (the traced net must not keep
    /// the batch size it was traced with), and its maps cover both views.
    #[test]
    fn a_disc_view_model_exports_and_scores_at_any_batch_size() {
        let dir = std::env::temp_dir().join(format!("fundus-views-{}", std::process::id()));
        let prep = imaging::Preprocessing::new(64).with_disc_view(imaging::DiscView::DEFAULT);
        write_untrained_for(&dir, Arch::Small, &prep, 0.5, 7).expect("model");
        let native = Scorer::load(&dir, Device::Cpu, Precision::F32).expect("native");
        assert_eq!(native.card.preprocessing.width(), 128);
        let exported = export_torchscript(&dir, &dir.join("ts")).expect("export");
        let script = Scorer::load(exported.parent().expect("dir"), Device::Cpu, Precision::F32).expect("script");
        assert_eq!(script.card.preprocessing, native.card.preprocessing);
        tch::manual_seed(8);
        for n in [1, 5] {
            let x = Tensor::randint(256, [n, 3, 64, 128], (Kind::Uint8, Device::Cpu));
            let (a, b) = (native.score(&x, true), script.score(&x, false));
            assert_eq!(b.glaucoma.len(), n as usize);
            for (p, q) in a.glaucoma.iter().zip(&b.glaucoma).chain(a.gradable.iter().zip(&b.gradable)) {
                assert!((p - q).abs() < 1e-4, "batch {n}: native {p} vs TorchScript {q}");
            }
            assert_eq!(a.maps.expect("maps").size(), [n, 64, 128]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The bf16 path (the default on a GPU) runs and agrees with f32; here on
    /// the CPU, where libtorch has bf16 kernels too.
    #[test]
    fn bf16_scores_agree_with_f32() {
        let dir = std::env::temp_dir().join(format!("fundus-bf16-{}", std::process::id()));
        write_untrained(&dir, Arch::Small, 64, 0.5, 3).expect("model");
        let f32s = Scorer::load(&dir, Device::Cpu, Precision::F32).expect("f32");
        let bf16 = Scorer::load(&dir, Device::Cpu, Precision::Bf16).expect("bf16");
        tch::manual_seed(5);
        let x = Tensor::randint(256, [4, 3, 64, 64], (Kind::Uint8, Device::Cpu));
        let (a, b) = (f32s.score(&x, true), bf16.score(&x, true));
        for (p, q) in a.glaucoma.iter().zip(&b.glaucoma).chain(a.gradable.iter().zip(&b.gradable)) {
            assert!((p - q).abs() < 0.02, "f32 {p} vs bf16 {q}");
        }
        assert_eq!(b.maps.expect("maps").size(), [4, 64, 64]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
