//! Everything Fundus does to pixels before a network sees them: recognising and
//! validating uploads, decoding (JPEG at reduced DCT scale, PNG, DICOM pixel
//! data), finding the circular field of view and the optic disc, the cheap
//! quality estimate, and
//! the synthetic fundus generator. Pure CPU code: no tch, tokio, sqlx or HTTP.

mod container;
mod decode;
mod deid;
mod disc;
pub(crate) mod dicom;
pub mod exif;
mod fov;
mod inspect;
mod preprocess;
mod quality;
mod resize;
pub mod synth;

pub use container::{Format, sniff};
pub use decode::{decode_rgb, decode_rgb_at_least};
pub use deid::deidentify;
pub use disc::{Disc, MIN_CONTRAST, find_disc};
pub use fov::{Fov, find_fov};
pub use inspect::{Inspection, Limits, Reject, inspect};
pub use preprocess::{DiscView, Preprocessed, Preprocessing, preprocess, preprocess_image};
pub use quality::{FUNDUS_MIN_SHARE, Quality, QualityIssue, assess, check_fundus};

pub use image::RgbImage;
