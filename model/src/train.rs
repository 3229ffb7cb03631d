//! Training: photos are preprocessed once (the shared `imaging` path) into a
//! u8 tensor in memory, then each epoch augments batches on the fly (flips,
//! small rotations, colour and blur), optimises both heads with AdamW on a
//! cosine schedule, and keeps the weights with the best validation AUCs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::data::{FINDINGS, Finding, Head, Sample};
use crate::net::{Arch, Net};
use crate::{Error, metrics};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub arch: Arch,
    pub size: u32,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Epochs without a better validation AUC before stopping.
    pub patience: usize,
    pub seed: u64,
    /// ImageNet (or other) trunk weights the run started from: a safetensors
    /// file in torchvision's names, as the conversion notebook writes.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Compute in bf16 with f32 master weights (the default on a GPU).
    #[serde(default)]
    pub bf16: bool,
    /// Weight of the auxiliary findings' loss beside the two labels' (0: none).
    #[serde(default)]
    pub findings_weight: f64,
    /// The findings (`data::FINDINGS` columns) the training photos had and were fitted.
    #[serde(default)]
    pub findings: Vec<String>,
}

/// bf16 compute with f32 master weights: a bf16 copy of the net runs forward
/// and backward; its gradients go to the f32 weights the optimizer updates,
/// and its batch-norm statistics back to the f32 net. Losses stay in f32.
struct Bf16Copy {
    vs: nn::VarStore,
    net: Net,
    /// (name, is trainable) of every variable, matched by name in both stores.
    names: Vec<(String, bool)>,
}

impl Bf16Copy {
    fn new(master: &nn::VarStore, arch: Arch, prep: &imaging::Preprocessing, device: Device) -> Bf16Copy {
        let mut vs = nn::VarStore::new(device);
        let net = Net::for_input(&vs.root(), arch, prep);
        vs.set_kind(Kind::BFloat16);
        let names = master.variables().into_iter().map(|(n, t)| (n, t.requires_grad())).collect();
        // Give every master weight a gradient once, so it can be copied into.
        let vars = master.trainable_variables();
        let zero = vars.iter().fold(Tensor::zeros([], (Kind::Float, device)), |acc, t| acc + (t * 0.0).sum(Kind::Float));
        zero.backward();
        Bf16Copy { vs, net, names }
    }

    fn forward(&mut self, master: &nn::VarStore, xs: &Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
        let (m, h) = (master.variables(), self.vs.variables());
        tch::no_grad(|| {
            for (name, _) in &self.names {
                let mut t = h[name].shallow_clone();
                t.copy_(&m[name]);
                let g = t.grad();
                if g.defined() {
                    let _ = g.shallow_clone().zero_();
                }
            }
        });
        let (g, q, gf, qf) = self.net.forward_features_t(&xs.to_kind(Kind::BFloat16), true);
        let f = |t: Tensor| t.to_kind(Kind::Float);
        (f(g), f(q), f(gf), f(qf))
    }

    /// After `loss.backward()`: gradients and batch-norm statistics to the master.
    fn write_back(&self, master: &nn::VarStore) {
        let (m, h) = (master.variables(), self.vs.variables());
        tch::no_grad(|| {
            for (name, trainable) in &self.names {
                if *trainable {
                    let g16 = h[name].grad();
                    let mut g = m[name].grad();
                    if g16.defined() { g.copy_(&g16) } else { let _ = g.zero_(); }
                } else {
                    m[name].shallow_clone().copy_(&h[name]);
                }
            }
        });
    }
}

/// Preprocessed photos and their labels, ready for batching.
pub struct Tensors {
    /// `[N, 3, S, W]` u8 (`W` is `S`, or `2S` with a disc view).
    pub x: Tensor,
    /// Glaucoma label, 0/1 (0 where unknown).
    pub glaucoma: Tensor,
    /// 1 where the glaucoma label counts (known, and the photo gradable).
    pub glaucoma_mask: Tensor,
    pub gradable: Tensor,
    pub gradable_mask: Tensor,
    /// `[N, F]` the findings of `data::FINDINGS` (0 where unknown), and 1
    /// where one counts: known, and for the disc's findings, the photo
    /// gradable and its disc in view.
    pub findings: Tensor,
    pub findings_mask: Tensor,
    /// Photos where no field of view was found.
    pub no_fov: usize,
    /// Photos where a disc view asked for the optic disc and none was found
    /// (their glaucoma label does not count).
    pub no_disc: usize,
    /// Of those, the photos labelled gradable, and of these the glaucomatous:
    /// what leaving them out of the glaucoma figures leaves out.
    pub no_disc_gradable: usize,
    pub no_disc_glaucoma: usize,
}

/// Decodes and preprocesses every photo on all cores.
pub fn load(samples: &[Sample], prep: &imaging::Preprocessing) -> Result<Tensors, Error> {
    let crops: Vec<(Vec<u8>, bool, bool)> = samples
        .par_iter()
        .map(|smp| {
            let bytes = std::fs::read(&smp.path).map_err(|e| Error::Data(format!("{}: {e}", smp.path.display())))?;
            let format = imaging::sniff(&bytes)
                .ok_or_else(|| Error::Data(format!("{}: not a JPEG, PNG or DICOM file", smp.path.display())))?;
            let out = imaging::preprocess(&bytes, format, prep).map_err(|e| Error::Data(format!("{}: {e}", smp.path.display())))?;
            Ok((out.planar(), out.fov.is_some(), out.has_glaucoma_view(prep)))
        })
        .collect::<Result<_, Error>>()?;
    let no_fov = crops.iter().filter(|c| !c.1).count();
    let viewed: Vec<bool> = crops.iter().map(|c| c.2).collect();
    let no_disc = viewed.iter().filter(|&&v| !v).count();
    let missed = || samples.iter().zip(&viewed).filter(|(x, v)| !**v && x.gradable == Some(true));
    let (no_disc_gradable, no_disc_glaucoma) = (missed().count(), missed().filter(|(x, _)| x.glaucoma == Some(true)).count());
    let flat: Vec<u8> = crops.into_iter().flat_map(|c| c.0).collect();
    let n = samples.len() as i64;
    let f = |v: Vec<f32>| Tensor::from_slice(&v);
    let k = FINDINGS.len() as i64;
    let counts = |x: &Sample, v: bool, fd: &Finding| fd.head == Head::Gradable || (v && x.gradable != Some(false));
    let findings = samples.iter().flat_map(|x| x.findings.map(|v| v.unwrap_or(0.0))).collect();
    let findings_mask = samples
        .iter()
        .zip(&viewed)
        .flat_map(|(x, &v)| x.findings.iter().zip(&FINDINGS).map(move |(o, fd)| (o.is_some() && counts(x, v, fd)) as u8 as f32))
        .collect();
    Ok(Tensors {
        x: Tensor::from_slice(&flat).view([n, 3, i64::from(prep.size), i64::from(prep.width())]),
        glaucoma: f(samples.iter().map(|x| x.glaucoma == Some(true)).map(|b| b as u8 as f32).collect()),
        glaucoma_mask: f(samples.iter().zip(&viewed).map(|(x, &v)| (v && x.glaucoma.is_some() && x.gradable != Some(false)) as u8 as f32).collect()),
        gradable: f(samples.iter().map(|x| (x.gradable != Some(false)) as u8 as f32).collect()),
        gradable_mask: f(samples.iter().map(|x| x.gradable.is_some() as u8 as f32).collect()),
        findings: f(findings).view([n, k]),
        findings_mask: f(findings_mask).view([n, k]),
        no_fov,
        no_disc,
        no_disc_gradable,
        no_disc_glaucoma,
    })
}

/// u8 images to normalised floats on `device`.
pub fn normalise(x: &Tensor, prep: &imaging::Preprocessing, device: Device) -> Tensor {
    standardise(x.to_device(device).to_kind(Kind::Float) / 255.0, prep)
}

/// 0..1 floats to the model's input: per-channel mean and standard deviation.
fn standardise(x: Tensor, prep: &imaging::Preprocessing) -> Tensor {
    let device = x.device();
    let mean = Tensor::from_slice(&prep.mean).view([1, 3, 1, 1]).to_device(device);
    let std = Tensor::from_slice(&prep.std).view([1, 3, 1, 1]).to_device(device);
    (x - mean) / std
}

/// Random flips, a rotation of up to ±15°, brightness/contrast, and blur on a
/// quarter of the batches; on u8-derived floats in 0..1. Two views side by
/// side are augmented each on its own (a flip must not swap them).
fn augment(x: Tensor, rng: &mut impl rand::Rng) -> Tensor {
    let size = x.size();
    if size[3] == 2 * size[2] {
        let views = x.chunk(2, 3);
        let (a, b) = (augment_view(views[0].contiguous(), rng), augment_view(views[1].contiguous(), rng));
        return Tensor::cat(&[a, b], 3);
    }
    augment_view(x, rng)
}

fn augment_view(x: Tensor, rng: &mut impl rand::Rng) -> Tensor {
    let n = x.size()[0];
    let dev = x.device();
    let mut x = x;
    if rng.random_bool(0.5) {
        x = x.flip([3]);
    }
    if rng.random_bool(0.5) {
        x = x.flip([2]);
    }
    let angle = (Tensor::rand([n], (Kind::Float, dev)) - 0.5) * (2.0 * 15f64.to_radians());
    let (c, s) = (angle.cos(), angle.sin());
    let zero = Tensor::zeros([n], (Kind::Float, dev));
    let theta = Tensor::stack(&[&c, &(-&s), &zero, &s, &c, &zero], 1).view([n, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, x.size(), false);
    x = x.grid_sampler(&grid, 0, 0, false);
    let gain: Tensor = (Tensor::rand([n, 1, 1, 1], (Kind::Float, dev)) - 0.5) * 0.4 + 1.0;
    let shift: Tensor = (Tensor::rand([n, 3, 1, 1], (Kind::Float, dev)) - 0.5) * 0.08;
    x = (&x * &gain + &shift).clamp(0.0, 1.0);
    if rng.random_bool(0.25) {
        x = x.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>);
    }
    x
}

/// The findings' heads: a linear map from each head's pooled features to its
/// findings, in a store of their own (they are not part of the model and
/// are not saved with it), with the training photos' mean and spread of
/// each measurement.
struct Findings {
    vs: nn::VarStore,
    glaucoma: nn::Linear,
    gradable: nn::Linear,
    opt: nn::Optimizer,
    mean: Tensor,
    std: Tensor,
    /// `[1, F]`: 1 for yes/no findings.
    flag: Tensor,
    /// `[F]`: 1 for findings some training photo has.
    present: Tensor,
}

impl Findings {
    fn new(cfg: &TrainConfig, t: &Tensors, device: Device) -> Result<Option<Findings>, Error> {
        let present = t.findings_mask.sum_dim_intlist(0, false, Kind::Float).gt(0.0).to_kind(Kind::Float);
        if cfg.findings_weight <= 0.0 || f64::try_from(present.sum(Kind::Float)).unwrap_or(0.0) == 0.0 {
            return Ok(None);
        }
        let n = t.findings_mask.sum_dim_intlist(0, false, Kind::Float).clamp_min(1.0);
        let mean = (&t.findings * &t.findings_mask).sum_dim_intlist(0, false, Kind::Float) / &n;
        let var = ((&t.findings - &mean).square() * &t.findings_mask).sum_dim_intlist(0, false, Kind::Float) / &n;
        let vs = nn::VarStore::new(device);
        let per = |h: Head| FINDINGS.iter().filter(|f| f.head == h).count() as i64;
        let width = cfg.arch.features();
        let glaucoma = nn::linear(vs.root() / "glaucoma", width, per(Head::Glaucoma), Default::default());
        let gradable = nn::linear(vs.root() / "gradable", width, per(Head::Gradable), Default::default());
        let opt = nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?;
        let flag = Tensor::from_slice(&FINDINGS.map(|f| f.flag as u8 as f32)).view([1, -1]).to_device(device);
        Ok(Some(Findings {
            vs,
            glaucoma,
            gradable,
            opt,
            mean: mean.to_device(device),
            std: var.sqrt().clamp_min(1e-6).to_device(device),
            flag,
            present: present.to_device(device),
        }))
    }

    /// The mean over the findings present of each one's masked loss over the
    /// batch: squared error of standardised measurements, cross-entropy of flags.
    fn loss(&self, gf: &Tensor, qf: &Tensor, y: &Tensor, mask: &Tensor) -> Tensor {
        // FINDINGS lists the glaucoma head's findings first (checked where it is defined).
        let pred = Tensor::cat(&[gf.apply(&self.glaucoma), qf.apply(&self.gradable)], 1);
        let z = (y - &self.mean) / &self.std;
        let squared = (&pred - z).square();
        let bce = pred.binary_cross_entropy_with_logits(y, None::<Tensor>, None::<Tensor>, tch::Reduction::None);
        let each: Tensor = &bce * &self.flag + squared * (1.0 - &self.flag);
        let per = (&each * mask).sum_dim_intlist(0, false, Kind::Float) / mask.sum_dim_intlist(0, false, Kind::Float).clamp_min(1.0);
        (per * &self.present).sum(Kind::Float) / self.present.sum(Kind::Float)
    }
}

/// An epoch's figures. An AUC the validation photos cannot give (no
/// gradability labels, say) is NaN, which JSON writes as null: read back as NaN.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_auc: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub val_gradable_auc: f64,
    pub seconds: f64,
    /// The findings' own loss on the training batches (part of `train_loss`).
    #[serde(default)]
    pub findings_loss: Option<f64>,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What early stopping maximises: both heads matter, so the sum of their
/// validation AUCs (the glaucoma AUC alone when the data has no gradability labels).
fn selection_score(glaucoma_auc: f64, gradable_auc: f64) -> f64 {
    if gradable_auc.is_nan() { glaucoma_auc } else { glaucoma_auc + gradable_auc }
}

pub struct Trained {
    pub vs: nn::VarStore,
    pub net: Net,
    pub history: Vec<EpochLog>,
    pub best_epoch: usize,
}

/// Scores every photo: `(glaucoma probability, gradable probability)` per row.
pub fn predict(net: &Net, x: &Tensor, prep: &imaging::Preprocessing, device: Device, batch: i64) -> (Vec<f32>, Vec<f32>) {
    let (g, q) = predict_logits(net, x, prep, device, batch);
    let s = |v: Vec<f32>| v.into_iter().map(crate::calibrate::sigmoid).collect();
    (s(g), s(q))
}

/// The two heads' logits for every photo.
pub fn predict_logits(net: &Net, x: &Tensor, prep: &imaging::Preprocessing, device: Device, batch: i64) -> (Vec<f32>, Vec<f32>) {
    let n = x.size()[0];
    let (mut g, mut q) = (Vec::new(), Vec::new());
    tch::no_grad(|| {
        for start in (0..n).step_by(batch as usize) {
            let xb = normalise(&x.narrow(0, start, batch.min(n - start)), prep, device);
            let (lg, lq) = net.forward_t(&xb, false);
            g.extend(Vec::<f32>::try_from(lg.to_kind(Kind::Float).to_device(Device::Cpu)).unwrap_or_default());
            q.extend(Vec::<f32>::try_from(lq.to_kind(Kind::Float).to_device(Device::Cpu)).unwrap_or_default());
        }
    });
    (g, q)
}

/// Glaucoma AUC over the masked rows, gradability AUC over its masked rows.
pub fn aucs(t: &Tensors, g: &[f32], q: &[f32]) -> (f64, f64) {
    let v = |x: &Tensor| Vec::<f32>::try_from(x).unwrap_or_default();
    let (gl, gm, ql, qm) = (v(&t.glaucoma), v(&t.glaucoma_mask), v(&t.gradable), v(&t.gradable_mask));
    let pick = |s: &[f32], l: &[f32], m: &[f32]| {
        let idx: Vec<usize> = (0..m.len()).filter(|&i| m[i] > 0.5).collect();
        let sc: Vec<f32> = idx.iter().map(|&i| s[i]).collect();
        let lb: Vec<bool> = idx.iter().map(|&i| l[i] > 0.5).collect();
        metrics::auc(&sc, &lb)
    };
    (pick(g, &gl, &gm), pick(q, &ql, &qm))
}

/// Where a checkpoint keeps the findings' heads.
pub fn findings_checkpoint(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("findings.safetensors")
}

/// The findings some photo of `t` has, by column name.
pub fn findings_present(t: &Tensors) -> Vec<String> {
    let n = Vec::<f32>::try_from(t.findings_mask.sum_dim_intlist(0, false, Kind::Float)).unwrap_or_default();
    FINDINGS.iter().zip(n).filter(|(_, n)| *n > 0.0).map(|(f, _)| f.column.to_owned()).collect()
}

/// What training reports as it goes.
pub enum Event<'a> {
    Step { epoch: usize, step: usize, steps: usize },
    Epoch(&'a EpochLog),
}

/// Trains from scratch (or from `init` weights), reporting each step and epoch.
pub fn train(
    cfg: &TrainConfig,
    prep: &imaging::Preprocessing,
    train: &Tensors,
    val: &Tensors,
    device: Device,
    checkpoint: Option<&Path>,
    mut report: impl FnMut(Event),
) -> Result<Trained, Error> {
    tch::manual_seed(cfg.seed as i64);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(cfg.seed);
    let mut vs = nn::VarStore::new(device);
    let net = Net::for_input(&vs.root(), cfg.arch, prep);
    if let Some(init) = cfg.init.as_deref().filter(|_| checkpoint.is_none_or(|c| !c.with_extension("json").exists())) {
        crate::score::import_trunk(&mut vs, init)?;
    }
    let mut opt = nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?;
    let mut half = cfg.bf16.then(|| Bf16Copy::new(&vs, cfg.arch, prep, device));
    let mut findings = Findings::new(cfg, train, device)?;
    let mut first_epoch = 1;
    let mut history: Vec<EpochLog> = Vec::new();
    if let Some(ck) = checkpoint.filter(|p| p.with_extension("json").exists()) {
        vs.load(ck)?;
        if let Some(f) = findings.as_mut().filter(|_| findings_checkpoint(ck).exists()) {
            f.vs.load(findings_checkpoint(ck))?;
        }
        history = serde_json::from_str(&std::fs::read_to_string(ck.with_extension("json"))?)?;
        first_epoch = history.len() + 1;
    }
    let n = train.x.size()[0];
    let steps_per_epoch = (n as usize).div_ceil(cfg.batch_size);
    let total = (steps_per_epoch * cfg.epochs).max(1) as f64;
    // Class balance: weigh positives by negatives/positives.
    let pos = f64::try_from((&train.glaucoma * &train.glaucoma_mask).sum(Kind::Float)).unwrap_or(1.0).max(1.0);
    let all = f64::try_from(train.glaucoma_mask.sum(Kind::Float)).unwrap_or(1.0);
    let pos_weight = Tensor::from_slice(&[((all - pos) / pos) as f32]).to_device(device);
    let mut best = (f64::NEG_INFINITY, first_epoch.saturating_sub(1));
    let mut best_weights: Option<PathBuf> = None;
    let tmp = std::env::temp_dir().join(format!("fundus-best-{}-{}.safetensors", std::process::id(), cfg.seed));
    for h in &history {
        let score = selection_score(h.val_auc, h.val_gradable_auc);
        if score > best.0 {
            best = (score, h.epoch);
        }
    }
    for epoch in first_epoch..=cfg.epochs {
        let started = Instant::now();
        let order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let (mut loss_sum, mut findings_sum) = (0.0, 0.0);
        for step in 0..steps_per_epoch {
            let t = ((epoch - 1) * steps_per_epoch + step) as f64;
            let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t / total).cos());
            opt.set_lr(lr);
            let idx = order.narrow(0, (step * cfg.batch_size) as i64, (cfg.batch_size as i64).min(n - (step * cfg.batch_size) as i64));
            let xb = augment(train.x.index_select(0, &idx).to_device(device).to_kind(Kind::Float) / 255.0, &mut rng);
            let xb = standardise(xb, prep);
            let sel = |t: &Tensor| t.index_select(0, &idx).to_device(device);
            let (lg, lq, gf, qf) = match half.as_mut() {
                Some(h) => h.forward(&vs, &xb),
                None => net.forward_features_t(&xb, true),
            };
            let gm = sel(&train.glaucoma_mask);
            let lg_loss = (lg.binary_cross_entropy_with_logits(&sel(&train.glaucoma), None::<Tensor>, Some(pos_weight.shallow_clone()), tch::Reduction::None) * &gm).sum(Kind::Float)
                / gm.sum(Kind::Float).clamp_min(1.0);
            let qm = sel(&train.gradable_mask);
            let lq_loss = (lq.binary_cross_entropy_with_logits(&sel(&train.gradable), None::<Tensor>, None::<Tensor>, tch::Reduction::None) * &qm).sum(Kind::Float)
                / qm.sum(Kind::Float).clamp_min(1.0);
            let mut loss = lg_loss + lq_loss;
            if let Some(f) = findings.as_mut() {
                f.opt.set_lr(lr);
                f.opt.zero_grad();
                let fl = f.loss(&gf, &qf, &sel(&train.findings), &sel(&train.findings_mask));
                findings_sum += f64::try_from(&fl).unwrap_or(f64::NAN);
                loss = loss + fl * cfg.findings_weight;
            }
            match &half {
                Some(h) => {
                    // The master's gradients are overwritten, not accumulated:
                    // no zero_grad (libtorch's would drop them).
                    loss.backward();
                    h.write_back(&vs);
                    opt.step();
                }
                None => opt.backward_step(&loss),
            }
            if let Some(f) = findings.as_mut() {
                f.opt.step();
            }
            loss_sum += f64::try_from(&loss).unwrap_or(f64::NAN);
            report(Event::Step { epoch, step: step + 1, steps: steps_per_epoch });
        }
        let (g, q) = predict(&net, &val.x, prep, device, 64);
        let (val_auc, val_gradable_auc) = aucs(val, &g, &q);
        let log = EpochLog { epoch, train_loss: loss_sum / steps_per_epoch as f64, val_auc, val_gradable_auc, seconds: started.elapsed().as_secs_f64(),
            findings_loss: findings.is_some().then(|| findings_sum / steps_per_epoch as f64),
        };
        report(Event::Epoch(&log));
        history.push(log);
        let score = selection_score(val_auc, val_gradable_auc);
        if score > best.0 {
            best = (score, epoch);
            vs.save(&tmp)?;
            best_weights = Some(tmp.clone());
        }
        if let Some(ck) = checkpoint {
            vs.save(ck)?;
            if let Some(f) = &findings {
                f.vs.save(findings_checkpoint(ck))?;
            }
            std::fs::write(ck.with_extension("json"), serde_json::to_string(&history)?)?;
        }
        if epoch >= best.1 + cfg.patience {
            break;
        }
    }
    if let Some(w) = best_weights {
        vs.load(&w)?;
        let _ = std::fs::remove_file(w);
    }
    Ok(Trained { vs, net, history, best_epoch: best.1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: i64) -> Tensors {
        tch::manual_seed(1);
        let labels = Tensor::from_slice(&(0..n).map(|i| (i % 2) as f32).collect::<Vec<_>>());
        // Glaucoma photos are brighter: learnable in a few steps.
        let x = (Tensor::rand([n, 3, 32, 32], (Kind::Float, Device::Cpu)) * 100.0 + labels.view([n, 1, 1, 1]) * 120.0).to_kind(Kind::Uint8);
        Tensors {
            x,
            glaucoma: labels.shallow_clone(),
            glaucoma_mask: Tensor::ones([n], (Kind::Float, Device::Cpu)),
            gradable: Tensor::ones([n], (Kind::Float, Device::Cpu)),
            gradable_mask: Tensor::zeros([n], (Kind::Float, Device::Cpu)),
            findings: Tensor::zeros([n, FINDINGS.len() as i64], (Kind::Float, Device::Cpu)),
            findings_mask: Tensor::zeros([n, FINDINGS.len() as i64], (Kind::Float, Device::Cpu)),
            no_fov: 0,
            no_disc: 0,
            no_disc_gradable: 0,
            no_disc_glaucoma: 0,
        }
    }

    /// bf16 compute with f32 master weights trains: the master stays f32,
    /// its weights and batch-norm statistics move, and the loss falls.
    #[test]
    fn bf16_training_updates_f32_master_weights() {
        let (tr, va) = (toy(32), toy(16));
        let prep = imaging::Preprocessing::new(32);
        let cfg = TrainConfig { arch: Arch::Small, size: 32, epochs: 4, batch_size: 8, lr: 3e-3, weight_decay: 0.0, patience: 10, seed: 3, init: None, bf16: true, findings_weight: 0.0, findings: vec![] };
        let fresh = nn::VarStore::new(Device::Cpu);
        tch::manual_seed(3);
        let _ = Net::new(&fresh.root(), Arch::Small);
        let t = train(&cfg, &prep, &tr, &va, Device::Cpu, None, |_| {}).expect("training");
        let vars = t.vs.variables();
        let w = &vars["trunk.stem.conv.weight"];
        assert_eq!(w.kind(), Kind::Float);
        assert!(!w.allclose(&fresh.variables()["trunk.stem.conv.weight"], 1e-6, 1e-6, false), "weights did not move");
        let rm = f64::try_from(vars["trunk.stem.bn.running_mean"].abs().sum(Kind::Float)).expect("sum");
        assert!(rm > 0.0, "batch-norm statistics were not copied back");
        let (first, last) = (t.history[0].train_loss, t.history.last().expect("epochs").train_loss);
        assert!(last.is_finite() && last < first, "loss {first} -> {last}");
        assert!(t.history.iter().all(|h| h.findings_loss.is_none()), "no findings, no findings loss");
    }

    /// A finding the photo shows is learnt from: a measurement (brightness
    /// standing in for a cup-to-disc ratio) and a flag (half the photos
    /// have a bright corner), with the labels pure noise. The findings' loss
    /// falls well below what guessing the mean gives (1 per measurement,
    /// ln 2 per flag), in f32 and in bf16, and photos without the finding
    /// (masked) do not count.
    /// A NaN AUC is written as null and read back as NaN (a resumed run and
    /// a model card read their history back).
    #[test]
    fn an_epoch_without_an_auc_reads_back() {
        let e = EpochLog { epoch: 1, train_loss: 0.5, val_auc: 0.7, val_gradable_auc: f64::NAN, seconds: 1.0, findings_loss: None };
        let text = serde_json::to_string(&e).expect("json");
        assert!(text.contains("\"val_gradable_auc\":null"), "{text}");
        let back: EpochLog = serde_json::from_str(&text).expect("reads back");
        assert!(back.val_gradable_auc.is_nan() && back.val_auc == 0.7, "{back:?}");
    }

    #[test]
    fn findings_are_fitted_as_auxiliary_targets() {
        let n = 64;
        let (mut tr, va) = (toy(n), toy(16));
        tch::manual_seed(9);
        let level = Tensor::rand([n], (Kind::Float, Device::Cpu));
        let corner = Tensor::from_slice(&(0..n).map(|i| (i % 2) as f32).collect::<Vec<_>>());
        let x = (Tensor::rand([n, 3, 32, 32], (Kind::Float, Device::Cpu)) * 40.0 + level.view([n, 1, 1, 1]) * 180.0).clamp(0.0, 255.0);
        let _ = x.narrow(2, 0, 12).narrow(3, 0, 12).g_add_(&(corner.view([n, 1, 1, 1]) * 200.0));
        tr.x = x.clamp(0.0, 255.0).to_kind(Kind::Uint8);
        tr.glaucoma = Tensor::from_slice(&(0..n).map(|i| ((i * 7 / 3) % 2) as f32).collect::<Vec<_>>());
        let at = |name| FINDINGS.iter().position(|f| f.column == name).expect("finding") as i64;
        let (cdr, notch) = (at("cdr"), at("notch"));
        let _ = tr.findings.select(1, cdr).copy_(&(&level * 0.5 + 0.2));
        let _ = tr.findings.select(1, notch).copy_(&corner);
        // A quarter of the photos have no findings recorded; their values are wild.
        let known = Tensor::from_slice(&(0..n).map(|i| (i % 4 != 0) as u8 as f32).collect::<Vec<_>>());
        let _ = tr.findings_mask.select(1, cdr).copy_(&known);
        let _ = tr.findings_mask.select(1, notch).copy_(&known);
        let wild = (1.0 - &known) * 1000.0;
        let _ = tr.findings.select(1, cdr).g_add_(&wild);
        assert_eq!(findings_present(&tr), ["cdr", "notch"]);
        // Standardised on the photos that have the finding.
        let probe = TrainConfig { arch: Arch::Small, size: 32, epochs: 1, batch_size: 16, lr: 1e-3, weight_decay: 0.0, patience: 1, seed: 4, init: None, bf16: false, findings_weight: 1.0, findings: vec![] };
        let f = Findings::new(&probe, &tr, Device::Cpu).expect("findings").expect("some present");
        let kept: Vec<f32> = Vec::<f32>::try_from(&level).expect("levels").iter().enumerate().filter(|(i, _)| i % 4 != 0).map(|(_, l)| l * 0.5 + 0.2).collect();
        let m = kept.iter().sum::<f32>() / kept.len() as f32;
        let sd = (kept.iter().map(|v| (v - m).powi(2)).sum::<f32>() / kept.len() as f32).sqrt();
        let got = |t: &Tensor| f64::try_from(t.get(cdr)).expect("value") as f32;
        assert!((got(&f.mean) - m).abs() < 1e-4 && (got(&f.std) - sd).abs() < 1e-4, "mean {} sd {} vs {m} {sd}", got(&f.mean), got(&f.std));
        assert_eq!(Vec::<f32>::try_from(&f.present).expect("present").iter().sum::<f32>(), 2.0);
        for bf16 in [false, true] {
            let prep = imaging::Preprocessing::new(32);
            let cfg = TrainConfig { arch: Arch::Small, size: 32, epochs: 12, batch_size: 16, lr: 3e-3, weight_decay: 0.0, patience: 100, seed: 4, init: None, bf16, findings_weight: 1.0, findings: vec![] };
            let t = train(&cfg, &prep, &tr, &va, Device::Cpu, None, |_| {}).expect("training");
            let losses: Vec<f64> = t.history.iter().map(|h| h.findings_loss.expect("findings loss")).collect();
            let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
            // Guessing: 1 for the standardised measurement, ln 2 for the flag.
            let guess = (1.0 + 2f64.ln()) / 2.0;
            assert!(last < 0.5 * guess, "bf16 {bf16}: findings loss {losses:?}, guessing gives {guess:.3}");
        }
    }
}
