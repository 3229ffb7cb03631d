//! Validation of an uploaded photo before anything is stored: magic bytes
//! against the declared type, container structure (truncation, trailing data),
//! dimensions from the header before any decode (decompression bombs), one
//! full decode, then the quick quality estimate.

use crate::container::{self, Format, sniff};
use crate::decode::decode_rgb_at_least;
use crate::quality::{Quality, WORK_SIDE, assess};
use crate::{decode_rgb, dicom};

/// Why an upload was refused. `code()` is a stable identifier clients may
/// match on; the message is for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error("the body is empty")]
    Empty,
    #[error("the bytes are not a JPEG, PNG or DICOM file")]
    UnknownFormat,
    #[error("declared as {declared} but the bytes are {actual}")]
    TypeMismatch { declared: &'static str, actual: &'static str },
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("unexpected data after the image: {0}")]
    TrailingData(String),
    #[error("corrupt image: {0}")]
    Corrupt(String),
    #[error("{width}x{height} is {megapixels:.0} megapixels, above the limit of {limit} megapixels")]
    TooManyPixels { width: u32, height: u32, megapixels: f64, limit: u32 },
    #[error("{width}x{height} is too small: the shorter side must be at least {min_side} pixels")]
    TooSmall { width: u32, height: u32, min_side: u32 },
    #[error("the DICOM file has no pixel data")]
    DicomNoPixelData,
    #[error("the DICOM pixel data cannot be decoded: {0}")]
    DicomUnsupported(String),
}

impl Reject {
    pub fn code(&self) -> &'static str {
        match self {
            Reject::Empty => "empty_body",
            Reject::UnknownFormat => "unknown_format",
            Reject::TypeMismatch { .. } => "type_mismatch",
            Reject::Truncated(_) => "truncated",
            Reject::TrailingData(_) => "trailing_data",
            Reject::Corrupt(_) => "corrupt_image",
            Reject::TooManyPixels { .. } => "too_many_pixels",
            Reject::TooSmall { .. } => "too_small",
            Reject::DicomNoPixelData => "dicom_no_pixel_data",
            Reject::DicomUnsupported(_) => "dicom_unsupported",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_megapixels: u32,
    pub min_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_megapixels: 100, min_side: 512 }
    }
}

#[derive(Debug, Clone)]
pub struct Inspection {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub quality: Quality,
}

/// Runs every check, cheapest first. CPU-bound (tens of milliseconds for a
/// phone photo): call it off the async executor.
pub fn inspect(bytes: &[u8], declared: Format, limits: Limits) -> Result<Inspection, Reject> {
    if bytes.is_empty() {
        return Err(Reject::Empty);
    }
    let actual = sniff(bytes).ok_or(Reject::UnknownFormat)?;
    if actual != declared {
        return Err(Reject::TypeMismatch { declared: declared.media_type(), actual: actual.media_type() });
    }
    let header = match actual {
        Format::Jpeg => container::jpeg_header(bytes)?,
        Format::Png => container::png_header(bytes)?,
        Format::Dicom => dicom::header(bytes)?,
    };
    let (width, height) = (header.width, header.height);
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_megapixels as u64 * 1_000_000 {
        return Err(Reject::TooManyPixels { width, height, megapixels: pixels as f64 / 1e6, limit: limits.max_megapixels });
    }
    if width.min(height) < limits.min_side {
        return Err(Reject::TooSmall { width, height, min_side: limits.min_side });
    }
    let full = decode_rgb(bytes, actual)?;
    if full.dimensions() != (width, height) {
        return Err(Reject::Corrupt(format!(
            "header says {width}x{height} but the pixels are {}x{}",
            full.width(),
            full.height()
        )));
    }
    // The quality estimate wants a small image: JPEGs decode again at 1/8
    // scale (cheap), other formats are shrunk from the full decode.
    let small = match actual {
        Format::Jpeg => decode_rgb_at_least(bytes, actual, WORK_SIDE)?,
        _ => {
            let s = (WORK_SIDE as f32 / width.min(height) as f32).min(1.0);
            let (w, h) = (((width as f32 * s) as u32).max(1), ((height as f32 * s) as u32).max(1));
            image::imageops::thumbnail(&full, w, h)
        }
    };
    drop(full);
    Ok(Inspection { format: actual, width, height, quality: assess(&small) })
}
