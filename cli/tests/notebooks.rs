//! The notebooks, run headless with papermill from the project's venv, and
//! what they connect to on the Rust side: ImageNet weight conversion
//! (EfficientNet-Lite0 from its PyPI package, a torchvision ResNet), the
//! TorchScript model they export, training from a converted trunk with the run
//! logged to MLflow, the evaluation notebook reading that run back, and
//! TorchScript export of our own model.

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{Device, Kind, Tensor};
use tests::Stack;
use uuid::Uuid;

fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var_os("FUNDUS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/fundus/venv"));
    let p = venv.join("bin").join(tool);
    assert!(p.is_file(), "{} not found: run scripts/test (it creates the venv from scripts/requirements.txt), or set FUNDUS_VENV", p.display());
    p
}

fn papermill(notebook: &str, out: &Path, params: &[(&str, &str)]) {
    let mut c = Command::new(venv_bin("papermill"));
    c.arg("-k").arg("python3").arg(tests::root().join("notebooks").join(notebook)).arg(out.join(notebook));
    for (k, v) in params {
        c.args(["-p", k, v]);
    }
    let o = c.output().expect("running papermill");
    assert!(o.status.success(), "papermill {notebook} failed:\n{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

fn fundus(args: &[&str]) -> String {
    tests::run_ok(Command::new(env!("CARGO_BIN_EXE_fundus")).args(args).env("FUNDUS_LOG", "warn"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The converted EfficientNet-Lite0 trunk in our net gives the same logits as
/// the notebook's PyTorch model (its TorchScript export), heads copied over:
/// names, shapes, batch-norm settings and TensorFlow padding all agree.
#[test]
fn efficientnet_lite0_converts_and_matches_pytorch() {
    let dir = tests::scratch_dir("convert-lite0");
    papermill("convert.ipynb", &dir, &[("source", "efficientnet-lite0"), ("out_dir", s(&dir))]);
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let net = model::Net::new(&vs.root(), model::Arch::EfficientnetLite0);
    assert_eq!(model::score::import_trunk(&mut vs, &dir.join("trunk.safetensors")).expect("import"), 245);
    let script = tch::CModule::load(dir.join("model.pt")).expect("TorchScript");
    let params: std::collections::HashMap<String, Tensor> = script.named_parameters().expect("parameters").into_iter().collect();
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            if !name.starts_with("trunk.") {
                var.copy_(&params[&name]);
            }
        }
    });
    tch::manual_seed(3);
    let x = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
    let theirs = tch::no_grad(|| script.forward_ts(&[&x])).expect("forward");
    let (g, q) = tch::no_grad(|| net.forward_t(&x, false));
    let ours = Tensor::stack(&[g, q], 1);
    let diff = f64::try_from((&ours - &theirs).abs().max()).expect("diff");
    assert!(diff < 1e-3, "largest logit difference {diff}");

    // The TorchScript model scores a folder as it is.
    let photos = dir.join("photos");
    tests::fixtures::photo_files(&photos, 3, 40);
    let text = fundus(&["score", s(&photos), "--model", s(&dir), "--cpu", "--out", s(&dir.join("scores.csv")), "--heatmaps", s(&dir.join("maps"))]);
    assert!(text.contains("3 photos") && text.contains("0 failed"), "{text}");
}

/// A torchvision ResNet-18 converted by the notebook initialises training;
/// the run lands in MLflow with an alias, the evaluation notebook reads it,
/// the model scores through the alias, and its TorchScript export scores as
/// the native model does.
#[test]
fn convert_train_log_evaluate_export() {
    let stack = Stack::shared();
    let uri = stack.get("FUNDUS_MLFLOW_URI").to_owned();
    let dir = tests::scratch_dir("nb-train");
    let conv = dir.join("resnet18");
    papermill("convert.ipynb", &dir, &[("source", "torchvision-random"), ("arch", "resnet18"), ("out_dir", s(&conv)), ("size", "64")]);
    let data = dir.join("data");
    fundus(&["synth", "--n", "80", "--seed", "4", "--size", "640x480", "--out", s(&data)]);
    let exp = format!("nb-{}", Uuid::new_v4().simple());
    let name = format!("model-{}", Uuid::new_v4().simple());
    let model_dir = dir.join("model");
    let out = fundus(&[
        "train", "--data", s(&data), "--out", s(&model_dir), "--arch", "resnet18", "--size", "64", "--epochs", "1",
        "--batch-size", "16", "--init", s(&conv.join("trunk.safetensors")), "--tracking-uri", &uri, "--experiment", &exp,
        "--register", &name, "--alias", "champion", "--no-progress",
    ]);
    assert!(out.contains("registered") && out.contains("version 1, alias champion"), "{out}");
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model_dir.join("model_card.json")).expect("card")).expect("json");
    assert!(card["train"]["init"].as_str().expect("init recorded").ends_with("trunk.safetensors"));

    let eval = dir.join("evaluation");
    papermill("evaluate.ipynb", &dir, &[("tracking_uri", &uri), ("experiment", &exp), ("out_dir", s(&eval))]);
    let runs = std::fs::read_to_string(eval.join("runs.csv")).expect("runs.csv");
    let run_id = out.split("MLflow: run ").nth(1).and_then(|r| r.split_whitespace().next()).expect("run id printed");
    assert!(runs.contains(run_id), "{runs}");
    for f in ["metrics.png", "history.png", "roc.png"] {
        assert!(eval.join(f).is_file(), "{f} missing");
    }
    // A missing experiment is a clear failure, not an empty plot.
    let bad = Command::new(venv_bin("papermill"))
        .args(["-k", "python3"])
        .arg(tests::root().join("notebooks/evaluate.ipynb"))
        .arg(dir.join("bad.ipynb"))
        .args(["-p", "tracking_uri", &uri, "-p", "experiment", "no-such-experiment-here", "-p", "out_dir", s(&eval)])
        .output()
        .expect("papermill");
    assert!(!bad.status.success());

    // Scoring through the alias downloads the registered version.
    let photos = dir.join("photos");
    tests::fixtures::photo_files(&photos, 4, 50);
    let alias = format!("models:/{name}@champion");
    let cache = dir.join("cache");
    let via_alias = fundus(&["score", s(&photos), "--model", &alias, "--tracking-uri", &uri, "--model-cache", s(&cache), "--cpu", "--out", s(&dir.join("a.csv"))]);
    assert!(via_alias.contains(&format!("with {name} 1")), "{via_alias}");
    assert!(cache.join(&name).join("1/weights.safetensors").is_file());

    // Our model as TorchScript scores the same photos to the same numbers.
    let ts = dir.join("torchscript");
    fundus(&["export", "--model", s(&model_dir), "--out", s(&ts)]);
    fundus(&["score", s(&photos), "--model", s(&model_dir), "--cpu", "--out", s(&dir.join("native.csv"))]);
    fundus(&["score", s(&photos), "--model", s(&ts), "--cpu", "--out", s(&dir.join("script.csv"))]);
    let col = |f: &str| -> Vec<f64> {
        std::fs::read_to_string(dir.join(f)).expect("csv").lines().skip(1).map(|l| l.split(',').nth(1).expect("score").parse().expect("number")).collect()
    };
    let (a, b) = (col("native.csv"), col("script.csv"));
    assert_eq!((a.len(), b.len()), (4, 4));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "native {x} vs TorchScript {y}");
    }
}
