//! `fundus train` and `fundus evaluate`: thin wrappers over the model crate.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use model::card::{CARD_FILE, ModelCard, WEIGHTS_FILE, evaluate, fingerprint, roc_png};
use indicatif::{ProgressBar, ProgressStyle};
use model::train::{self, Event, TrainConfig, Tensors};
use model::{Arch, calibrate};
use tch::Device;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Data set: a synthetic folder (labels.csv), glaucoma/ + normal/ folders, or a CSV manifest.
    #[arg(long, env = "FUNDUS_TRAIN_DATA")]
    data: PathBuf,
    /// Where the weights, the model card and the ROC plot go.
    #[arg(long, env = "FUNDUS_MODEL_DIR")]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Arch::Small)]
    arch: Arch,
    /// Input side in pixels (of each view).
    #[arg(long, default_value_t = 128)]
    size: u32,
    /// What the glaucoma head sees: `disc`, a square centred on the optic
    /// disc beside the field (found by a heuristic; photos without one are
    /// not judged for glaucoma), or `field`, the whole field of view as the
    /// gradability head does. On the synthetic task the disc view scores
    /// better at about twice the training time (README, "Training a model").
    #[arg(long, value_enum, default_value_t = GlaucomaView::Disc)]
    glaucoma_view: GlaucomaView,
    /// Side of the disc view's square, in field-of-view radii.
    #[arg(long, default_value_t = imaging::DiscView::DEFAULT.side)]
    disc_side: f32,
    /// At most this many passes over the training data (six take about 15
    /// minutes on two cores for 3,600 photos at 128 px with the disc view).
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Weight of the findings the data has (a measured cup-to-disc ratio,
    /// disc size, notch, haemorrhage; defocus, exposure, glare, lashes: the
    /// columns of labels.csv or a manifest), fitted as auxiliary targets
    /// beside the labels; 0 fits the labels alone.
    #[arg(long, default_value_t = 3.0)]
    findings_weight: f64,
    /// Stop after this many epochs without better validation AUCs (glaucoma + gradability).
    #[arg(long, default_value_t = 4)]
    patience: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fractions of the data (by patient) held out for validation and test.
    #[arg(long, default_value_t = 0.15)]
    val: f64,
    #[arg(long, default_value_t = 0.15)]
    test: f64,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Start the trunk from these weights (safetensors in torchvision's names,
    /// as notebooks/convert.ipynb writes them), e.g. ImageNet's.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Log the run to this MLflow tracking server and register the model.
    #[arg(long, env = "FUNDUS_MLFLOW_URI")]
    tracking_uri: Option<String>,
    #[arg(long, default_value = "fundus-glaucoma")]
    experiment: String,
    /// Registered model name (with --tracking-uri).
    #[arg(long, default_value = "fundus-glaucoma")]
    register: String,
    /// Point this alias (e.g. champion) at the new version.
    #[arg(long)]
    alias: Option<String>,
    /// The uncertain review band written to the card: non-referable photos
    /// whose odds of glaucoma are within this factor of the threshold's.
    #[arg(long, default_value_t = inference::route::DEFAULT_UNCERTAIN_ODDS)]
    uncertain_odds: f32,
    /// Compute precision: auto is bf16 (with f32 master weights) on a GPU, f32 on the CPU.
    #[arg(long, value_enum, default_value_t = model::Precision::Auto)]
    precision: model::Precision,
    /// Don't draw progress bars (one line per epoch instead).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GlaucomaView {
    Disc,
    Field,
}

#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// The model directory (model_card.json and weights.safetensors).
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    /// Where to write roc.png and evaluation.json (default: the model directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn columns(t: &Tensors) -> (Vec<bool>, Vec<bool>, Vec<bool>, Vec<bool>) {
    let v = |x: &tch::Tensor| Vec::<f32>::try_from(x).unwrap_or_default().into_iter().map(|f| f > 0.5).collect();
    (v(&t.glaucoma), v(&t.glaucoma_mask), v(&t.gradable), v(&t.gradable_mask))
}

fn report(name: &str, e: &model::Evaluation) {
    let ci = |c: Option<[f64; 2]>| c.map(|[a, b]| format!(" ({a:.3}-{b:.3})")).unwrap_or_default();
    // Gaps can be negative: the model ahead of the oracle in a resample.
    let gap = |c: Option<[f64; 2]>| c.map(|[a, b]| format!(" (95% CI {a:.4} to {b:.4})")).unwrap_or_default();
    println!(
        "{name:<10} n={} ({} glaucoma)  AUC {:.4}{}  sensitivity {:.3}{} at specificity {:.3}{}  pAUC(90-100%) {:.4}  gradability AUC {:.4}  ECE {:.3}{}",
        e.n, e.positives, e.auc, ci(e.auc_ci95), e.sensitivity, ci(e.sensitivity_ci95), e.specificity, ci(e.specificity_ci95), e.partial_auc_90, e.gradable_auc, e.calibration_error, ci(e.calibration_error_ci95)
    );
    if let (Some(auc), Some(sens)) = (e.oracle_auc, e.oracle_sensitivity) {
        println!(
            "{:<10} oracle (the generator's own probability, the ceiling): AUC {auc:.4}, sensitivity {sens:.3} at specificity {:.3}",
            "", e.specificity
        );
        println!(
            "{:<10} the model is short of it by {:.4} AUC{} and {:.3} sensitivity{} (paired bootstrap over the same photos)",
            "", auc - e.auc, gap(e.auc_gap_ci95), sens - e.sensitivity, gap(e.sensitivity_gap_ci95)
        );
    }
    if let Some(ece) = e.oracle_calibration_error {
        println!(
            "{:<10} the oracle's own calibration error on these photos (calibrated by construction: sampling alone): {ece:.3}; the model's exceeds it by {:.4}{}",
            "", e.calibration_error - ece, gap(e.calibration_gap_ci95)
        );
    }
    if let Some(auc) = e.oracle_gradable_auc {
        println!(
            "{:<10} gradability oracle (the generator's own probability of a gradable call): AUC {auc:.4}; the model is {:.4}{} short of it",
            "", auc - e.gradable_auc, gap(e.gradable_auc_gap_ci95)
        );
    }
}

/// Glaucoma scores `g` and gradability scores `q` judged against the labels
/// of `t`, with the oracle's figures where `samples` (the photos of `t`, in
/// order) carry the generator's probabilities.
fn judged(g: &[f32], q: &[f32], t: &Tensors, samples: &[model::data::Sample], threshold: Option<f32>) -> model::Evaluation {
    let (gl, gm, ql, qm) = columns(t);
    let oracle: Vec<Option<f32>> = samples.iter().map(|x| x.oracle_p).collect();
    let gradable_oracle: Vec<Option<f32>> = samples.iter().map(|x| x.gradable_p).collect();
    evaluate(g, &gl, &gm, q, &ql, &qm, threshold).with_oracle(g, &oracle, &gl, &gm).with_gradable_oracle(q, &gradable_oracle, &ql, &qm)
}

/// What a checkpoint must have been made with for a run to resume from it:
/// everything that shapes the weights or the data, but not the epoch budget
/// or the patience, which a resumed run may change, nor the precision (a run
/// begun on a CPU may go on on a GPU).
fn run_identity(cfg: &TrainConfig, prep: &imaging::Preprocessing, tr: &[model::data::Sample], va: &[model::data::Sample]) -> serde_json::Value {
    let mut config = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(c) = config.as_object_mut() {
        c.remove("epochs");
        c.remove("patience");
        c.remove("bf16");
    }
    serde_json::json!({
        "config": config,
        "preprocessing": prep,
        "train_data": fingerprint(tr),
        "validation_data": fingerprint(va),
    })
}

/// Refuses to resume from a checkpoint another run made (other data, split,
/// network, view, findings or optimiser settings): its weights would be
/// carried into a run they do not belong to. A new checkpoint records the run.
fn resume_check(checkpoint: &std::path::Path, identity: serde_json::Value) -> anyhow::Result<()> {
    let record = checkpoint.with_extension("run.json");
    if !checkpoint.with_extension("json").exists() {
        std::fs::write(&record, serde_json::to_vec_pretty(&identity)?).with_context(|| format!("writing {}", record.display()))?;
        return Ok(());
    }
    let text = std::fs::read_to_string(&record).map_err(|_| {
        anyhow::anyhow!("train_resume_unknown: {} holds no record of the run that made it; train again without --resume", record.display())
    })?;
    let made: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("train_resume_unknown: {}: {e}", record.display()))?;
    let mut differ = Vec::new();
    for part in ["config", "preprocessing"] {
        for (k, now) in identity[part].as_object().into_iter().flatten() {
            if made[part].get(k) != Some(now) {
                differ.push(format!("{k} {} (now {now})", made[part].get(k).map_or("none".to_owned(), ToString::to_string)));
            }
        }
    }
    for part in ["train_data", "validation_data"] {
        if made[part] != identity[part] {
            differ.push(format!("the {} photos", part.replace('_', " ").replace(" data", "")));
        }
    }
    anyhow::ensure!(
        differ.is_empty(),
        "train_resume_mismatch: the checkpoint in {} was made by another run: {}; train again without --resume, or as that run did",
        checkpoint.parent().unwrap_or(checkpoint).display(),
        differ.join(", ")
    );
    Ok(())
}

pub async fn train(a: TrainArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let device = Device::cuda_if_available();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let samples = model::data::load(&a.data)?;
    let (tr, va, te) = model::data::split(&samples, a.val, a.test, a.seed);
    anyhow::ensure!(!tr.is_empty() && !va.is_empty(), "too few photos to split: {} in all", samples.len());
    calibrate::check_odds(a.uncertain_odds).map_err(|e| anyhow::anyhow!("--uncertain-odds: {e}"))?;
    anyhow::ensure!(a.findings_weight.is_finite() && (0.0..=100.0).contains(&a.findings_weight), "--findings-weight {}: must be 0 to 100", a.findings_weight);
    anyhow::ensure!((0.1..=2.0).contains(&a.disc_side), "--disc-side {}: the square must be 0.1 to 2 field-of-view radii", a.disc_side);
    let prep = match a.glaucoma_view {
        GlaucomaView::Disc => imaging::Preprocessing::new(a.size).with_disc_view(imaging::DiscView { side: a.disc_side }),
        GlaucomaView::Field => imaging::Preprocessing::new(a.size),
    };
    let t0 = Instant::now();
    let (train_t, val_t) = (train::load(&tr, &prep)?, train::load(&va, &prep)?);
    let test_t = if te.is_empty() { None } else { Some(train::load(&te, &prep)?) };
    eprintln!(
        "{} train / {} validation / {} test photos preprocessed in {:.1} s ({} without a field of view, {} without a disc found); training on {device:?}",
        tr.len(), va.len(), te.len(), t0.elapsed().as_secs_f64(), train_t.no_fov + val_t.no_fov, train_t.no_disc + val_t.no_disc
    );
    let cfg = TrainConfig {
        arch: a.arch,
        size: a.size,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        patience: a.patience,
        seed: a.seed,
        init: a.init.clone(),
        bf16: match a.precision {
            model::Precision::Auto => device != Device::Cpu,
            model::Precision::Bf16 => true,
            model::Precision::F32 => false,
        },
        findings_weight: a.findings_weight,
        findings: if a.findings_weight > 0.0 { train::findings_present(&train_t) } else { vec![] },
    };
    if !cfg.findings.is_empty() {
        eprintln!("fitting the findings {} beside the labels (weight {})", cfg.findings.join(", "), cfg.findings_weight);
    }
    if let Some(init) = &a.init {
        anyhow::ensure!(init.is_file(), "--init {}: no such file", init.display());
    }
    let checkpoint = a.out.join("checkpoint.safetensors");
    if a.resume {
        resume_check(&checkpoint, run_identity(&cfg, &prep, &tr, &va))?;
    }
    let bar = if a.no_progress { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} steps {msg} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let trained = train::train(&cfg, &prep, &train_t, &val_t, device, a.resume.then_some(checkpoint.as_path()), |ev| match ev {
        Event::Step { epoch, step, steps } => {
            bar.set_prefix(format!("{epoch}/{}", cfg.epochs));
            bar.set_length(steps as u64);
            bar.set_position(step as u64);
        }
        Event::Epoch(e) => {
            let line = format!(
                "epoch {:>3}/{}  loss {:.4}  val AUC {:.4}  val gradability AUC {:.4}  {:.0} s",
                e.epoch, cfg.epochs, e.train_loss, e.val_auc, e.val_gradable_auc, e.seconds
            );
            // A hidden bar (--no-progress, or stderr not a terminal) prints nothing.
            if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
        }
    })?;
    bar.finish_and_clear();
    if !a.resume {
        let _ = std::fs::remove_file(&checkpoint);
        let _ = std::fs::remove_file(checkpoint.with_extension("json"));
        let _ = std::fs::remove_file(train::findings_checkpoint(&checkpoint));
        let _ = std::fs::remove_file(checkpoint.with_extension("run.json"));
    }
    // Calibration is fitted on validation data; the operating point is then
    // fixed there on calibrated scores, and both are applied to test data.
    let sig = |z: &[f32]| z.iter().map(|&z| calibrate::sigmoid(z)).collect::<Vec<f32>>();
    let (vz, vq) = train::predict_logits(&trained.net, &val_t.x, &prep, device, 64);
    let (gl, gm, _, _) = columns(&val_t);
    let (fz, fl): (Vec<f32>, Vec<bool>) = (0..gm.len()).filter(|&i| gm[i]).map(|i| (vz[i], gl[i])).unzip();
    let platt = calibrate::fit(&fz, &fl);
    let cal = |z: &[f32]| z.iter().map(|&z| platt.prob(z)).collect::<Vec<f32>>();
    let validation = judged(&cal(&vz), &sig(&vq), &val_t, &va, None);
    let threshold = validation.threshold;
    let floor = calibrate::band_floor(threshold, a.uncertain_odds);
    let in_band = fz.iter().map(|&z| platt.prob(z)).filter(|&p| p >= floor && p < threshold).count();
    let calibration = calibrate::Calibration {
        method: "platt".into(),
        platt,
        n: fz.len(),
        ece_before: model::metrics::expected_calibration_error(&sig(&fz), &fl, 10),
        ece_after: validation.calibration_error,
        band_floor: floor,
        band_share: in_band as f64 / fz.len().max(1) as f64,
    };
    let test = test_t.as_ref().map(|t| {
        let (z, q) = train::predict_logits(&trained.net, &t.x, &prep, device, 64);
        judged(&cal(&z), &sig(&q), t, &te, Some(threshold))
    });
    trained.vs.save(a.out.join(WEIGHTS_FILE))?;
    let card = ModelCard {
        name: "fundus-glaucoma".into(),
        preprocessing: prep,
        train: cfg,
        threshold,
        calibration: Some(calibration.clone()),
        uncertain_odds: Some(a.uncertain_odds),
        validation: validation.clone(),
        test: test.clone(),
        data_fingerprint: fingerprint(&tr),
        best_epoch: trained.best_epoch,
        history: trained.history.clone(),
        created_at: chrono_now(),
        weights_sha256: Some(model::card::file_sha256(&a.out.join(WEIGHTS_FILE))?),
    };
    card.save(&a.out)?;
    let shown = test.as_ref().unwrap_or(&validation);
    roc_png(&shown.roc, Some((1.0 - shown.specificity, shown.sensitivity)), &a.out.join("roc.png"))?;
    write_roc_csv(&a.out.join("roc.csv"), &[("validation", &validation), ("test", test.as_ref().unwrap_or(&validation))], test.is_some())?;
    report("validation", &validation);
    if let Some(t) = &test {
        report("test", t);
    }
    println!(
        "calibration: Platt scale {:.3} shift {:.3} on {} validation photos, ECE {:.3} -> {:.3}; uncertain band {:.4}..{threshold:.4} (odds within {}x) holds {:.1}% of them",
        platt.scale, platt.shift, calibration.n, calibration.ece_before, calibration.ece_after, floor, a.uncertain_odds, 100.0 * calibration.band_share
    );
    println!(
        "threshold {threshold:.4} (95% specificity on validation, calibrated); best epoch {}; {} and {} in {}; {:.0} s in all",
        trained.best_epoch,
        WEIGHTS_FILE,
        CARD_FILE,
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(uri) = &a.tracking_uri {
        let data = a.data.display().to_string();
        let run = inference::registry::TrainingRun {
            experiment: &a.experiment,
            run_name: None,
            card: &card,
            model_dir: &a.out,
            n: (tr.len(), va.len(), te.len()),
            data: &data,
            register: Some(&a.register),
            alias: a.alias.as_deref(),
        };
        let logged = inference::registry::log_training(uri, &run).await?;
        println!(
            "MLflow: run {} in experiment {:?}; registered {} version {}{}",
            logged.run_id,
            a.experiment,
            a.register,
            logged.version.as_deref().unwrap_or("?"),
            a.alias.as_ref().map(|al| format!(", alias {al}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// The ROC points as `set,threshold,fpr,tpr` (what the evaluation notebook plots).
fn write_roc_csv(path: &std::path::Path, sets: &[(&str, &model::Evaluation)], with_test: bool) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["set", "threshold", "fpr", "tpr"])?;
    for (name, e) in sets.iter().take(if with_test { 2 } else { 1 }) {
        for p in &e.roc {
            w.write_record([name.to_string(), p.threshold.to_string(), p.fpr.to_string(), p.tpr.to_string()])?;
        }
    }
    w.flush()?;
    Ok(())
}

pub fn evaluate_cmd(a: EvaluateArgs) -> anyhow::Result<()> {
    // Scored as inference scores: the card's weights (digest checked), its
    // preprocessing and its calibration.
    let scorer = model::Scorer::load(&a.model, Device::cuda_if_available(), model::Precision::F32)?;
    let card = &scorer.card;
    let samples = model::data::load(&a.data)?;
    let t = train::load(&samples, &card.preprocessing)?;
    let n = t.x.size()[0];
    let (mut g, mut q) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(64) {
        let s = scorer.score(&t.x.narrow(0, start, 64.min(n - start)), false);
        g.extend(s.glaucoma);
        q.extend(s.gradable);
    }
    let e = judged(&g, &q, &t, &samples, Some(card.threshold));
    let out = a.out.unwrap_or(a.model);
    std::fs::create_dir_all(&out)?;
    roc_png(&e.roc, Some((1.0 - e.specificity, e.sensitivity)), &out.join("roc.png"))?;
    std::fs::write(out.join("evaluation.json"), serde_json::to_string_pretty(&e)?)?;
    report("evaluation", &e);
    if card.preprocessing.disc_view.is_some() {
        println!(
            "{} of {} photos had no disc found ({} of them labelled gradable, {} of these glaucomatous): \
             not judged for glaucoma (a person sees them), and not in the figures above",
            t.no_disc, n, t.no_disc_gradable, t.no_disc_glaucoma
        );
    }
    println!("threshold {:.4} from the model card; roc.png and evaluation.json in {}", card.threshold, out.display());
    Ok(())
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339()
}
