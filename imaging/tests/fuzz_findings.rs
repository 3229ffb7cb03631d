//! Inputs the fuzz targets (fuzz/, `scripts/fuzz`) found to crash, hang or
//! allocate without bound, kept as regression tests: each is refused with a
//! clear reason, by every entry point, without panicking.

use imaging::{Format, Limits, Reject, deidentify, inspect};

/// The DICOM inputs that took seconds each (the parser allocated buffers by
/// the lengths they declare): refused by the element walk before the parser
/// runs, by inspection and de-identification alike.
#[test]
fn dicom_files_with_impossible_element_headers_are_refused_before_parsing() {
    let dir = format!("{}/tests/fuzz-findings", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for f in std::fs::read_dir(dir).expect("findings") {
        let path = f.expect("entry").path();
        if !path.to_string_lossy().contains("dicom-hang") {
            continue;
        }
        let b = std::fs::read(&path).expect("read");
        for r in [inspect(&b, Format::Dicom, Limits::default()).map(|_| ()), deidentify(&b, Format::Dicom).map(|_| ())] {
            match r {
                Err(Reject::Corrupt(m) | Reject::Truncated(m)) => {
                    assert!(m.starts_with("DICOM") && !m.contains("parser"), "{}: {m}", path.display())
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        n += 1;
    }
    assert!(n >= 16, "{n} findings");
}

/// Every finding, as every declared type: an answer, never a panic; and
/// what de-identifies is a fixed point that still inspects (six DICOM files
/// had meta groups that read once but not after rewriting).
#[test]
fn every_finding_is_answered_and_what_is_stored_reads_back() {
    let dir = format!("{}/tests/fuzz-findings", env!("CARGO_MANIFEST_DIR"));
    for f in std::fs::read_dir(dir).expect("findings") {
        let path = f.expect("entry").path();
        let b = std::fs::read(&path).expect("read");
        for format in [Format::Jpeg, Format::Png, Format::Dicom] {
            let _ = inspect(&b, format, Limits::default());
            if let Ok(out) = deidentify(&b, format) {
                assert!(deidentify(&out, format).ok().as_deref() == Some(&out[..]), "{}: not a fixed point", path.display());
            }
        }
    }
}
