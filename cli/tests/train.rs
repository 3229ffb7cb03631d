//! Training and evaluation end to end, as the binary: synthetic photos in,
//! weights, model card and ROC plot out, and `evaluate` reading them back.

use std::path::Path;
use std::process::Command;

fn fundus(args: &[&str]) -> String {
    tests::run_ok(Command::new(env!("CARGO_BIN_EXE_fundus")).args(args))
}

#[test]
fn a_small_model_trains_evaluates_and_learns_gradability() {
    let dir = tests::root().join(".stack/tests").join(format!("train-{}", std::process::id()));
    let (data, heldout, out) = (dir.join("data"), dir.join("heldout"), dir.join("model"));
    let s = |p: &Path| p.to_string_lossy().into_owned();
    fundus(&["synth", "--n", "480", "--seed", "9", "--size", "640x480", "--out", &s(&data)]);
    // Judged on photos drawn with another seed: a 72-photo validation split
    // is too few to tell a model that learned from one that did not.
    fundus(&["synth", "--n", "240", "--seed", "10", "--size", "640x480", "--out", &s(&heldout)]);
    fundus(&[
        "train", "--data", &s(&data), "--out", &s(&out), "--size", "64", "--epochs", "10",
        "--batch-size", "16", "--patience", "10", "--seed", "3",
    ]);
    for f in ["weights.safetensors", "model_card.json", "roc.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model_card.json")).expect("card")).expect("json");
    let threshold = card["threshold"].as_f64().expect("threshold");
    assert!((0.0..=1.0).contains(&threshold), "{threshold}");
    assert_eq!(card["preprocessing"]["size"], 64);
    // The default glaucoma view: a square around the optic disc beside the field.
    assert_eq!(card["preprocessing"]["disc_view"]["side"].as_f64().map(|s| (s - 0.5).abs() < 1e-6), Some(true), "{card}");
    assert_eq!(card["data_fingerprint"].as_str().map(str::len), Some(64));
    let history = card["history"].as_array().expect("history");
    assert!(!history.is_empty() && history.len() <= 10);
    assert!(card["validation"]["gradable_auc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{card}");
    // Calibrated on validation data, with the review band written beside it:
    // it starts where the odds are half the threshold's.
    let cal = &card["calibration"];
    assert_eq!(cal["method"], "platt", "{cal}");
    assert!(cal["scale"].as_f64().expect("scale") > 0.0, "{cal}");
    assert!(cal["ece_after"].as_f64().expect("ece_after") <= cal["ece_before"].as_f64().expect("ece_before") + 0.02, "{cal}");
    assert_eq!(card["uncertain_odds"].as_f64(), Some(2.0));
    let floor = cal["band_floor"].as_f64().expect("band_floor");
    let odds = |p: f64| p / (1.0 - p);
    assert!(threshold <= 0.0 || (odds(threshold) / odds(floor) - 2.0).abs() < 1e-3, "floor {floor} under threshold {threshold}");
    assert!((0.0..=1.0).contains(&cal["band_share"].as_f64().expect("band_share")), "{cal}");

    let report = fundus(&["evaluate", "--model", &s(&out), "--data", &s(&heldout), "--out", &s(&dir.join("eval"))]);
    assert!(report.contains("AUC"), "{report}");
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval/evaluation.json")).expect("evaluation")).expect("json");
    // Ungradable photos (dark, burnt out, blurred, occluded, off-centre) are
    // easy: ten short epochs on 336 photos separate them well on new photos
    // (0.93 to 0.96 over training seeds 2 to 6; 0.52 with this seed when the
    // gradability head is given no loss).
    let gradable_auc = e["gradable_auc"].as_f64().expect("gradability AUC");
    assert!(gradable_auc > 0.85, "held-out gradability AUC {gradable_auc}: {report}");
    // Every gradable photo counts but those with no disc found (a few at most:
    // the report says how many), which are not judged for glaucoma.
    let (n, gradable) = (e["n"].as_u64().expect("n"), 240 - e_ungradable(&heldout));
    assert!(n <= gradable && n * 100 >= gradable * 95, "{n} of {gradable} gradable photos judged");
    assert!(report.contains("had no disc found"), "{report}");
    assert_eq!(e["threshold"].as_f64().map(|t| (t - threshold).abs() < 1e-6), Some(true));
    // On a synthetic set the ceiling is reported beside the model.
    let oracle = e["oracle_auc"].as_f64().expect("oracle_auc");
    assert!((0.6..=1.0).contains(&oracle), "oracle AUC {oracle}");
    assert!(e["oracle_sensitivity"].as_f64().is_some() && report.contains("oracle"), "{report}");
    let floor = e["oracle_calibration_error"].as_f64().expect("oracle_calibration_error");
    assert!(floor > 0.0 && floor < 0.3 && report.contains("calibrated by construction"), "oracle ECE {floor}: {report}");
    let gradable_oracle = e["oracle_gradable_auc"].as_f64().expect("oracle_gradable_auc");
    assert!((0.8..1.0).contains(&gradable_oracle) && report.contains("gradability oracle"), "gradability oracle AUC {gradable_oracle}: {report}");
    // The findings in labels.csv were fitted beside the labels, and the card says which.
    let fitted: Vec<&str> = card["train"]["findings"].as_array().expect("findings").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(fitted, ["cdr", "disc_size", "notch", "haemorrhage", "blur", "exposure", "glare", "lashes"], "{card}");
    assert!(history.iter().all(|h| h["findings_loss"].as_f64().is_some_and(f64::is_finite)), "{card}");
    let [lo, hi] = [0, 1].map(|i| e["auc_ci95"][i].as_f64().expect("AUC interval"));
    let auc = e["auc"].as_f64().expect("auc");
    assert!(lo <= auc && auc <= hi && hi - lo < 0.5, "AUC {auc} in {lo}..{hi}");
    // The shortfall from the oracle comes with its paired interval, which
    // holds the shortfall itself.
    let [glo, ghi] = [0, 1].map(|i| e["auc_gap_ci95"][i].as_f64().expect("AUC gap interval"));
    assert!(glo <= oracle - auc && oracle - auc <= ghi && report.contains("paired bootstrap"), "gap {} in {glo}..{ghi}: {report}", oracle - auc);
    for key in ["sensitivity_gap_ci95", "calibration_error_ci95", "calibration_gap_ci95", "gradable_auc_gap_ci95"] {
        assert!(e[key][1].as_f64() >= e[key][0].as_f64() && e[key][0].is_f64(), "{key}: {e}");
    }

    // Scoring a folder offline: photos that are not of a fundus are reported
    // as such, never scored; the fundus photos beside them are.
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).expect("photos");
    std::fs::copy(data.join("synth-000000.jpg"), photos.join("fundus.jpg")).expect("copy");
    std::fs::write(photos.join("astronaut.png"), tests::fixtures::skimage_data("astronaut.png")).expect("astronaut");
    let grey = image::RgbImage::from_pixel(800, 600, image::Rgb([120, 120, 120]));
    std::fs::write(photos.join("grey.jpg"), imaging::synth::to_jpeg(&grey, 90)).expect("grey");
    let text = fundus(&["score", &s(&photos), "--model", &s(&out), "--cpu", "--out", &s(&dir.join("scores.csv"))]);
    assert!(text.contains("3 photos") && text.contains("2 failed"), "{text}");
    let mut rows = csv::Reader::from_path(dir.join("scores.csv")).expect("scores");
    for row in rows.records() {
        let row = row.expect("row");
        match &row[0] {
            "fundus.jpg" => assert!(row[1].parse::<f64>().is_ok() && row[9].is_empty(), "{row:?}"),
            _ => assert!(row[1].is_empty() && row[9].starts_with("not_fundus:"), "{row:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Photos whose glaucoma label does not count: the ungradable ones.
fn e_ungradable(data: &Path) -> u64 {
    let csv = std::fs::read_to_string(data.join("labels.csv")).expect("labels");
    csv.lines().skip(1).filter(|l| l.split(',').nth(4) == Some("0")).count() as u64
}

/// `--resume` goes on from the checkpoint of the run that made it, and
/// refuses one another run made: other settings, other photos, or no record.
#[test]
fn a_run_resumes_only_from_its_own_checkpoint() {
    let dir = tests::root().join(".stack/tests").join(format!("resume-{}", std::process::id()));
    let (data, other, out) = (dir.join("data"), dir.join("other"), dir.join("model"));
    let s = |p: &Path| p.to_string_lossy().into_owned();
    fundus(&["synth", "--n", "60", "--seed", "4", "--size", "640x480", "--out", &s(&data)]);
    fundus(&["synth", "--n", "60", "--seed", "5", "--size", "640x480", "--out", &s(&other)]);
    let train = |data: &Path, epochs: &str, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fundus"));
        c.args(["train", "--data", &s(data), "--out", &s(&out), "--size", "32", "--epochs", epochs, "--batch-size", "16", "--resume", "--no-progress"]);
        tests::run(c.args(extra))
    };
    let (ok, text) = train(&data, "1", &[]);
    assert!(ok && text.contains("epoch   1/1"), "{text}");
    // More epochs on the same run: it goes on at the second.
    let (ok, text) = train(&data, "2", &[]);
    assert!(ok && text.contains("epoch   2/2") && !text.contains("epoch   1/2"), "{text}");
    let (ok, text) = train(&data, "3", &["--lr", "0.01"]);
    assert!(!ok && text.contains("train_resume_mismatch") && text.contains("lr 0.002 (now 0.01)"), "{text}");
    let (ok, text) = train(&data, "3", &["--disc-side", "0.7"]);
    assert!(!ok && text.contains("train_resume_mismatch") && text.contains("disc_view {\"side\":0.5} (now {\"side\":0.69"), "{text}");
    let (ok, text) = train(&other, "3", &[]);
    assert!(!ok && text.contains("train_resume_mismatch") && text.contains("the train photos"), "{text}");
    std::fs::remove_file(out.join("checkpoint.run.json")).expect("the run's record");
    let (ok, text) = train(&data, "3", &[]);
    assert!(!ok && text.contains("train_resume_unknown"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
