//! `fundus bench preprocess`: our preprocessing (decode at the smallest DCT
//! scale that covers the input, field of view, crop) against what a
//! competent Python engineer writes (PIL with `draft()`, i.e. the same
//! DCT-scaled decode, then torchvision's transforms, on a process pool of
//! one worker per core), against the naive Python path (full decode), and
//! against the floor: libjpeg-turbo decoding the same files at the same DCT
//! scale in this process on every core, with nothing after it. `djpeg` (one
//! process per file) is printed for reference only. Each side runs once
//! untimed, then `--repeats` times, alternating; medians with min–max.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;

use crate::bench::{PreprocessArgs, machine, median, spread};

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

/// Images per second of `f` over every file, on all cores.
fn rate(files: &[PathBuf], f: impl Fn(&[u8]) -> anyhow::Result<()> + Sync) -> anyhow::Result<f64> {
    let start = Instant::now();
    files.par_iter().try_for_each(|path| f(&std::fs::read(path)?))?;
    Ok(files.len() as f64 / start.elapsed().as_secs_f64())
}

fn ours(files: &[PathBuf], p: &imaging::Preprocessing) -> anyhow::Result<f64> {
    rate(files, |bytes| {
        let out = imaging::preprocess(bytes, imaging::Format::Jpeg, p)?;
        // Normalised floats, as the peer's ToTensor + Normalize produce.
        anyhow::ensure!(out.normalised(p).len() == p.input_len());
        Ok(())
    })
}

fn floor(files: &[PathBuf], p: &imaging::Preprocessing) -> anyhow::Result<f64> {
    rate(files, |bytes| {
        let img = imaging::decode_rgb_at_least(bytes, imaging::Format::Jpeg, p.decode_short_side())?;
        anyhow::ensure!(img.width().min(img.height()) >= p.decode_short_side());
        Ok(())
    })
}

/// A file of the repository: `cargo run` sets CARGO_MANIFEST_DIR; otherwise
/// paths are taken from the current directory (the repository root).
pub fn repo_file(rel: &str) -> PathBuf {
    match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(cli) => PathBuf::from(cli).join("..").join(rel),
        None => PathBuf::from(rel),
    }
}

/// The Python peer; `draft` asks PIL for the DCT-scaled decode of at least
/// that short side, as ours decodes.
fn peer(files: &[PathBuf], size: u32, draft: Option<u32>, venv: &Path, workers: usize) -> anyhow::Result<f64> {
    let script = repo_file("scripts/bench/preprocess_peer.py");
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(script).args(["--size", &size.to_string(), "--workers", &workers.to_string()]);
    if let Some(d) = draft {
        cmd.args(["--draft", &d.to_string()]);
    }
    let out = cmd.args(files).output().context("running the Python peer")?;
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
    anyhow::ensure!(a.repeats >= 1, "--repeats must be at least 1");
    let files = photos(&a)?;
    let workers = rayon::current_num_threads();
    let p = imaging::Preprocessing::new(a.size);
    let short = p.decode_short_side();
    eprintln!(
        "{} photos of 4000x3000 in {}, output {}x{} (decoded at a short side of at least {short}), {workers} workers",
        files.len(),
        a.dir.display(),
        a.size,
        a.size
    );
    type Side<'a> = (&'static str, Box<dyn Fn() -> anyhow::Result<f64> + 'a>);
    let sides: Vec<Side> = vec![
        ("fundus preprocess (DCT-scaled decode, FOV, crop)", Box::new(|| ours(&files, &p))),
        ("floor: libjpeg-turbo at the same DCT scale", Box::new(|| floor(&files, &p))),
        ("Python peer: PIL draft() + torchvision", Box::new(|| peer(&files, a.size, Some(short), &a.venv, workers))),
        ("Python, naive: PIL full decode + torchvision", Box::new(|| peer(&files, a.size, None, &a.venv, workers))),
        ("reference: djpeg -scale 1/8, a process each", Box::new(|| djpeg(&files))),
    ];
    let mut rates = vec![Vec::new(); sides.len()];
    for round in 0..=a.repeats {
        for (i, (_, f)) in sides.iter().enumerate() {
            let r = f()?;
            // Round 0 is the warm-up: every side reads from the page cache.
            if round > 0 {
                rates[i].push(r);
            }
        }
    }
    println!("{} runs of each side, alternating, after a warm-up; {}", a.repeats, machine());
    println!("{:<48} {:>26}", "", "images/s median (min–max)");
    for ((name, _), r) in sides.iter().zip(&rates) {
        println!("{name:<48} {:>26}", spread(r));
    }
    let m: Vec<f64> = rates.iter().map(|r| median(r)).collect();
    println!(
        "ours / PIL draft() peer: {:.2}x (goal >= 1)   floor / ours: {:.2}x (goal <= 1.15)   ours / naive Python: {:.2}x",
        m[0] / m[2],
        m[1] / m[0],
        m[0] / m[3]
    );
    Ok(())
}
