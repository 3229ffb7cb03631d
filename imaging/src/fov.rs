//! Finding the circular field of view of a fundus photo: the bright disc of
//! retina inside a black surround. Robust to vignetting (the threshold is
//! relative), notches and burnt-in text (radius from the longest runs through
//! the centre, then checked against the mask), and to circles clipped by the
//! frame (phones often crop the top and bottom of the field).

use image::RgbImage;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Fov {
    pub cx: f32,
    pub cy: f32,
    pub r: f32,
    /// Overlap (intersection over union) of the fitted circle with the bright mask.
    pub fit: f32,
    /// True when the photo has no dark surround: the retina fills the frame.
    pub fills_frame: bool,
}

impl Fov {
    /// The same circle in an image `s` times larger.
    pub fn scaled(self, s: f32) -> Fov {
        Fov { cx: self.cx * s, cy: self.cy * s, r: self.r * s, ..self }
    }

    /// Fraction of the image's area inside the circle.
    pub fn coverage(&self, w: u32, h: u32) -> f32 {
        let mut inside = 0usize;
        let step = (w.min(h) / 128).max(1);
        let mut total = 0usize;
        for y in (0..h).step_by(step as usize) {
            for x in (0..w).step_by(step as usize) {
                total += 1;
                inside += self.contains(x as f32, y as f32) as usize;
            }
        }
        inside as f32 / total.max(1) as f32
    }

    pub fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        dx * dx + dy * dy <= self.r * self.r
    }
}

fn value(p: &image::Rgb<u8>) -> u8 {
    p.0[0].max(p.0[1]).max(p.0[2])
}

/// Otsu's threshold over a 256-bin histogram.
fn otsu(hist: &[u64; 256]) -> u8 {
    let total: u64 = hist.iter().sum();
    let sum: f64 = hist.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0f64, 0f64, -1f64, 0u8);
    for (t, &c) in hist.iter().enumerate() {
        w0 += c as f64;
        sum0 += t as f64 * c as f64;
        let w1 = total as f64 - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum - sum0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t as u8;
        }
    }
    best_t
}

/// Longest run of `true` in an iterator, as (start, end exclusive).
fn longest_run(it: impl Iterator<Item = bool>) -> (usize, usize) {
    let (mut best, mut start) = ((0, 0), None);
    for (i, on) in it.chain(std::iter::once(false)).enumerate() {
        match (on, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s > best.1 - best.0 {
                    best = (s, i);
                }
                start = None;
            }
            _ => {}
        }
    }
    best
}

/// Finds the field of view, or `None` when there is no plausible circle.
/// Meant for small images (a few hundred pixels a side): it reads every pixel.
pub fn find_fov(img: &RgbImage) -> Option<Fov> {
    let (w, h) = img.dimensions();
    if w < 16 || h < 16 {
        return None;
    }
    let mut hist = [0u64; 256];
    for p in img.pixels() {
        hist[value(p) as usize] += 1;
    }
    let n = (w * h) as u64;
    let dark: u64 = hist[..12].iter().sum();
    // Half of Otsu's split, but never far above the surround's own level: a
    // dark fundus with a bright disc would otherwise lose its rim to the
    // surround (Otsu splits the disc from the rest).
    let p5 = {
        let mut seen = 0u64;
        hist.iter().position(|&c| {
            seen += c;
            seen * 20 >= n
        })
        .unwrap_or(0) as u8
    };
    let t = (otsu(&hist) / 2).min(p5.saturating_add(10)).max(8);
    let mask: Vec<bool> = img.pixels().map(|p| value(p) >= t).collect();
    let bright = mask.iter().filter(|&&m| m).count() as u64;
    if bright < n / 10 {
        return None;
    }
    if dark * 50 < n {
        // No dark surround: the retina fills the frame (a tightly cropped photo).
        let r = 0.5 * ((w * w + h * h) as f32).sqrt();
        return Some(Fov { cx: w as f32 / 2.0, cy: h as f32 / 2.0, r, fit: 1.0, fills_frame: true });
    }
    let at = |x: u32, y: u32| mask[(y * w + x) as usize];
    let (mut sx, mut sy) = (0f64, 0f64);
    for y in 0..h {
        for x in 0..w {
            if at(x, y) {
                sx += x as f64;
                sy += y as f64;
            }
        }
    }
    let (mx, my) = ((sx / bright as f64) as u32, (sy / bright as f64) as u32);
    let (x0, x1) = longest_run((0..w).map(|x| at(x, my)));
    let (y0, y1) = longest_run((0..h).map(|y| at(mx, y)));
    let clipped_x = x0 == 0 || x1 == w as usize;
    let clipped_y = y0 == 0 || y1 == h as usize;
    let (dx, dy) = ((x1 - x0) as f32, (y1 - y0) as f32);
    let (cx, cy, r) = match (clipped_x, clipped_y) {
        (false, true) => ((x0 + x1) as f32 / 2.0, my as f32, dx / 2.0),
        (true, false) => (mx as f32, (y0 + y1) as f32 / 2.0, dy / 2.0),
        (true, true) => {
            // Clipped on all four sides (a field larger than the frame, its
            // corners dark): the centre is the frame's, and the radius follows
            // from where the circle crosses the top and left edges.
            let (cx, cy) = ((x0 + x1) as f32 / 2.0, (y0 + y1) as f32 / 2.0);
            let (a, b) = longest_run((0..w).map(|x| at(x, 0)));
            let (c, d) = longest_run((0..h).map(|y| at(0, y)));
            let r_top = (cy * cy + ((b - a) as f32 / 2.0).powi(2)).sqrt();
            let r_left = (cx * cx + ((d - c) as f32 / 2.0).powi(2)).sqrt();
            (cx, cy, 0.5 * (r_top + r_left))
        }
        (false, false) => ((x0 + x1) as f32 / 2.0, (y0 + y1) as f32 / 2.0, dx.max(dy) / 2.0),
    };
    if r < 0.2 * w.min(h) as f32 {
        return None;
    }
    let mut fov = Fov { cx, cy, r, fit: 0.0, fills_frame: false };
    let (mut inter, mut union) = (0u32, 0u32);
    for y in 0..h {
        for x in 0..w {
            let (c, m) = (fov.contains(x as f32 + 0.5, y as f32 + 0.5), at(x, y));
            inter += (c && m) as u32;
            union += (c || m) as u32;
        }
    }
    fov.fit = inter as f32 / union.max(1) as f32;
    (fov.fit >= 0.8).then_some(fov)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disc(w: u32, h: u32, cx: f32, cy: f32, r: f32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
            // Vignetting: darker towards the rim, never black inside.
            let v = if d <= r { (160.0 - 100.0 * d / r) as u8 } else { 2 };
            image::Rgb([v, v / 2, v / 4])
        })
    }

    #[test]
    fn finds_a_vignetted_circle() {
        let f = find_fov(&disc(400, 300, 210.0, 150.0, 120.0)).expect("found");
        assert!((f.cx - 210.0).abs() < 3.0 && (f.cy - 150.0).abs() < 3.0, "{f:?}");
        assert!((f.r - 120.0).abs() < 3.0, "{f:?}");
        assert!(!f.fills_frame);
    }

    #[test]
    fn finds_a_circle_clipped_top_and_bottom() {
        let f = find_fov(&disc(400, 300, 200.0, 150.0, 180.0)).expect("found");
        assert!((f.r - 180.0).abs() < 4.0, "{f:?}");
    }

    /// A field larger than the frame, clipped on all four sides, with only
    /// its corners dark: a phone's framing.
    #[test]
    fn finds_a_circle_clipped_on_all_sides() {
        let f = find_fov(&disc(400, 300, 200.0, 150.0, 212.0)).expect("found");
        assert!((f.cx - 200.0).abs() < 3.0 && (f.cy - 150.0).abs() < 3.0, "{f:?}");
        assert!((f.r - 212.0).abs() < 5.0, "{f:?}");
        assert!(!f.fills_frame);
    }

    /// A dark (heavily pigmented, or underexposed) fundus with a bright disc:
    /// the field is found, not just the disc.
    #[test]
    fn finds_a_dark_field_with_a_bright_disc() {
        let mut img = disc(400, 300, 200.0, 150.0, 130.0);
        for (x, y, p) in img.enumerate_pixels_mut() {
            let d = ((x as f32 - 270.0).powi(2) + (y as f32 - 150.0).powi(2)).sqrt();
            p.0 = if d < 22.0 { [230, 200, 160] } else { p.0.map(|c| c / 4) };
        }
        let f = find_fov(&img).expect("found");
        assert!((f.r - 130.0).abs() < 4.0 && (f.cx - 200.0).abs() < 3.0, "{f:?}");
    }

    #[test]
    fn black_or_blank_images_have_no_field_of_view() {
        assert!(find_fov(&RgbImage::new(300, 300)).is_none());
        // A bright square is not a circle.
        let sq = RgbImage::from_fn(300, 300, |x, y| {
            let v = if (50..250).contains(&x) && (20..60).contains(&y) { 200 } else { 0 };
            image::Rgb([v, v, v])
        });
        assert!(find_fov(&sq).is_none());
    }
}

#[cfg(test)]
mod synthetic {
    use super::*;
    use crate::synth::{Params, render};
    use rand::SeedableRng;

    /// Every gradable photo of the second synthetic task (fields clipped by
    /// the frame, dark and bright exposures, vignetting, casts) has its field
    /// of view found, at the size the detector sees.
    #[test]
    fn finds_the_field_of_gradable_synthetic_photos() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let (mut n, mut missed) = (0, Vec::new());
        for _ in 0..300 {
            let p = Params::sample_v2(&mut rng, &[(427, 320), (320, 427), (400, 300)]);
            if !p.gradable() {
                continue;
            }
            n += 1;
            if find_fov(&render(&p)).is_none() {
                missed.push(format!("fov_scale {:.2} exposure {:.2} pigment {:.2} vignette {:.2} {:?}", p.fov_scale, p.exposure, p.pigment, p.look.vignette, p.defect));
            }
        }
        assert!(missed.is_empty(), "{} of {n} gradable photos without a field of view:\n{}", missed.len(), missed.join("\n"));
    }
}
