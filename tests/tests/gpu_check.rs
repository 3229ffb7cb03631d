//! `scripts/gpu-check --dry-run`: every step of the GPU check, at tiny sizes
//! on the CPU with the project venv's PyTorch, so the script a GPU host runs
//! once is known to work before it gets there.

use std::process::Command;

#[test]
fn the_gpu_check_runs_every_step_and_reports_every_net_and_batch() {
    let venv = std::env::var("FUNDUS_VENV").unwrap_or_else(|_| {
        panic!("FUNDUS_VENV is not set: run the README's test command, scripts/test, which makes the venv (torch, pillow)")
    });
    let out = tests::scratch_dir("gpu-check");
    let run = Command::new(tests::root().join("scripts/gpu-check"))
        .arg("--dry-run")
        .env("PYTHON", format!("{venv}/bin/python"))
        .env("OUT", &out)
        .output()
        .expect("running scripts/gpu-check");
    let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{text}");
    assert!(text.contains("bf16 convolution on cpu: ok") && text.contains("training ResNet-50"), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("gpu-check.json")).expect("gpu-check.json")).expect("JSON");
    for net in ["default", "resnet50", "efficientnet-lite0"] {
        for batch in ["4", "8"] {
            let r = &report["nets"][net][batch];
            for side in ["model_only", "decode_only", "pipeline"] {
                let v = r[side]["median"].as_f64().unwrap_or(0.0);
                assert!(v > 0.0, "{net} batch {batch} {side}: {r}");
            }
            let ratio = r["ratio"].as_f64().unwrap_or(0.0);
            assert!(ratio > 0.0, "{net} batch {batch}: {r}");
        }
    }
    assert!(report["train_resnet50"]["images_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{report}");
    let _ = std::fs::remove_dir_all(&out);
}
