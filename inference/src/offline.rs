//! `fundus score DIR`: scores a folder with no services at all and writes a
//! CSV, with heatmaps on request. Photos are read and preprocessed on the
//! rayon pool while the model thread scores batches.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;

use crate::batcher::{BatchConfig, Batcher, Item, Loaded, Scored};
use crate::pipeline::prepare_checked;
use crate::route::Routing;

#[derive(Debug, Clone, Copy, Default)]
pub struct ScoreSummary {
    pub photos: usize,
    pub failed: usize,
    pub referable: usize,
    pub ungradable: usize,
    pub seconds: f64,
}

/// Photos under `dir` (JPEG, PNG, DICOM by extension), sorted.
pub fn photos(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| ["jpg", "jpeg", "png", "dcm"].contains(&x.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Scores every photo under `dir` into `csv_out`; heatmaps of the photos
/// routed to review go to `heatmaps` when given.
pub fn score_dir(
    model: Loaded,
    dir: &Path,
    csv_out: &Path,
    heatmaps: Option<&Path>,
    batch: BatchConfig,
    routing: Routing,
    progress: bool,
) -> anyhow::Result<ScoreSummary> {
    let started = Instant::now();
    let files = photos(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    anyhow::ensure!(!files.is_empty(), "no photos (.jpg, .jpeg, .png, .dcm) under {}", dir.display());
    if let Some(h) = heatmaps {
        std::fs::create_dir_all(h)?;
    }
    let batcher = Batcher::start(model, batch, routing, |_| {});
    let info = batcher.model();
    let (tx, rx) = mpsc::channel::<(usize, Result<Scored, String>, Option<imaging::RgbImage>)>();
    let bar = if progress { indicatif::ProgressBar::new(files.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let keep_crops = heatmaps.is_some();
    std::thread::scope(|scope| -> anyhow::Result<ScoreSummary> {
        let producer_files = &files;
        let producer_tx = tx.clone();
        let b = batcher.clone();
        let prep = info.preprocessing.clone();
        scope.spawn(move || {
            producer_files.par_iter().enumerate().for_each(|(i, path)| {
                // Uploads were refused at the door when not of a fundus; a
                // folder scored here was not, so its files are checked here.
                let prepared = std::fs::read(path).map_err(|e| e.to_string()).and_then(|bytes| prepare_checked(&bytes, &prep, true));
                match prepared {
                    Ok(p) => {
                        let tx = producer_tx.clone();
                        let crop = keep_crops.then_some(p.crop);
                        let item = Item { chw: p.chw, prep: prep.clone(), reply: Box::new(move |r| drop(tx.send((i, r, crop)))) };
                        if let Err(e) = b.submit(item) {
                            let _ = producer_tx.send((i, Err(e), None));
                        }
                    }
                    Err(e) => drop(producer_tx.send((i, Err(e), None))),
                }
            });
        });
        drop(tx);
        drop(batcher);
        let mut results: Vec<Option<Result<Scored, String>>> = vec![None; files.len()];
        let mut maps: Vec<Option<String>> = vec![None; files.len()];
        for (i, r, crop) in rx.iter() {
            if let (Some(out), Ok(s), Some(crop)) = (heatmaps, &r, crop) {
                if let Some(map) = &s.map {
                    // The photo's own path under the output folder: names cannot collide.
                    let rel = files[i].strip_prefix(dir).unwrap_or(&files[i]);
                    let p = out.join(format!("{}.heatmap.png", rel.display()));
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&p, model::heatmap::overlay_png(&crop, map))?;
                    maps[i] = Some(p.display().to_string());
                }
            }
            results[i] = Some(r);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let mut w = csv::Writer::from_path(csv_out)?;
        w.write_record(["file", "glaucoma", "gradable", "label", "review", "heatmap", "model", "version", "threshold", "error"])?;
        let mut s = ScoreSummary { photos: files.len(), ..Default::default() };
        for (i, r) in results.into_iter().enumerate() {
            let file = files[i].strip_prefix(dir).unwrap_or(&files[i]).display().to_string();
            match r {
                Some(Ok(x)) => {
                    match x.decision.label {
                        "referable" => s.referable += 1,
                        "ungradable" => s.ungradable += 1,
                        _ => {}
                    }
                    w.write_record([
                        file,
                        format!("{:.5}", x.glaucoma),
                        format!("{:.5}", x.gradable),
                        x.decision.label.into(),
                        x.decision.review.unwrap_or("").into(),
                        maps[i].take().unwrap_or_default(),
                        x.model.name.clone(),
                        x.model.version.clone(),
                        format!("{:.4}", x.model.threshold),
                        String::new(),
                    ])?;
                }
                other => {
                    s.failed += 1;
                    let err = match other {
                        Some(Err(e)) => e,
                        _ => "not scored".into(),
                    };
                    w.write_record([file, String::new(), String::new(), String::new(), String::new(), String::new(), info.name.clone(), info.version.clone(), String::new(), err])?;
                }
            }
        }
        w.flush()?;
        s.seconds = started.elapsed().as_secs_f64();
        Ok(s)
    })
}
