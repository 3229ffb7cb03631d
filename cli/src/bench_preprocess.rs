//! `fundus bench preprocess`: our preprocessing against the usual Python
//! pipeline and against libjpeg-turbo's own 1/8-scale decode, on the same
//! 12 MP files, each using every core.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;

use crate::bench::PreprocessArgs;

fn photos(a: &PreprocessArgs) -> anyhow::Result<Vec<PathBuf>> {
    use imaging::synth::{Params, render, to_jpeg};
    use rand::SeedableRng;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let params: Vec<Params> = (0..a.n).map(|_| Params::sample(&mut rng, &[(4000, 3000)])).collect();
    params
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let path = a.dir.join(format!("photo-{i:04}.jpg"));
            if !path.exists() {
                std::fs::write(&path, to_jpeg(&render(p), 92))?;
            }
            Ok(path)
        })
        .collect()
}

fn ours(files: &[PathBuf], size: u32) -> anyhow::Result<f64> {
    let p = imaging::Preprocessing::new(size);
    let start = Instant::now();
    files.par_iter().try_for_each(|f| -> anyhow::Result<()> {
        let bytes = std::fs::read(f)?;
        let out = imaging::preprocess(&bytes, imaging::Format::Jpeg, &p)?;
        // Normalised floats, as the peer's ToTensor + Normalize produce.
        anyhow::ensure!(out.normalised(&p).len() == (3 * size * size) as usize);
        Ok(())
    })?;
    Ok(files.len() as f64 / start.elapsed().as_secs_f64())
}

/// A file of the repository: `cargo run` sets CARGO_MANIFEST_DIR; otherwise
/// paths are taken from the current directory (the repository root).
pub fn repo_file(rel: &str) -> PathBuf {
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(cli) => PathBuf::from(cli).join("..").join(rel),
        None => PathBuf::from(rel),
    }
}

fn peer(files: &[PathBuf], size: u32, venv: &Path, workers: usize) -> anyhow::Result<f64> {
    let script = repo_file("scripts/bench/preprocess_peer.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .args(["--size", &size.to_string(), "--workers", &workers.to_string()])
        .args(files)
        .output()
        .context("running the Python peer")?;
    anyhow::ensure!(out.status.success(), "Python peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("Python peer output")?;
    let (n, s) = (v["images"].as_f64().unwrap_or(0.0), v["seconds"].as_f64().unwrap_or(f64::INFINITY));
    Ok(n / s)
}

fn djpeg(files: &[PathBuf]) -> anyhow::Result<f64> {
    let start = Instant::now();
    files.par_iter().try_for_each(|f| -> anyhow::Result<()> {
        let st = Command::new("djpeg")
            .args(["-scale", "1/8", "-outfile", "/dev/null"])
            .arg(f)
            .status()
            .context("djpeg (Debian package libjpeg-turbo-progs)")?;
        anyhow::ensure!(st.success(), "djpeg failed on {}", f.display());
        Ok(())
    })?;
    Ok(files.len() as f64 / start.elapsed().as_secs_f64())
}

pub fn run(a: PreprocessArgs) -> anyhow::Result<()> {
    let files = photos(&a)?;
    let workers = rayon::current_num_threads();
    eprintln!("{} photos of 4000x3000 in {}, output {}x{}, {workers} cores", files.len(), a.dir.display(), a.size, a.size);
    // One untimed pass so every side reads from the page cache.
    ours(&files, a.size)?;
    let ours = ours(&files, a.size)?;
    let floor = djpeg(&files)?;
    let peer = peer(&files, a.size, &a.venv, workers)?;
    println!("{:<44} {:>9}", "", "images/s");
    println!("{:<44} {:>9.1}", "fundus preprocess (decode 1/4-1/8, FOV, crop)", ours);
    println!("{:<44} {:>9.1}", "Python peer (PIL + torchvision)", peer);
    println!("{:<44} {:>9.1}", "floor: djpeg -scale 1/8", floor);
    println!("ours / peer: {:.2}x (goal >= 4)   floor / ours: {:.2}x (goal <= 1.3)", ours / peer, floor / ours);
    Ok(())
}
