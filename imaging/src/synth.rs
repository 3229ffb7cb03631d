//! A synthetic fundus photograph generator, good enough to train and to test
//! on: circular field of view on black, pigmented background with illumination
//! fall-off, a vessel tree leaving the disc, the macula, an optic disc and cup
//! with a chosen vertical cup-to-disc ratio and optional rim notch, and the
//! defects that make a photo ungradable. Deterministic per seed.

use image::{Rgb, RgbImage, imageops};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Eye {
    Left,
    Right,
}

impl Eye {
    pub fn as_str(self) -> &'static str {
        match self {
            Eye::Left => "left",
            Eye::Right => "right",
        }
    }
}

/// What makes a photo ungradable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Defect {
    Blur,
    Underexposed,
    Overexposed,
    Occluded,
    OffCentre,
}

impl Defect {
    pub const ALL: [Defect; 5] =
        [Defect::Blur, Defect::Underexposed, Defect::Overexposed, Defect::Occluded, Defect::OffCentre];

    pub fn as_str(self) -> &'static str {
        match self {
            Defect::Blur => "blur",
            Defect::Underexposed => "underexposed",
            Defect::Overexposed => "overexposed",
            Defect::Occluded => "occluded",
            Defect::OffCentre => "off_centre",
        }
    }
}

/// Phone-like sensor sizes, 1.2 to 12 megapixels.
pub const PHONE_SIZES: [(u32, u32); 6] =
    [(1280, 960), (1600, 1200), (2048, 1536), (2592, 1944), (3264, 2448), (4000, 3000)];

/// Vertical cup-to-disc ratio above which a disc counts as glaucomatous; labels
/// within `OVERLAP` of it are drawn at random, as graders disagree there.
pub const CDR_THRESHOLD: f32 = 0.6;
pub const OVERLAP: f32 = 0.05;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    pub width: u32,
    pub height: u32,
    pub eye: Eye,
    /// Vertical cup-to-disc ratio.
    pub cdr: f32,
    /// Angle (radians, 0 = temporal, positive = inferior) of a rim notch.
    pub notch: Option<f32>,
    /// Fundus pigmentation, 0.6 (light) to 1.2 (dark).
    pub pigment: f32,
    /// Field-of-view radius relative to half the shorter side (>1: clipped by the frame).
    pub fov_scale: f32,
    /// Exposure for gradable photos (mild variation), 0.8..1.2.
    pub exposure: f32,
    pub defect: Option<Defect>,
    pub glaucoma: bool,
    /// Seed of the anatomy (vessels, texture).
    pub seed: u64,
    /// What the second version of the task adds; its default draws the first
    /// version's photo, pixel for pixel.
    #[serde(default)]
    pub look: Look,
}

/// The harder task's anatomy and capture (`Params::sample_v2`), and what it
/// knows about the truth.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Look {
    /// Disc size relative to the first version's (about two-fold range).
    pub disc_scale: f32,
    /// Vertical ovality of a tilted (myopic) disc, 0 = round.
    pub tilt: f32,
    /// Width of temporal peripapillary atrophy, in disc radii (0 = none).
    pub atrophy: f32,
    /// Angle of a flame haemorrhage at the disc margin.
    pub haemorrhage: Option<f32>,
    /// Extra darkening towards the rim, 0..1.
    pub vignette: f32,
    /// The device's colour cast, per channel.
    pub cast: [f32; 3],
    /// Strength of a glare reflex, 0 = none.
    pub glare: f32,
    /// Darkness of eyelash shadows across the top, 0 = none.
    pub lashes: f32,
    /// Defocus: Gaussian blur sigma relative to the shorter side.
    pub blur: f32,
    /// JPEG quality the photo is written at.
    pub jpeg_quality: u8,
    /// The probability of glaucoma given everything drawn; the label was drawn from it.
    pub oracle_p: Option<f32>,
    /// The probability a grader calls the photo gradable; the label was drawn from it.
    pub gradable_p: Option<f32>,
    pub gradable: Option<bool>,
}

impl Default for Look {
    fn default() -> Self {
        Look {
            disc_scale: 1.0,
            tilt: 0.0,
            atrophy: 0.0,
            haemorrhage: None,
            vignette: 0.0,
            cast: [1.0; 3],
            glare: 0.0,
            lashes: 0.0,
            blur: 0.0,
            jpeg_quality: 92,
            oracle_p: None,
            gradable_p: None,
            gradable: None,
        }
    }
}

/// Colour casts of four kinds of phone camera.
const CASTS: [[f32; 3]; 4] = [[1.0, 1.0, 1.0], [1.06, 0.97, 0.9], [0.94, 1.02, 1.1], [1.0, 1.06, 0.95]];

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Params {
    /// A healthy left eye (cup-to-disc ratio 0.5), well exposed, with the
    /// whole field of view in frame: the plain photo tests and tools start from.
    pub fn healthy(width: u32, height: u32, seed: u64) -> Params {
        Params {
            width,
            height,
            eye: Eye::Left,
            cdr: 0.5,
            notch: None,
            pigment: 0.9,
            fov_scale: 0.95,
            exposure: 1.0,
            defect: None,
            glaucoma: false,
            seed,
            look: Look::default(),
        }
    }

    /// The second version of the task, with a known ceiling. Healthy and
    /// glaucomatous cup-to-disc ratios overlap, the physiological cup grows
    /// with the disc (a large healthy disc is the classic false positive),
    /// tilted discs with atrophy, notches and haemorrhages; phone capture with
    /// vignetting, colour casts, glare, lashes, graded defocus and exposure,
    /// and JPEG quality from poor to good. The glaucoma label is drawn from
    /// `oracle_p`, the gradability label from `gradable_p`, so the best
    /// possible AUC on any set is the AUC of `oracle_p`.
    pub fn sample_v2(rng: &mut impl Rng, sizes: &[(u32, u32)]) -> Params {
        let (width, height) = sizes[rng.random_range(0..sizes.len())];
        let disc_scale = normal(rng, 0.0, 0.18).exp().clamp(0.7, 1.5);
        // The cup a healthy disc of this size has, and how far this one exceeds it.
        let physiological = 0.22 + 0.32 * (disc_scale - 0.7) / 0.8;
        let excess = if rng.random_bool(0.4) { normal(rng, 0.17, 0.09) } else { normal(rng, 0.0, 0.07) };
        let cdr = (physiological + excess).clamp(0.1, 0.92);
        let excess = cdr - physiological;
        let notch = rng
            .random_bool(if excess > 0.1 { 0.25 } else { 0.03 })
            .then(|| if rng.random_bool(0.5) { 1.3 } else { -1.3 } + normal(rng, 0.0, 0.15));
        let haemorrhage = rng
            .random_bool(if excess > 0.1 { 0.12 } else { 0.02 })
            .then(|| if rng.random_bool(0.5) { 1.1 } else { -1.1 } + normal(rng, 0.0, 0.3));
        let z = -1.0 + 14.0 * (excess - 0.08) + 1.8 * notch.is_some() as u8 as f32 + 1.2 * haemorrhage.is_some() as u8 as f32;
        let oracle_p = sigmoid(z);
        let glaucoma = rng.random_bool(f64::from(oracle_p));
        let myopic = rng.random_bool(0.2);
        let exposure = normal(rng, 0.0, 0.35).exp().clamp(0.2, 4.0);
        let blur = if rng.random_bool(0.3) { rng.random_range(0.0..0.02f32) } else { 0.0 };
        let glare = if rng.random_bool(0.3) { rng.random_range(0.05..0.6f32) } else { 0.0 };
        let lashes = if rng.random_bool(0.2) { rng.random_range(0.1..0.9f32) } else { 0.0 };
        let defect = match rng.random_range(0..100) {
            0..4 => Some(Defect::Occluded),
            4..8 => Some(Defect::OffCentre),
            _ => None,
        };
        // How far from gradable, 1 at the edge: defocus, exposure either way,
        // glare and lashes; an eyelid or a missed fixation is past it.
        let severity = (blur / 0.008)
            .max(exposure.ln().abs() / 2.2f32.ln())
            .max(glare / 0.7)
            .max(lashes / 1.0)
            .max(if defect.is_some() { 1.6 } else { 0.0 });
        let gradable_p = sigmoid(8.0 * (1.0 - severity));
        let gradable = rng.random_bool(f64::from(gradable_p));
        Params {
            width,
            height,
            eye: if rng.random_bool(0.5) { Eye::Left } else { Eye::Right },
            cdr,
            notch,
            pigment: rng.random_range(0.65..1.15),
            fov_scale: rng.random_range(0.8..1.25),
            exposure,
            defect,
            glaucoma,
            seed: rng.random(),
            look: Look {
                disc_scale,
                tilt: if myopic { rng.random_range(0.15..0.45) } else { 0.0 },
                atrophy: if myopic { rng.random_range(0.15..0.5) } else { 0.0 },
                haemorrhage,
                vignette: rng.random_range(0.0..0.6),
                cast: CASTS[rng.random_range(0..CASTS.len())],
                glare,
                lashes,
                blur,
                jpeg_quality: rng.random_range(55..96),
                oracle_p: Some(oracle_p),
                gradable_p: Some(gradable_p),
                gradable: Some(gradable),
            },
        }
    }

    /// Draws a photo's parameters: ~45% glaucomatous discs, ~15% ungradable.
    pub fn sample(rng: &mut impl Rng, sizes: &[(u32, u32)]) -> Params {
        let (width, height) = sizes[rng.random_range(0..sizes.len())];
        let glaucomatous_disc = rng.random_bool(0.45);
        let cdr = if glaucomatous_disc { normal(rng, 0.74, 0.08) } else { normal(rng, 0.38, 0.1) }.clamp(0.1, 0.92);
        let notch = (cdr > 0.5 && rng.random_bool(0.3))
            .then(|| if rng.random_bool(0.5) { 1.3 } else { -1.3 } + normal(rng, 0.0, 0.15));
        let p_glaucoma = ((cdr - (CDR_THRESHOLD - OVERLAP)) / (2.0 * OVERLAP)).clamp(0.0, 1.0);
        let glaucoma = notch.is_some() || rng.random_bool(p_glaucoma as f64);
        let defect = rng.random_bool(0.15).then(|| Defect::ALL[rng.random_range(0..Defect::ALL.len())]);
        Params {
            width,
            height,
            eye: if rng.random_bool(0.5) { Eye::Left } else { Eye::Right },
            cdr,
            notch,
            pigment: rng.random_range(0.65..1.15),
            fov_scale: rng.random_range(0.88..1.12),
            exposure: rng.random_range(0.85..1.15),
            defect,
            glaucoma,
            seed: rng.random(),
            look: Look::default(),
        }
    }

    pub fn gradable(&self) -> bool {
        self.look.gradable.unwrap_or(self.defect.is_none())
    }
}

fn normal(rng: &mut impl Rng, mean: f32, sd: f32) -> f32 {
    // Box-Muller; one draw is all we need.
    let (u1, u2): (f32, f32) = (rng.random_range(1e-6..1.0), rng.random());
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

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
pub fn render(p: &Params) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let (w, h) = (p.width, p.height);
    let short = w.min(h) as f32;
    let r = 0.5 * short * p.fov_scale.min(if p.defect == Some(Defect::OffCentre) { 1.0 } else { 2.0 });
    let (mut cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    if p.defect == Some(Defect::OffCentre) {
        cx += 0.55 * r * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    }
    // Right eye: the disc lies right of centre, the macula left of it.
    let side = if p.eye == Eye::Right { 1.0 } else { -1.0 };
    let disc = (side * 0.40 + normal(&mut rng, 0.0, 0.02), normal(&mut rng, 0.0, 0.03));
    let macula = (disc.0 - side * 0.55, disc.1 + 0.04);
    let (rdx, rdy) = (0.11 * rng.random_range(0.9..1.1), 0.12 * rng.random_range(0.9..1.1));
    let lk = &p.look;
    let (rdx, rdy) = (rdx * lk.disc_scale * (1.0 - lk.tilt * 0.5), rdy * lk.disc_scale);
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

/// Identifying attributes `to_dicom` writes, which must never be stored.
pub const DICOM_IDENTITY: [&str; 4] = ["Doe^Jane", "MRN-0042", "19500101", "CAM-SERIAL-9"];

/// A DICOM Part 10 file as a fundus camera writes one (ophthalmic photography
/// SOP class, explicit VR little endian, native RGB pixel data), of a named
/// patient (`DICOM_IDENTITY`); without pixel data when `img` is `None`.
pub fn to_dicom(img: Option<&RgbImage>, width: u32, height: u32, seed: u64) -> Vec<u8> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    const OP_8BIT: &str = "1.2.840.10008.5.1.4.1.1.77.1.5.1";
    let uid = format!("2.25.{}", seed + 1);
    let s = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    let u = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let mut obj = InMemDicomObject::from_element_iter([
        s(tags::SOP_CLASS_UID, VR::UI, OP_8BIT),
        s(tags::SOP_INSTANCE_UID, VR::UI, &uid),
        s(tags::MODALITY, VR::CS, "OP"),
        s(tags::PATIENT_NAME, VR::PN, DICOM_IDENTITY[0]),
        s(tags::PATIENT_ID, VR::LO, DICOM_IDENTITY[1]),
        s(tags::PATIENT_BIRTH_DATE, VR::DA, DICOM_IDENTITY[2]),
        s(tags::DEVICE_SERIAL_NUMBER, VR::LO, DICOM_IDENTITY[3]),
        u(tags::SAMPLES_PER_PIXEL, 3),
        s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB"),
        u(tags::PLANAR_CONFIGURATION, 0),
        u(tags::ROWS, height as u16),
        u(tags::COLUMNS, width as u16),
        u(tags::BITS_ALLOCATED, 8),
        u(tags::BITS_STORED, 8),
        u(tags::HIGH_BIT, 7),
        u(tags::PIXEL_REPRESENTATION, 0),
    ]);
    if let Some(img) = img {
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(img.as_raw().clone())));
    }
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .media_storage_sop_class_uid(OP_8BIT)
                .media_storage_sop_instance_uid(uid.as_str()),
        )
        .expect("a complete file meta table");
    let mut out = Vec::new();
    file.write_all(&mut out).expect("DICOM encoding into memory");
    out
}

/// Encodes as a JPEG the way a phone would (quality 92, 4:2:0).
pub fn to_jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().expect("turbojpeg compressor");
    let _ = c.set_quality(quality as i32);
    let _ = c.set_subsamp(turbojpeg::Subsamp::Sub2x2);
    let tj = turbojpeg::Image {
        pixels: img.as_raw().as_slice(),
        width: img.width() as usize,
        pitch: img.width() as usize * 3,
        height: img.height() as usize,
        format: turbojpeg::PixelFormat::RGB,
    };
    c.compress_to_vec(tj).expect("JPEG encoding of a valid RGB buffer")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The second task's labels are drawn from its oracle, so the oracle is
    /// calibrated, and its ceiling is neither trivial nor hopeless. Large
    /// healthy discs have large cups (the classic false positive).
    #[test]
    fn the_second_task_has_a_known_ceiling() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let ps: Vec<Params> = (0..6000).map(|_| Params::sample_v2(&mut rng, &[(640, 480)])).collect();
        let oracle: Vec<f64> = ps.iter().map(|p| f64::from(p.look.oracle_p.expect("oracle_p"))).collect();
        let labels: Vec<bool> = ps.iter().map(|p| p.glaucoma).collect();
        let n = ps.len() as f64;
        let (mean_p, rate) = (oracle.iter().sum::<f64>() / n, labels.iter().filter(|&&l| l).count() as f64 / n);
        assert!((mean_p - rate).abs() < 0.02, "oracle mean {mean_p} vs label rate {rate}");
        // AUC of the oracle by ranks (no ties to speak of).
        let mut idx: Vec<usize> = (0..ps.len()).collect();
        idx.sort_by(|&a, &b| oracle[a].total_cmp(&oracle[b]));
        let pos = labels.iter().filter(|&&l| l).count() as f64;
        let rank_sum: f64 = idx.iter().enumerate().filter(|&(_, &i)| labels[i]).map(|(r, _)| r as f64 + 1.0).sum();
        let auc = (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * (n - pos));
        assert!((0.8..0.93).contains(&auc), "oracle AUC {auc}");
        // Healthy-looking discs (low oracle_p): the cup grows with the disc.
        let healthy: Vec<&Params> = ps.iter().filter(|p| p.look.oracle_p < Some(0.2)).collect();
        let mean_cdr = |f: &dyn Fn(&Params) -> bool| {
            let v: Vec<f32> = healthy.iter().filter(|p| f(p)).map(|p| p.cdr).collect();
            v.iter().sum::<f32>() / v.len().max(1) as f32
        };
        let (small, large) = (mean_cdr(&|p| p.look.disc_scale < 0.9), mean_cdr(&|p| p.look.disc_scale > 1.15));
        assert!(large > small + 0.08, "healthy cups: small discs {small}, large discs {large}");
        // Gradability is graded: some photos are borderline either way.
        let borderline = ps.iter().filter(|p| p.look.gradable_p.is_some_and(|g| (0.2..0.8).contains(&g))).count();
        assert!(borderline > 60, "{borderline} borderline photos");
        assert_eq!(render(&ps[0]), render(&ps[0]));
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
