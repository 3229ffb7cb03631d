//! Painting a photo from its `Params`: the field of view, background, vessel
//! tree, macula, disc and cup, and the second task's anatomy and capture.

use image::{Rgb, RgbImage, imageops};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{Defect, Eye, Params, normal};

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A map over the unit square sampled bilinearly: vessels and texture are
/// drawn once at a modest resolution and stretched to the photo's size.
struct Map {
    n: usize,
    v: Vec<f32>,
}

impl Map {
    /// `u`, `v` in -1..1 (field-of-view coordinates).
    fn at(&self, u: f32, v: f32) -> f32 {
        let f = |t: f32| ((t + 1.0) * 0.5 * (self.n - 1) as f32).clamp(0.0, (self.n - 1) as f32 - 1e-3);
        let (x, y) = (f(u), f(v));
        let (x0, y0) = (x as usize, y as usize);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let g = |i: usize, j: usize| self.v[j * self.n + i];
        let top = g(x0, y0) * (1.0 - fx) + g(x0 + 1, y0) * fx;
        let bottom = g(x0, y0 + 1) * (1.0 - fx) + g(x0 + 1, y0 + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

struct Segment {
    a: (f32, f32),
    b: (f32, f32),
    width: f32,
}

/// Grows the vessel tree from the disc: four trunks (the temporal arcades
/// curving around the macula, two nasal), branching as they thin.
fn vessel_tree(rng: &mut impl Rng, disc: (f32, f32), temporal: f32) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    // `temporal` is +1 when the temporal side (towards the macula) is to the right.
    // The temporal arcades bend back around the macula; the nasal trunks run straight.
    for (vert, nasal) in [(-1.0f32, false), (1.0, false), (-1.0, true), (1.0, true)] {
        let (dx, dy, bend) = if nasal {
            (-temporal * 0.64, vert * 0.77, 0.0)
        } else {
            (temporal * 0.77, vert * 0.64, -vert * temporal * 0.045)
        };
        stack.push((disc, dy.atan2(dx), 0.0135f32, 1.6f32, bend));
    }
    while let Some((mut p, mut a, w, len, bend)) = stack.pop() {
        let step = 0.018;
        let mut travelled = 0.0;
        while travelled < len {
            a += bend + normal(rng, 0.0, 0.09);
            let q = (p.0 + step * a.cos(), p.1 + step * a.sin());
            out.push(Segment { a: p, b: q, width: w });
            p = q;
            travelled += step;
            if p.0 * p.0 + p.1 * p.1 > 1.05 {
                break;
            }
            if w > 0.004 && rng.random_bool(0.045) {
                let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                stack.push((p, a + side * rng.random_range(0.45..0.9), w * 0.7, len * 0.55, bend * 0.5));
            }
        }
    }
    out
}

fn rasterize(segments: &[Segment], n: usize) -> Map {
    let mut v = vec![0f32; n * n];
    let px = |t: f32| (t + 1.0) * 0.5 * (n - 1) as f32;
    let scale = 0.5 * (n - 1) as f32;
    for s in segments {
        let (ax, ay, bx, by) = (px(s.a.0), px(s.a.1), px(s.b.0), px(s.b.1));
        let half = (s.width * scale * 0.5).max(0.6);
        let lo_x = (ax.min(bx) - half - 1.0).floor().max(0.0) as usize;
        let hi_x = (ax.max(bx) + half + 1.0).ceil().min((n - 1) as f32) as usize;
        let lo_y = (ay.min(by) - half - 1.0).floor().max(0.0) as usize;
        let hi_y = (ay.max(by) + half + 1.0).ceil().min((n - 1) as f32) as usize;
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        for y in lo_y..=hi_y {
            for x in lo_x..=hi_x {
                let t = (((x as f32 - ax) * dx + (y as f32 - ay) * dy) / len2).clamp(0.0, 1.0);
                let (ex, ey) = (ax + t * dx - x as f32, ay + t * dy - y as f32);
                let d = (ex * ex + ey * ey).sqrt();
                let cover = 1.0 - smoothstep(half - 0.5, half + 0.5, d);
                let cell = &mut v[y * n + x];
                *cell = cell.max(cover * (0.55 + 25.0 * s.width).min(1.0));
            }
        }
    }
    Map { n, v }
}

fn texture(rng: &mut impl Rng, n: usize) -> Map {
    Map { n, v: (0..n * n).map(|_| rng.random_range(-1.0..1.0)).collect() }
}

/// Cheap per-pixel noise, deterministic in position and seed.
fn hash_noise(x: u32, y: u32, seed: u64) -> f32 {
    let mut h = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ seed;
    h ^= h >> 31;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 29;
    (h & 0xFFFF) as f32 / 65535.0 - 0.5
}

/// Renders the photo described by `p`.
/// Where a photo's field of view and optic disc are: what `render` draws.
struct Layout {
    /// Field of view: centre and radius in pixels.
    cx: f32,
    cy: f32,
    r: f32,
    /// +1 for a right eye (disc right of centre), -1 for a left.
    side: f32,
    /// Disc centre and semi-axes in field-of-view radii.
    disc: (f32, f32),
    rdx: f32,
    rdy: f32,
}

/// The first draws of `render`, in its order (so the first version's photos
/// are unchanged): the field of view, then the disc.
fn layout(p: &Params, rng: &mut ChaCha8Rng) -> Layout {
    let (w, h) = (p.width, p.height);
    let short = w.min(h) as f32;
    let r = 0.5 * short * p.fov_scale.min(if p.defect == Some(Defect::OffCentre) { 1.0 } else { 2.0 });
    let (mut cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    if p.defect == Some(Defect::OffCentre) {
        cx += 0.55 * r * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    }
    // Right eye: the disc lies right of centre, the macula left of it.
    let side = if p.eye == Eye::Right { 1.0 } else { -1.0 };
    let lk = &p.look;
    let disc = (side * 0.40 + normal(rng, 0.0, 0.02) + lk.fixation[0], normal(rng, 0.0, 0.03) + lk.fixation[1]);
    let (rdx, rdy) = (0.11 * rng.random_range(0.9..1.1), 0.12 * rng.random_range(0.9..1.1));
    let (rdx, rdy) = (rdx * lk.disc_scale * (1.0 - lk.tilt * 0.5), rdy * lk.disc_scale);
    Layout { cx, cy, r, side, disc, rdx, rdy }
}

/// The optic disc of the photo `render(p)` draws, in its pixels: centre and
/// horizontal and vertical radii (the ground truth for disc localisation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscTruth {
    pub cx: f32,
    pub cy: f32,
    pub rx: f32,
    pub ry: f32,
    /// The field of view's radius, in pixels (larger than the frame when it is clipped).
    pub field_r: f32,
}

pub fn disc_truth(p: &Params) -> DiscTruth {
    let l = layout(p, &mut ChaCha8Rng::seed_from_u64(p.seed));
    DiscTruth { cx: l.cx + l.disc.0 * l.r, cy: l.cy + l.disc.1 * l.r, rx: l.rdx * l.r, ry: l.rdy * l.r, field_r: l.r }
}

pub fn render(p: &Params) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let (w, h) = (p.width, p.height);
    let short = w.min(h) as f32;
    let Layout { cx, cy, r, side, disc, rdx, rdy } = layout(p, &mut rng);
    let macula = (disc.0 - side * 0.55, disc.1 + 0.04);
    let lk = &p.look;
    let vessels = rasterize(&vessel_tree(&mut rng, disc, -side), 1024);
    let tex = texture(&mut rng, 24);
    let cup_h = p.cdr;
    let cup_w = p.cdr * rng.random_range(0.8..0.95);
    let base = [205.0 / p.pigment, 92.0 / p.pigment.powf(1.5), 40.0 / p.pigment.powi(2)];
    let noise_seed = rng.random::<u64>();
    let exposure = p.exposure
        * match p.defect {
            Some(Defect::Underexposed) => 0.18,
            Some(Defect::Overexposed) => 2.6,
            _ => 1.0,
        };
    let lid = rng.random_range(-0.45..-0.2f32);
    // Drawn after everything the first version draws, so its photos stay the same.
    let glare_at = if lk.glare > 0.0 { (rng.random_range(-0.5..0.5f32), rng.random_range(-0.5..0.5f32)) } else { (0.0, 0.0) };
    let lash_phase = if lk.lashes > 0.0 { rng.random_range(0.0..std::f32::consts::TAU) } else { 0.0 };

    let mut buf = vec![0u8; (w * h * 3) as usize];
    buf.par_chunks_mut((w * 3) as usize).enumerate().for_each(|(y, row)| {
        let y = y as u32;
        for x in 0..w {
            let (u, v) = ((x as f32 + 0.5 - cx) / r, (y as f32 + 0.5 - cy) / r);
            let d = (u * u + v * v).sqrt();
            let n = hash_noise(x, y, noise_seed);
            let px = &mut row[(x * 3) as usize..(x * 3 + 3) as usize];
            if d > 1.0 {
                let black = (2.0 + 4.0 * n).max(0.0) as u8;
                px.copy_from_slice(&[black, black, black]);
                continue;
            }
            let illum = (1.0 - 0.5 * d.powf(2.2)) * (1.0 + 0.07 * tex.at(u, v)) * (1.0 - lk.vignette * d * d);
            let mut c = base.map(|b| b * illum);
            // Macula: darker, with no vessels of note.
            let m = ((u - macula.0).powi(2) + (v - macula.1).powi(2)) / (2.0 * 0.09f32.powi(2));
            let dark = 1.0 - 0.38 * (-m).exp();
            c = c.map(|ch| ch * dark);
            // Disc, then the cup inside it, with the notch widening the cup towards the rim.
            let (du, dv) = ((u - disc.0) / rdx, (v - disc.1) / rdy);
            let e = (du * du + dv * dv).sqrt();
            // Temporal atrophy: a pale crescent beside a tilted disc.
            if lk.atrophy > 0.0 && e > 0.95 && e < 1.0 + lk.atrophy && du * side < 0.0 {
                let w8 = (1.0 - smoothstep(0.6, 1.0, (e - 1.0) / lk.atrophy)) * smoothstep(0.0, 0.5, -du * side);
                c = [0, 1, 2].map(|k| c[k] * (1.0 - 0.7 * w8) + [215.0, 170.0, 130.0][k] * 0.7 * w8);
            }
            // A flame haemorrhage at the margin.
            if let Some(at) = lk.haemorrhage {
                let theta = dv.atan2(du * side);
                let dist = (theta - at).abs().min(std::f32::consts::TAU - (theta - at).abs());
                if e > 0.9 && e < 1.45 && dist < 0.14 {
                    let w8 = (1.0 - dist / 0.14) * (1.0 - smoothstep(1.2, 1.45, e));
                    c = [0, 1, 2].map(|k| c[k] * (1.0 - 0.8 * w8) + [110.0, 18.0, 12.0][k] * 0.8 * w8);
                }
            }
            let disc_w = 1.0 - smoothstep(0.93, 1.05, e);
            if disc_w > 0.0 {
                let theta = dv.atan2(du * side);
                let mut cup = (du / cup_w).powi(2) + (dv / cup_h).powi(2);
                if let Some(at) = p.notch {
                    let dist = (theta - at).abs().min(std::f32::consts::TAU - (theta - at).abs());
                    let reach = cup_h + (0.97 - cup_h) * (-(dist * dist) / (2.0 * 0.22f32.powi(2))).exp();
                    cup = cup.min((du / cup_w.max(reach * 0.9)).powi(2) + (dv / reach).powi(2));
                }
                let cup_w8 = 1.0 - smoothstep(0.8, 1.15, cup.sqrt());
                let rim = [238.0, 168.0, 118.0].map(|ch| ch * (0.85 + 0.15 * illum));
                let pale = [252.0, 228.0, 196.0];
                for k in 0..3 {
                    let disc_c = rim[k] * (1.0 - cup_w8) + pale[k] * cup_w8;
                    c[k] = c[k] * (1.0 - disc_w) + disc_c * disc_w;
                }
            }
            let vs = vessels.at(u, v);
            c[0] *= 1.0 - 0.38 * vs;
            c[1] *= 1.0 - 0.62 * vs;
            c[2] *= 1.0 - 0.5 * vs;
            let mut shade = 1.0 - smoothstep(0.985, 1.0, d);
            if lk.glare > 0.0 {
                let g2 = ((u - glare_at.0).powi(2) + (v - glare_at.1).powi(2)) / (2.0 * 0.12f32.powi(2));
                let add = 255.0 * lk.glare * (-g2).exp();
                c = c.map(|ch| ch + add);
            }
            if lk.lashes > 0.0 && v < -0.35 {
                // Curved dark strands hanging from the top of the field.
                let strand = ((u * 23.0 + lash_phase + 4.0 * (v + 1.0).powi(2)).sin()).abs();
                if strand < 0.12 {
                    shade *= 1.0 - lk.lashes * (1.0 - strand / 0.12) * smoothstep(-0.35, -0.8, v);
                }
            }
            if p.defect == Some(Defect::Occluded) && v < lid + 0.12 * (3.0 * u).sin() {
                shade *= 0.12; // an eyelid across the upper field
            }
            for k in 0..3 {
                px[k] = ((c[k] * lk.cast[k] * exposure * shade) + 3.0 * n).clamp(0.0, 255.0) as u8;
            }
        }
    });
    let img = RgbImage::from_raw(w, h, buf).unwrap_or_else(|| RgbImage::from_pixel(w, h, Rgb([0, 0, 0])));
    match p.defect {
        Some(Defect::Blur) => imageops::fast_blur(&img, 0.012 * short),
        _ if p.look.blur > 0.0 => imageops::fast_blur(&img, p.look.blur * short),
        _ => img,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Look;

    fn params(defect: Option<Defect>) -> Params {
        Params {
            width: 800,
            height: 600,
            eye: Eye::Right,
            cdr: 0.7,
            notch: None,
            pigment: 0.9,
            fov_scale: 0.95,
            exposure: 1.0,
            defect,
            glaucoma: true,
            seed: 7,
            look: Look::default(),
        }
    }

    #[test]
    fn deterministic_per_seed() {
        assert_eq!(render(&params(None)), render(&params(None)));
        let mut other = params(None);
        other.seed = 8;
        assert_ne!(render(&params(None)), render(&other));
    }

    #[test]
    fn quality_estimate_tells_defects_apart() {
        let q = |d| crate::assess(&imageops::thumbnail(&render(&params(d)), 400, 300));
        let good = q(None);
        assert!(good.issues.is_empty(), "{good:?}");
        assert!(q(Some(Defect::Underexposed)).issues.contains(&crate::QualityIssue::TooDark));
        assert!(q(Some(Defect::Overexposed)).issues.contains(&crate::QualityIssue::TooBright));
        assert!(q(Some(Defect::Blur)).issues.contains(&crate::QualityIssue::TooBlurred));
    }
}
