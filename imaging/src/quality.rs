//! The cheap quality estimate the upload API returns at once, so the phone can
//! ask for a retake while the patient is still in the chair: is there a field
//! of view, is it exposed sensibly, is it in focus. Computed on a small image
//! (the JPEG is decoded at 1/8 scale for it) normalised to a fixed FOV size, so
//! the figures do not depend on the phone's resolution.

use image::RgbImage;

use crate::fov::{Fov, find_fov};

/// Side of the square the field of view is resampled to before measuring.
pub const WORK_SIDE: u32 = 256;
const TOO_DARK: f32 = 0.10;
const TOO_BRIGHT: f32 = 0.75;
const SATURATED_MAX: f32 = 0.15;
const BLUR_MIN: f32 = 2.0;
/// Share of a fundus photo's lit pixels that must have a retina's colour.
pub const FUNDUS_MIN_SHARE: f32 = 0.96;
/// Lit pixels (the brightest channel 30..235: near clipping, colour is lost) below this share of the area
/// are too few to judge colour by: the photo is too dark or too bright.
const FUNDUS_MIN_LIT: f32 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityIssue {
    NoFieldOfView,
    TooDark,
    TooBright,
    TooBlurred,
    /// Not a fundus photograph: too little of it has a retina's colour.
    NotFundus,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quality {
    /// Whether a circular field of view was found.
    pub fov_found: bool,
    /// Fraction of the frame inside the field of view (0 when none was found).
    pub fov_coverage: f32,
    /// Mean luminance inside the field of view, 0..1.
    pub brightness: f32,
    /// Fraction of saturated pixels inside the field of view, 0..1.
    pub saturated: f32,
    /// Focus measure: standard deviation of the Laplacian of the green channel
    /// relative to its mean, in percent. Sharp photos score well above 2.
    pub sharpness: f32,
    /// Share of the lit pixels with a retina's red-orange colour (`None` when
    /// too few pixels are lit to judge); under `FUNDUS_MIN_SHARE`: `not_fundus`.
    #[serde(default)]
    pub fundus_colour: Option<f32>,
    pub issues: Vec<QualityIssue>,
    /// True when any issue is serious enough to ask for a new photo.
    pub retake: bool,
}

/// Assesses a small RGB image (a few hundred pixels a side).
pub fn assess(img: &RgbImage) -> Quality {
    let Some(fov) = find_fov(img) else {
        let brightness = mean_luma(img.pixels());
        let fundus_colour = fundus_colour(img.pixels());
        let mut issues = vec![QualityIssue::NoFieldOfView];
        if brightness < TOO_DARK {
            issues.push(QualityIssue::TooDark);
        }
        if not_fundus(fundus_colour) {
            issues.push(QualityIssue::NotFundus);
        }
        return Quality {
            fov_found: false,
            fov_coverage: 0.0,
            brightness,
            saturated: 0.0,
            sharpness: 0.0,
            fundus_colour,
            issues,
            retake: true,
        };
    };
    let work = crop_to_fov(img, &fov, WORK_SIDE);
    // Measure inside 90% of the radius: the rim's edge is not focus.
    let c = WORK_SIDE as f32 / 2.0;
    let inner = Fov { cx: c, cy: c, r: 0.9 * c, fit: 1.0, fills_frame: false };
    let inside: Vec<(u32, u32)> = (0..WORK_SIDE)
        .flat_map(|y| (0..WORK_SIDE).map(move |x| (x, y)))
        .filter(|&(x, y)| inner.contains(x as f32 + 0.5, y as f32 + 0.5))
        .collect();
    let brightness = mean_luma(inside.iter().map(|&(x, y)| work.get_pixel(x, y)));
    let saturated = inside.iter().filter(|&&(x, y)| luma(work.get_pixel(x, y)) > 0.97).count() as f32
        / inside.len().max(1) as f32;
    let sharpness = laplacian_contrast(&work, &inside);
    let fundus_colour = fundus_colour(inside.iter().map(|&(x, y)| work.get_pixel(x, y)));

    let mut issues = Vec::new();
    if brightness < TOO_DARK {
        issues.push(QualityIssue::TooDark);
    }
    if brightness > TOO_BRIGHT || saturated > SATURATED_MAX {
        issues.push(QualityIssue::TooBright);
    }
    if sharpness < BLUR_MIN {
        issues.push(QualityIssue::TooBlurred);
    }
    if not_fundus(fundus_colour) {
        issues.push(QualityIssue::NotFundus);
    }
    Quality {
        fov_found: true,
        fov_coverage: fov.coverage(img.width(), img.height()),
        brightness,
        saturated,
        sharpness,
        fundus_colour,
        retake: !issues.is_empty(),
        issues,
    }
}

/// Share of the lit pixels that have a retina's colour: red well above green,
/// blue further below (the choroid's blood shows
/// through the pigment in every fundus photo, whatever the camera). Faces,
/// rooms, documents, screenshots and grey images fall far short; `None` when
/// fewer than a fifth of the pixels are lit enough to judge.
pub fn fundus_colour<'a>(pixels: impl Iterator<Item = &'a image::Rgb<u8>>) -> Option<f32> {
    let (mut total, mut lit, mut red) = (0usize, 0usize, 0usize);
    for p in pixels {
        total += 1;
        let [r, g, b] = p.0.map(u32::from);
        let v = r.max(g).max(b);
        if !(30..=235).contains(&v) {
            continue;
        }
        lit += 1;
        // g < 0.75 r and b < 0.6 r, in integers.
        red += (4 * g < 3 * r && 5 * b < 3 * r) as usize;
    }
    (total > 0 && lit as f32 >= FUNDUS_MIN_LIT * total as f32).then(|| red as f32 / lit as f32)
}

fn not_fundus(share: Option<f32>) -> bool {
    share.is_some_and(|s| s < FUNDUS_MIN_SHARE)
}

/// Refuses pixels (a photo, or its preprocessed crop) that are not of a
/// fundus, by the same measure as `assess`.
pub fn check_fundus(img: &RgbImage) -> Result<(), crate::Reject> {
    match fundus_colour(img.pixels()) {
        Some(share) if not_fundus(Some(share)) => Err(crate::Reject::NotFundus { share }),
        _ => Ok(()),
    }
}

fn luma(p: &image::Rgb<u8>) -> f32 {
    (0.299 * p.0[0] as f32 + 0.587 * p.0[1] as f32 + 0.114 * p.0[2] as f32) / 255.0
}

fn mean_luma<'a>(pixels: impl Iterator<Item = &'a image::Rgb<u8>>) -> f32 {
    let (mut s, mut n) = (0f32, 0usize);
    for p in pixels {
        s += luma(p);
        n += 1;
    }
    s / n.max(1) as f32
}

/// The square around the field of view (black where it leaves the frame),
/// resampled to `side` pixels.
pub(crate) fn crop_to_fov(img: &RgbImage, fov: &Fov, side: u32) -> RgbImage {
    let x0 = (fov.cx - fov.r).round() as i64;
    let y0 = (fov.cy - fov.r).round() as i64;
    let d = (2.0 * fov.r).round().max(1.0) as u32;
    crate::resize::triangle_window(img, x0, y0, d, d, side, side)
}

fn laplacian_contrast(img: &RgbImage, at: &[(u32, u32)]) -> f32 {
    let g = |x: u32, y: u32| img.get_pixel(x, y).0[1] as f32;
    let (w, h) = img.dimensions();
    let (mut s, mut s2, mut sg, mut n) = (0f64, 0f64, 0f64, 0usize);
    for &(x, y) in at {
        if x == 0 || y == 0 || x + 1 >= w || y + 1 >= h {
            continue;
        }
        let l = (4.0 * g(x, y) - g(x - 1, y) - g(x + 1, y) - g(x, y - 1) - g(x, y + 1)) as f64;
        s += l;
        s2 += l * l;
        sg += g(x, y) as f64;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let sd = (s2 / n - (s / n).powi(2)).max(0.0).sqrt();
    (100.0 * sd / (sg / n).max(1.0)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Params, render};
    use rand::SeedableRng;

    /// No synthetic fundus photo of either task, of any eye, pigment, exposure,
    /// colour cast, glare or defect, is
    /// taken for something else; grey, white and blue images are.
    #[test]
    fn fundus_photos_have_a_retinas_colour_and_others_do_not() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut lowest = 1f32;
        for i in 0..200 {
            let p = if i % 2 == 0 { Params::sample(&mut rng, &[(640, 480)]) } else { Params::sample_v2(&mut rng, &[(640, 480)]) };
            let q = assess(&render(&p));
            assert!(!q.issues.contains(&QualityIssue::NotFundus), "{p:?}: {q:?}");
            lowest = lowest.min(q.fundus_colour.unwrap_or(1.0));
        }
        assert!(lowest >= FUNDUS_MIN_SHARE, "{lowest}");
        // Bright exposures of a light fundus (two such were refused when
        // near-clipped pixels still counted): near clipping, colour is lost.
        for (exposure, pigment) in [(1.82, 0.74), (1.47, 0.66), (2.2, 0.7)] {
            let p = Params { exposure, pigment, ..Params::sample_v2(&mut rng, &[(800, 600)]) };
            let q = assess(&render(&p));
            assert!(!q.issues.contains(&QualityIssue::NotFundus), "{p:?}: {q:?}");
        }
        for colour in [[128, 128, 128], [225, 225, 225], [40, 90, 200], [200, 170, 150]] {
            let q = assess(&RgbImage::from_pixel(640, 480, image::Rgb(colour)));
            assert!(q.issues.contains(&QualityIssue::NotFundus), "{colour:?}: {q:?}");
        }
        // Black is too dark, and a white frame too bright, to judge by colour:
        // a retake, not a verdict.
        assert_eq!(assess(&RgbImage::from_pixel(640, 480, image::Rgb([250; 3]))).issues, vec![QualityIssue::TooBright]);
        let q = assess(&RgbImage::new(640, 480));
        assert_eq!(q.fundus_colour, None);
        assert!(!q.issues.contains(&QualityIssue::NotFundus) && q.retake, "{q:?}");
    }
}
