//! A synthetic fundus photograph generator, good enough to train and to test
//! on: circular field of view on black, pigmented background with illumination
//! fall-off, a vessel tree leaving the disc, the macula, an optic disc and cup
//! with a chosen vertical cup-to-disc ratio and optional rim notch, and the
//! defects that make a photo ungradable. Deterministic per seed.
//!
//! Here: what a photo is (`Params`, `Look`) and how the two tasks draw one;
//! `render` paints it, `encode` writes it as a camera would.

pub(crate) mod encode;
mod render;

pub use encode::{DICOM_IDENTITY, to_dicom, to_dicom_jpeg, to_jpeg};
pub use render::{DiscTruth, disc_truth, render};

use rand::Rng;

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
    /// Where the eye looked: the disc (and the macula and vessels with it)
    /// moved by this much, in field-of-view radii.
    pub fixation: [f32; 2],
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
            fixation: [0.0; 2],
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
                fixation: [normal(rng, 0.0, 0.07), normal(rng, 0.0, 0.1)],
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
}
