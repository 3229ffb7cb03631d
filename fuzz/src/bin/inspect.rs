//! `imaging::inspect` and `deidentify` on arbitrary bytes of any declared type:
//! every outcome is a value, never a panic.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        for f in [imaging::Format::Jpeg, imaging::Format::Png, imaging::Format::Dicom] {
            let _ = imaging::inspect(data, f, fundus_fuzz::LIMITS);
            let _ = imaging::deidentify(data, f);
        }
    });
}
