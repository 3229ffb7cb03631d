//! Writing a rendered photo the way cameras do: a phone's JPEG, a fundus
//! camera's DICOM file (of a named patient, for the de-identification tests).

use image::RgbImage;

/// Identifying attributes `to_dicom` writes, which must never be stored.
pub const DICOM_IDENTITY: [&str; 4] = ["Doe^Jane", "MRN-0042", "19500101", "CAM-SERIAL-9"];

/// A DICOM Part 10 file as a fundus camera writes one (ophthalmic photography
/// SOP class, explicit VR little endian, native RGB pixel data), of a named
/// patient (`DICOM_IDENTITY`); without pixel data when `img` is `None`.
pub fn to_dicom(img: Option<&RgbImage>, width: u32, height: u32, seed: u64) -> Vec<u8> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let pixels = img.map(|i| DataElement::new(dicom_dictionary_std::tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(i.as_raw().clone())));
    dicom_file(pixels, "1.2.840.10008.1.2.1", "RGB", 3, width, height, seed)
}

/// The same with the camera's JPEG kept as it is: JPEG Baseline transfer
/// syntax, the JPEG as the one fragment of encapsulated pixel data, as most
/// fundus cameras store photos.
pub fn to_dicom_jpeg(jpeg: &[u8], width: u32, height: u32, seed: u64) -> Vec<u8> {
    use dicom_core::value::{PixelFragmentSequence, Value};
    use dicom_core::{DataElement, VR};
    let fragments = PixelFragmentSequence::new_fragments(vec![pad_even(jpeg.to_vec())]);
    let pixels = DataElement::new(dicom_dictionary_std::tags::PIXEL_DATA, VR::OB, Value::from(fragments));
    dicom_file(Some(pixels), "1.2.840.10008.1.2.4.50", "YBR_FULL_422", 3, width, height, seed)
}

/// DICOM values have even lengths: a JPEG of odd length gets a trailing zero.
fn pad_even(mut v: Vec<u8>) -> Vec<u8> {
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

/// A file of 8-bit samples (`samples` per pixel) as the camera would write it.
pub(crate) fn dicom_file(
    pixels: Option<dicom_core::DataElement<dicom_object::InMemDicomObject>>,
    transfer_syntax: &str,
    photometric: &str,
    samples: u16,
    width: u32,
    height: u32,
    seed: u64,
) -> Vec<u8> {
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
        u(tags::SAMPLES_PER_PIXEL, samples),
        s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric),
        u(tags::PLANAR_CONFIGURATION, 0),
        u(tags::ROWS, height as u16),
        u(tags::COLUMNS, width as u16),
        u(tags::BITS_ALLOCATED, 8),
        u(tags::BITS_STORED, 8),
        u(tags::HIGH_BIT, 7),
        u(tags::PIXEL_REPRESENTATION, 0),
    ]);
    if let Some(p) = pixels {
        obj.put(p);
    }
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(transfer_syntax)
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
