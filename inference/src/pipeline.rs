//! The CPU side of scoring one photo, shared by the worker and offline
//! scoring: preprocess on the rayon pool (a panic there fails only that
//! photo), and render a reviewer's heatmap.

use std::panic::{AssertUnwindSafe, catch_unwind};

use imaging::{Preprocessing, RgbImage};

/// A photo ready for the model: u8 CHW at `prep.size`, and its crop.
pub struct Prepared {
    pub chw: Vec<u8>,
    pub crop: RgbImage,
}

/// Decodes and preprocesses; errors and panics become a message that starts
/// with a stable code (`docs/errors.md`).
pub fn prepare(bytes: &[u8], prep: &Preprocessing) -> Result<Prepared, String> {
    let run = || -> Result<Prepared, String> {
        let format = imaging::sniff(bytes).ok_or("unknown_format: not a JPEG, PNG or DICOM file")?;
        let out = imaging::preprocess(bytes, format, prep).map_err(|e| format!("{}: {} photo: {e}", e.code(), format.as_str()))?;
        Ok(Prepared { chw: out.planar(), crop: out.crop })
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "preprocess_panic: {}",
            p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
        )),
    }
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
