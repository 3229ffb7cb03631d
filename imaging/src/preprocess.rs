//! The one preprocessing path, shared by training and inference: decode at the
//! smallest DCT scale that still covers the model's input, turn upright (EXIF),
//! find the field of view, crop the square around it, resize, and black out
//! what lies outside the circle. With a disc view, the optic disc is found
//! too and a square centred on it is put beside the field: the input is then
//! two squares side by side, the whole field (for gradability) and the disc
//! at a few times the resolution (for glaucoma). The input is laid out
//! channel-major as u8 (`planar`); the model crate normalises it on its
//! device, and `normalised` gives the same floats without tch.

use image::{RgbImage, imageops};

use crate::container::Format;
use crate::decode::decode_rgb_at_least;
use crate::disc::{Disc, find_disc};
use crate::fov::{Fov, find_fov};
use crate::inspect::Reject;
use crate::quality::crop_to_fov;

/// What a model was trained with; stored in its model card so inference
/// preprocesses exactly the same way.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocessing {
    /// Side of the square input, in pixels.
    pub size: u32,
    /// Per-channel mean and standard deviation of 0..1 values (ImageNet's by default).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The glaucoma view: a square centred on the optic disc beside the
    /// field, or (absent, as in the first models) the field alone for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disc_view: Option<DiscView>,
}

/// A square around the optic disc, `size` pixels on a side like the field.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DiscView {
    /// Side of the square in field-of-view radii (not disc diameters: the
    /// disc's own size, which says much about its cup, stays visible).
    pub side: f32,
}

impl DiscView {
    /// About two diameters of a typical disc.
    pub const DEFAULT: DiscView = DiscView { side: 0.5 };
}

impl Preprocessing {
    pub fn new(size: u32) -> Preprocessing {
        Preprocessing { size, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], disc_view: None }
    }

    pub fn with_disc_view(self, view: DiscView) -> Preprocessing {
        Preprocessing { disc_view: Some(view), ..self }
    }

    /// Width of the model's input: one square, or two side by side.
    pub fn width(&self) -> u32 {
        if self.disc_view.is_some() { 2 * self.size } else { self.size }
    }

    /// Bytes of one photo's input (`planar`).
    pub fn input_len(&self) -> usize {
        3 * (self.size * self.width()) as usize
    }

    /// Short side to decode at: enough for the field, and for a disc view's
    /// square of `side` field radii to have `size` pixels (the circle's
    /// radius is about half the short side).
    pub fn decode_short_side(&self) -> u32 {
        let field = self.size + self.size / 4;
        match self.disc_view {
            Some(v) => field.max((self.size as f32 / (0.5 * v.side.max(0.05))).ceil() as u32),
            None => field,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// The model's input as a picture, `size` high and `width()` wide: the
    /// field's square, then the disc's when there is a disc view (black when
    /// no disc was found). Heatmaps are laid over it.
    pub crop: RgbImage,
    /// The field of view in the decoded image, when one was found; without one
    /// the centre square is used and the photo is likely ungradable.
    pub fov: Option<Fov>,
    /// The optic disc in the decoded image, when a disc view asked for it and
    /// one was found.
    pub disc: Option<Disc>,
    /// The square the glaucoma head saw (the disc's, or the field's), as
    /// `x, y, w, h` fractions of the upright photo: where its heatmap lies.
    pub glaucoma_box: [f32; 4],
}

/// Side at which the field of view is searched for: plenty for a circle.
const DETECT_SIDE: u32 = 320;

pub fn preprocess(bytes: &[u8], format: Format, p: &Preprocessing) -> Result<Preprocessed, Reject> {
    // The circle is usually a little smaller than the frame's short side:
    // leave a margin so the crop is downsampled, never stretched.
    let decoded = decode_rgb_at_least(bytes, format, p.decode_short_side())?;
    let upright = match format {
        Format::Jpeg => crate::exif::apply(decoded, crate::exif::jpeg_orientation(bytes)),
        _ => decoded,
    };
    Ok(preprocess_image(&upright, p))
}

/// Preprocesses pixels already decoded (and upright).
pub fn preprocess_image(img: &RgbImage, p: &Preprocessing) -> Preprocessed {
    let (w, h) = img.dimensions();
    let shrink = (w.min(h) as f32 / DETECT_SIDE as f32).max(1.0);
    let small = (shrink > 1.0).then(|| crate::resize::thumbnail(img, (w as f32 / shrink) as u32, (h as f32 / shrink) as u32));
    let detect = small.as_ref().unwrap_or(img);
    let fov = find_fov(detect);
    let disc = match (p.disc_view, fov) {
        (Some(_), Some(f)) => find_disc(detect, &f).map(|d| d.scaled(shrink)),
        _ => None,
    };
    let fov = fov.map(|f| f.scaled(shrink));
    let field = match fov {
        // A photo without surround (fills_frame) is cropped to its centre square.
        Some(f) if !f.fills_frame => {
            let mut c = crop_to_fov(img, &f, p.size);
            mask_outside_circle(&mut c);
            c
        }
        _ => {
            let side = w.min(h);
            crate::resize::triangle_window(img, i64::from((w - side) / 2), i64::from((h - side) / 2), side, side, p.size, p.size)
        }
    };
    let (wf, hf) = (w as f32, h as f32);
    let mut glaucoma_box = match fov {
        Some(f) if !f.fills_frame => [(f.cx - f.r) / wf, (f.cy - f.r) / hf, 2.0 * f.r / wf, 2.0 * f.r / hf],
        _ => {
            let side = w.min(h) as f32;
            [(wf - side) / 2.0 / wf, (hf - side) / 2.0 / hf, side / wf, side / hf]
        }
    };
    let crop = match p.disc_view {
        None => field,
        Some(view) => {
            let mut both = RgbImage::new(2 * p.size, p.size);
            imageops::replace(&mut both, &field, 0, 0);
            // A disc is only looked for inside a field of view.
            if let (Some(f), Some(d)) = (fov, disc) {
                // A field that fills the frame has no circle to measure by: its short side stands in.
                let r = if f.fills_frame { 0.5 * w.min(h) as f32 } else { f.r };
                let side = (view.side * r).round().max(1.0);
                imageops::replace(&mut both, &square_around(img, d.cx, d.cy, side, p.size), p.size as i64, 0);
                let (x0, y0) = ((d.cx - side / 2.0).round(), (d.cy - side / 2.0).round());
                glaucoma_box = [x0 / wf, y0 / hf, side / wf, side / hf];
            }
            both
        }
    };
    Preprocessed { crop, fov, disc, glaucoma_box }
}

/// The square of `side` pixels centred on `(cx, cy)`, black where it leaves
/// the image, resized to `size`.
fn square_around(img: &RgbImage, cx: f32, cy: f32, side: f32, size: u32) -> RgbImage {
    let (x0, y0) = ((cx - side / 2.0).round() as i64, (cy - side / 2.0).round() as i64);
    crate::resize::triangle_window(img, x0, y0, side as u32, side as u32, size, size)
}

impl Preprocessed {
    /// Whether the glaucoma view could be made: always without a disc view;
    /// with one, when the disc was found (a photo is never judged from a
    /// guessed crop).
    pub fn has_glaucoma_view(&self, p: &Preprocessing) -> bool {
        p.disc_view.is_none() || self.disc.is_some()
    }

    /// The input channel-major: `p.input_len()` bytes, red plane first.
    pub fn planar(&self) -> Vec<u8> {
        let n = (self.crop.width() * self.crop.height()) as usize;
        let mut chw = vec![0u8; 3 * n];
        for (i, px) in self.crop.pixels().enumerate() {
            for c in 0..3 {
                chw[c * n + i] = px.0[c];
            }
        }
        chw
    }

    /// The crop channel-major as floats normalised with `p`'s mean and
    /// standard deviation (of 0..1 values).
    pub fn normalised(&self, p: &Preprocessing) -> Vec<f32> {
        let n = (self.crop.width() * self.crop.height()) as usize;
        self.planar().iter().enumerate().map(|(i, &v)| (v as f32 / 255.0 - p.mean[i / n]) / p.std[i / n]).collect()
    }
}

/// Blacks out what lies outside the circle inscribed in the (square) image.
fn mask_outside_circle(img: &mut RgbImage) {
    let r = img.width() as f32 / 2.0;
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (dx, dy) = (x as f32 + 0.5 - r, y as f32 + 0.5 - r);
        if dx * dx + dy * dy > r * r {
            px.0 = [0, 0, 0];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Eye, Params, render, to_jpeg};

    fn photo(w: u32, h: u32) -> Vec<u8> {
        to_jpeg(
            &render(&Params {
                width: w,
                height: h,
                eye: Eye::Right,
                cdr: 0.5,
                notch: None,
                pigment: 0.9,
                fov_scale: 0.9,
                exposure: 1.0,
                defect: None,
                glaucoma: false,
                seed: 3,
                look: Default::default(),
            }),
            90,
        )
    }

    #[test]
    fn crops_the_field_of_view_into_a_normalised_square() {
        let p = Preprocessing::new(224);
        let out = preprocess(&photo(2400, 1800), Format::Jpeg, &p).expect("preprocess");
        let chw = out.normalised(&p);
        assert_eq!(chw.len(), 3 * 224 * 224);
        assert_eq!(out.crop.dimensions(), (224, 224));
        let fov = out.fov.expect("field of view");
        // Decoded at 1/4 scale (450 px short side >= 224): the circle spans 0.9 of it.
        assert!((fov.r - 0.45 * 450.0).abs() < 8.0, "{fov:?}");
        // Corners are outside the circle: black, i.e. (0 - mean) / std.
        assert!((chw[0] - (-0.485 / 0.229)).abs() < 1e-4);
        // The centre is retina, well above black.
        let centre = out.crop.get_pixel(112, 112).0;
        assert!(centre[0] > 60, "{centre:?}");
    }

    #[test]
    fn exif_orientation_is_honoured() {
        let p = Preprocessing::new(64);
        let j = photo(1200, 900);
        let plain = preprocess(&j, Format::Jpeg, &p).expect("plain");
        let turned = preprocess(&crate::exif::with_orientation(&j, 6), Format::Jpeg, &p).expect("rotated");
        // The same photo, turned a quarter: the disc moves from the right to the bottom.
        let plain_fov = plain.fov.expect("fov");
        let turned_fov = turned.fov.expect("fov");
        assert!((plain_fov.r - turned_fov.r).abs() < 3.0);
        let rotated = imageops::rotate90(&plain.crop);
        let diff: u64 = rotated
            .pixels()
            .zip(turned.crop.pixels())
            .map(|(a, b)| (0..3).map(|c| (a.0[c] as i64 - b.0[c] as i64).unsigned_abs()).sum::<u64>())
            .sum();
        assert!(diff / (64 * 64 * 3) < 12, "mean abs difference {}", diff / (64 * 64 * 3));
    }

    /// With a disc view the input is the field beside a square centred on the
    /// disc (the synthetic photo's own, within a tenth of a diameter), and the
    /// glaucoma box says where that square lies on the photo.
    #[test]
    fn a_disc_view_puts_the_disc_beside_the_field() {
        let params = Params { eye: Eye::Left, ..Params::healthy(1600, 1200, 8) };
        let truth = crate::synth::disc_truth(&params);
        let jpeg = to_jpeg(&render(&params), 90);
        let p = Preprocessing::new(96).with_disc_view(DiscView::DEFAULT);
        let out = preprocess(&jpeg, Format::Jpeg, &p).expect("preprocess");
        assert_eq!(out.crop.dimensions(), (192, 96));
        assert_eq!(out.planar().len(), p.input_len());
        let (fov, disc) = (out.fov.expect("fov"), out.disc.expect("disc"));
        // Decoded at a DCT scale; the field is centred, which gives the scale.
        let s = 1600.0 / (fov.cx * 2.0);
        let err = (disc.cx * s - truth.cx).hypot(disc.cy * s - truth.cy);
        assert!(err < 0.1 * 2.0 * truth.ry, "disc {disc:?} vs {truth:?} at scale {s}");
        // The box is centred on the disc, the view's side across.
        let [x, y, w, h] = out.glaucoma_box;
        assert!(((x + w / 2.0) * 1600.0 - truth.cx).abs() < 0.2 * truth.rx, "{:?}", out.glaucoma_box);
        assert!(((y + h / 2.0) * 1200.0 - truth.cy).abs() < 0.2 * truth.ry, "{:?}", out.glaucoma_box);
        assert!((w * 1600.0 - DiscView::DEFAULT.side * fov.r * s).abs() < 3.0, "{:?}", out.glaucoma_box);
        // The disc is pale: the square's centre has more green and blue than the field's.
        let pale = |x: u32, y: u32| {
            let q = out.crop.get_pixel(x, y).0;
            u32::from(q[1]) + u32::from(q[2])
        };
        assert!(pale(96 + 48, 48) > pale(48, 48) + 50, "disc {} vs field centre {}", pale(144, 48), pale(48, 48));
        // Without a disc view: one square, as before.
        assert_eq!(preprocess(&jpeg, Format::Jpeg, &Preprocessing::new(96)).expect("field").crop.dimensions(), (96, 96));
    }

    #[test]
    fn no_field_of_view_falls_back_to_the_centre() {
        let grey = RgbImage::from_pixel(800, 600, image::Rgb([0, 0, 0]));
        let p = Preprocessing::new(32);
        let out = preprocess_image(&grey, &p);
        assert!(out.fov.is_none());
        assert_eq!(out.normalised(&p).len(), 3 * 32 * 32);
    }
}
