//! Test photos, made on the spot: synthetic fundus photos as JPEG, PNG and
//! DICOM, the real fundus photo that scikit-image ships, and hostile files.

use std::path::PathBuf;

use image::RgbImage;
use imaging::synth::{Params, render, to_jpeg};

pub fn fundus(width: u32, height: u32, seed: u64) -> RgbImage {
    render(&Params::healthy(width, height, seed))
}

pub fn jpeg(width: u32, height: u32, seed: u64) -> Vec<u8> {
    to_jpeg(&fundus(width, height, seed), 92)
}

pub fn png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    fundus(width, height, seed)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("PNG encoding");
    out
}

pub use imaging::synth::DICOM_IDENTITY;

/// A DICOM Part 10 file of a named patient (`DICOM_IDENTITY`), or the same
/// without pixel data.
pub fn dicom(width: u32, height: u32, seed: u64, with_pixels: bool) -> Vec<u8> {
    let img = with_pixels.then(|| fundus(width, height, seed));
    imaging::synth::to_dicom(img.as_ref(), width, height, seed)
}

/// A DICOM file of a named patient holding a JPEG as encapsulated pixel
/// data (JPEG Baseline), as most fundus cameras write them.
pub fn dicom_jpeg(width: u32, height: u32, seed: u64) -> Vec<u8> {
    imaging::synth::to_dicom_jpeg(&jpeg(width, height, seed), width, height, seed)
}

/// What EXIF of a phone camera carries and screening must not keep.
pub const EXIF_IDENTITY: [&str; 2] = ["GPS 51.5072N 0.1276W", "SERIAL SN-0099-1234"];

/// A JPEG with an EXIF segment holding orientation 1, then a GPS position and
/// a camera serial number, as a phone writes them.
pub fn jpeg_with_exif(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let j = jpeg(width, height, seed);
    let mut seg = imaging::exif::orientation_segment(1);
    for s in EXIF_IDENTITY {
        seg.extend_from_slice(s.as_bytes());
    }
    let len = (seg.len() - 2) as u16;
    seg[2..4].copy_from_slice(&len.to_be_bytes());
    let mut out = j[..2].to_vec();
    out.extend_from_slice(&seg);
    out.extend_from_slice(&j[2..]);
    out
}

/// The bytes Fundus stores for an upload: the photo de-identified.
pub fn stored(bytes: &[u8]) -> Vec<u8> {
    let format = imaging::sniff(bytes).expect("a known format");
    imaging::deidentify(bytes, format).expect("a valid photo")
}

/// scikit-image's `retina.jpg` (CC0): a real fundus photograph, from the
/// project's Python environment.
pub fn retina_jpg() -> Vec<u8> {
    skimage_data("retina.jpg")
}

/// A file scikit-image ships in `skimage/data` (`astronaut.png`, `coffee.png`,
/// `chelsea.png`, `camera.png`, `retina.jpg`, ...), from the project's venv.
pub fn skimage_data(name: &str) -> Vec<u8> {
    let venv = std::env::var_os("FUNDUS_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("FUNDUS_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/fundus")
        });
        cache.join("venv")
    });
    let found = std::fs::read_dir(venv.join("lib"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("site-packages/skimage/data").join(name))
        .find(|p| p.exists());
    let path = found.unwrap_or_else(|| {
        panic!("scikit-image's {name} is not in {}: run `scripts/test` (it installs scripts/requirements.txt into the venv)", venv.display())
    });
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A well-formed 60 kB PNG whose header claims 30000x30000 pixels (2.7 GB
/// decoded): a decompression bomb.
pub fn png_bomb() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&30000u32.to_be_bytes());
    ihdr.extend_from_slice(&30000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream of stored zeros: rows of filter byte 0 and black pixels.
    let mut idat = vec![0x78, 0x01];
    idat.extend_from_slice(&[0x00, 0xFF, 0xEF, 0x00, 0x10]);
    idat.extend(std::iter::repeat_n(0u8, 0xEFFF));
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A valid JPEG whose frame header is rewritten to claim 60000x60000 pixels.
pub fn jpeg_bomb() -> Vec<u8> {
    let mut j = jpeg(640, 480, 1);
    let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0");
    j[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    j
}

/// A model directory with the small net's seeded initial weights and a card
/// giving `threshold`: enough to exercise scoring and routing end to end
/// without training (threshold 0 sends every gradable photo to review).
pub fn untrained_model(dir: &std::path::Path, threshold: f32, size: u32) -> std::path::PathBuf {
    model::score::write_untrained(dir, model::Arch::Small, size, threshold, 7).expect("untrained model");
    dir.to_path_buf()
}

/// Synthetic photos (800x600 JPEG) written into `dir`, named
/// `p000.jpg`…; returns their paths.
pub fn photo_files(dir: &std::path::Path, n: usize, seed: u64) -> Vec<std::path::PathBuf> {
    std::fs::create_dir_all(dir).expect("photo dir");
    (0..n)
        .map(|i| {
            let p = dir.join(format!("p{i:03}.jpg"));
            std::fs::write(&p, jpeg(800, 600, seed + i as u64)).expect("photo");
            p
        })
        .collect()
}
