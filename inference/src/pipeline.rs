//! The CPU side of scoring one photo, shared by the worker and offline
//! scoring: preprocess on the rayon pool (a panic there fails only that
//! photo), and render a reviewer's heatmap.

use std::panic::{AssertUnwindSafe, catch_unwind};

use imaging::{Preprocessing, RgbImage};

/// A photo ready for the model: u8 CHW (`prep.input_len()` bytes), and its
/// picture.
pub struct Prepared {
    pub chw: Vec<u8>,
    pub crop: RgbImage,
    /// Where the glaucoma head's square lies on the photo (`x, y, w, h`
    /// fractions of the upright photo).
    pub glaucoma_box: [f32; 4],
}

/// Decodes and preprocesses; errors and panics become a message that starts
/// with a stable code (`docs/errors.md`).
pub fn prepare(bytes: &[u8], prep: &Preprocessing) -> Result<Prepared, String> {
    prepare_checked(bytes, prep, false)
}

/// `prepare`, and with `fundus_check` the refusal of photos that are not of a
/// fundus (`not_fundus`), for photos that did not come through the upload
/// API, which refuses them at the door. That check comes first: a face has
/// no optic disc either, and is better told it is not a fundus.
pub fn prepare_checked(bytes: &[u8], prep: &Preprocessing, fundus_check: bool) -> Result<Prepared, String> {
    let run = || -> Result<Prepared, String> {
        let format = imaging::sniff(bytes).ok_or("unknown_format: not a JPEG, PNG or DICOM file")?;
        let fail = |e: imaging::Reject| format!("{}: {} photo: {e}", e.code(), format.as_str());
        let out = imaging::preprocess(bytes, format, prep).map_err(fail)?;
        if fundus_check {
            let field = image::imageops::crop_imm(&out.crop, 0, 0, prep.size, prep.size).to_image();
            imaging::check_fundus(&field).map_err(|e| format!("{}: {e}", e.code()))?;
        }
        if !out.has_glaucoma_view(prep) {
            return Err(fail(imaging::Reject::NoDisc));
        }
        Ok(Prepared { chw: out.planar(), glaucoma_box: out.glaucoma_box, crop: out.crop })
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "preprocess_panic: {}",
            p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
        )),
    }
}

/// A reviewer's heatmap as PNG: the map over the square the glaucoma head
/// saw, i.e. the disc's half of a two-view input, or the whole input.
pub fn heatmap_png(crop: &RgbImage, map: &[f32]) -> Vec<u8> {
    let (w, h) = crop.dimensions();
    if w != 2 * h {
        return model::heatmap::overlay_png(crop, map);
    }
    let half = image::imageops::crop_imm(crop, h, 0, h, h).to_image();
    let map: Vec<f32> = map.chunks(w as usize).flat_map(|row| row[h as usize..].iter().copied()).collect();
    model::heatmap::overlay_png(&half, &map)
}

/// Runs `f` on the rayon pool and awaits it; a panic becomes an error.
pub async fn on_rayon<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f)).map_err(|_| "panicked".to_owned());
        let _ = tx.send(r);
    });
    rx.await.map_err(|_| "the rayon pool dropped the task".to_owned())?
}

/// The store key of a photo's heatmap under one model version.
pub fn heatmap_key(image_id: &uuid::Uuid, model_version_id: &uuid::Uuid) -> String {
    format!("derived/heatmaps/{image_id}/{model_version_id}.png")
}
