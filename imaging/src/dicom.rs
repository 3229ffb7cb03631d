//! DICOM Part 10 files (ophthalmic photography, usually JPEG-compressed or
//! native RGB pixel data): header dimensions and decoding of the first frame.

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions, file::ReadPreamble};
use dicom_pixeldata::PixelDecoder;
use image::RgbImage;

use crate::container::Header;
use crate::inspect::Reject;

fn parse(bytes: &[u8]) -> Result<DefaultDicomObject, Reject> {
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(bytes)
        .map_err(|e| Reject::Corrupt(format!("DICOM parser: {e}")))
}

fn uint(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    obj.element(tag).ok()?.to_int::<u32>().ok()
}

/// Rows and columns of the first frame; fails when there is no pixel data.
pub fn header(bytes: &[u8]) -> Result<Header, Reject> {
    let obj = parse(bytes)?;
    header_of(&obj)
}

fn header_of(obj: &DefaultDicomObject) -> Result<Header, Reject> {
    if obj.element(tags::PIXEL_DATA).is_err() {
        return Err(Reject::DicomNoPixelData);
    }
    match (uint(obj, tags::COLUMNS), uint(obj, tags::ROWS)) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Ok(Header { width: w, height: h }),
        _ => Err(Reject::Corrupt("DICOM without Rows and Columns".into())),
    }
}

pub fn decode(bytes: &[u8]) -> Result<RgbImage, Reject> {
    let obj = parse(bytes)?;
    header_of(&obj)?;
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_owned();
    let decoded = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| Reject::DicomUnsupported(format!("transfer syntax {ts}: {e}")))?;
    let img = decoded
        .to_dynamic_image(0)
        .map_err(|e| Reject::DicomUnsupported(format!("pixel data of transfer syntax {ts}: {e}")))?;
    Ok(img.into_rgb8())
}
