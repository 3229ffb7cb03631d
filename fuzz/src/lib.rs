//! Shared pieces of the fuzz targets: the project's own parsers, compiled
//! from their source files where their crate would pull in libtorch or an
//! HTTP stack, so each target drives exactly the code production runs.

#[path = "../../mesos/src/recordio.rs"]
pub mod recordio;

#[path = "../../inference/src/manifest.rs"]
pub mod manifest;

/// Limits small enough that a fuzzer's inputs decode in microseconds.
pub const LIMITS: imaging::Limits = imaging::Limits { max_megapixels: 4, min_side: 1 };

/// Inspects `data` when it is (or claims to be) `format`, then checks what
/// de-identification promises: a photo that inspects cleanly de-identifies,
/// the result is a fixed point, and it still inspects to the same size.
pub fn photo(data: &[u8], format: imaging::Format) {
    if imaging::sniff(data) != Some(format) {
        return;
    }
    let Ok(found) = imaging::inspect(data, format, LIMITS) else { return };
    // A DICOM file whose rewrite does not read back is refused; anything
    // else that inspects cleanly must de-identify.
    let out = match imaging::deidentify(data, format) {
        Ok(out) => out,
        Err(imaging::Reject::Corrupt(m)) if m.contains("does not read back") => return,
        Err(e) => panic!("a photo that inspects cleanly must de-identify: {e:?}"),
    };
    assert!(imaging::deidentify(&out, format).as_deref().ok() == Some(&out[..]), "de-identification is not idempotent");
    let again = imaging::inspect(&out, format, LIMITS).expect("a de-identified photo must still inspect");
    assert_eq!((again.width, again.height), (found.width, found.height));
}
