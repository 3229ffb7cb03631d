//! The batch manifest reader, with and without the base-folder check.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let (path, base) = (std::path::Path::new("fuzz.csv"), std::path::Path::new("/nonexistent/fundus-fuzz"));
        for allow in [false, true] {
            if let Ok(entries) = fundus_fuzz::manifest::parse(data, path, base, allow) {
                for e in entries {
                    assert!(!e.name.is_empty());
                    assert!(allow || e.location.starts_with("/nonexistent/fundus-fuzz"), "{} escaped", e.location);
                }
            }
        }
    });
}
