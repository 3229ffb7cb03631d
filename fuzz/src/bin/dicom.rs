//! Container walk, inspection, decoding and de-identification of DICOM uploads.
fn main() {
    afl::fuzz!(|data: &[u8]| fundus_fuzz::photo(data, imaging::Format::Dicom));
}
