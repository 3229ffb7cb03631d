//! The one preprocessing path, shared by training and inference: decode at the
//! smallest DCT scale that still covers the model's input, turn upright (EXIF),
//! find the field of view, crop the square around it, resize, and black out
//! what lies outside the circle. The crop is laid out channel-major as u8
//! (`planar`); the model crate normalises it on its device, and `normalised`
//! gives the same floats without tch.

use image::{RgbImage, imageops};

use crate::container::Format;
use crate::decode::decode_rgb_at_least;
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
}

impl Preprocessing {
    pub fn new(size: u32) -> Preprocessing {
        Preprocessing { size, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
    }
}

#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// The square RGB crop, `size` on a side: the model's input, and the
    /// picture heatmaps are laid over.
    pub crop: RgbImage,
    /// The field of view in the decoded image, when one was found; without one
    /// the centre square is used and the photo is likely ungradable.
    pub fov: Option<Fov>,
}

/// Side at which the field of view is searched for: plenty for a circle.
const DETECT_SIDE: u32 = 320;

pub fn preprocess(bytes: &[u8], format: Format, p: &Preprocessing) -> Result<Preprocessed, Reject> {
    // The circle is usually a little smaller than the frame's short side:
    // leave a margin so the crop is downsampled, never stretched.
    let decoded = decode_rgb_at_least(bytes, format, p.size + p.size / 4)?;
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
    let fov = if shrink > 1.0 {
        let small = imageops::thumbnail(img, (w as f32 / shrink) as u32, (h as f32 / shrink) as u32);
        find_fov(&small).map(|f| f.scaled(shrink))
    } else {
        find_fov(img)
    };
    let crop = match fov {
        // A photo without surround (fills_frame) is cropped to its centre square.
        Some(f) if !f.fills_frame => {
            let mut c = crop_to_fov(img, &f, p.size);
            mask_outside_circle(&mut c);
            c
        }
        _ => {
            let side = w.min(h);
            let sq = imageops::crop_imm(img, (w - side) / 2, (h - side) / 2, side, side).to_image();
            imageops::resize(&sq, p.size, p.size, imageops::FilterType::Triangle)
        }
    };
    Preprocessed { crop, fov }
}

impl Preprocessed {
    /// The crop channel-major: `3 * size * size` bytes, red plane first.
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

    #[test]
    fn no_field_of_view_falls_back_to_the_centre() {
        let grey = RgbImage::from_pixel(800, 600, image::Rgb([0, 0, 0]));
        let p = Preprocessing::new(32);
        let out = preprocess_image(&grey, &p);
        assert!(out.fov.is_none());
        assert_eq!(out.normalised(&p).len(), 3 * 32 * 32);
    }
}
