//! The batch manifest: a CSV with a `path` column (relative to the CSV's
//! folder) and optionally `label` and `eye`. Parsed from any reader, so the
//! fuzz targets drive the same code as `fundus score --manifest`.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub struct Entry {
    pub name: String,
    pub label: Option<bool>,
    pub eye: String,
    /// Local file, or store key for a prefix.
    pub location: String,
}

fn parse_label(v: &str) -> Result<Option<bool>, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "1" | "true" | "glaucoma" | "rg" | "referable" => Ok(Some(true)),
        "0" | "false" | "normal" | "nrg" | "non_referable" => Ok(Some(false)),
        other => Err(format!("label {other:?} is not one of 1/0, true/false, glaucoma/normal, RG/NRG")),
    }
}

/// `rel` joined to `base`, refused when it would leave `base`: a `..`
/// component, an absolute path elsewhere, or a symbolic link (of the file or
/// a folder on the way) that resolves outside it.
fn inside(base: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("{rel} climbs out of the manifest's folder (..); pass --allow-outside to allow it"));
    }
    let joined = base.join(p);
    let real_base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    // Links resolved where the file exists; a missing file is judged by its
    // name here and reported when it is read.
    let resolved = joined.canonicalize().unwrap_or_else(|_| if p.is_absolute() { p.to_path_buf() } else { real_base.join(p) });
    if !resolved.starts_with(&real_base) {
        return Err(format!("{rel} is outside the manifest's folder (it leads to {}); pass --allow-outside to allow it", resolved.display()));
    }
    Ok(joined)
}

pub fn read_manifest(path: &Path, allow_outside: bool) -> anyhow::Result<Vec<Entry>> {
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file = std::fs::File::open(path).with_context(|| format!("manifest {}", path.display()))?;
    parse(file, path, base, allow_outside)
}

/// The entries of the manifest `path` (named in messages) read from `from`,
/// its paths resolved against `base`.
pub fn parse(from: impl Read, path: &Path, base: &Path, allow_outside: bool) -> anyhow::Result<Vec<Entry>> {
    let mut rdr = csv::Reader::from_reader(from);
    let headers = rdr.headers()?.clone();
    let col = |n: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(n));
    let p = col("path").with_context(|| format!("manifest {}: no `path` column (found: {})", path.display(), headers.iter().collect::<Vec<_>>().join(",")))?;
    let (l, e) = (col("label"), col("eye"));
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("manifest {} line {line}", path.display()))?;
        let rel = rec.get(p).unwrap_or("").trim();
        anyhow::ensure!(!rel.is_empty(), "manifest {} line {line}: empty path", path.display());
        anyhow::ensure!(seen.insert(rel.to_owned()), "manifest {} line {line}: {rel} is listed twice", path.display());
        let label = match l.and_then(|l| rec.get(l)) {
            Some(v) => parse_label(v).map_err(|m| anyhow::anyhow!("manifest {} line {line}: {m}", path.display()))?,
            None => None,
        };
        let eye = match e.and_then(|e| rec.get(e)).map(|s| s.trim().to_ascii_lowercase()) {
            None => "unknown".to_owned(),
            Some(s) if s.is_empty() => "unknown".to_owned(),
            Some(s) if ["left", "right"].contains(&s.as_str()) => s,
            Some(s) => anyhow::bail!("manifest {} line {line}: eye {s:?} is not left or right", path.display()),
        };
        let location = if allow_outside {
            base.join(rel)
        } else {
            inside(base, rel).map_err(|m| anyhow::anyhow!("manifest {} line {line}: {m}", path.display()))?
        };
        out.push(Entry { name: rel.to_owned(), label, eye, location: location.display().to_string() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_inside_their_folder() {
        let dir = std::env::temp_dir().join(format!("fundus-manifest-{}", std::process::id()));
        let base = dir.join("batch");
        std::fs::create_dir_all(base.join("sub")).expect("dir");
        std::fs::write(dir.join("secret.jpg"), b"x").expect("outside file");
        std::fs::write(base.join("sub/a.jpg"), b"x").expect("inside file");
        assert!(inside(&base, "sub/a.jpg").is_ok());
        assert!(inside(&base, "./sub/a.jpg").is_ok());
        let absolute_inside = base.join("sub/a.jpg").display().to_string();
        assert!(inside(&base, &absolute_inside).is_ok(), "an absolute path inside the folder");
        let absolute_outside = dir.join("secret.jpg").display().to_string();
        for bad in ["../secret.jpg", "sub/../../secret.jpg", "/etc/passwd", &absolute_outside] {
            assert!(inside(&base, bad).is_err(), "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.join("secret.jpg"), base.join("link.jpg")).expect("symlink");
            let e = inside(&base, "link.jpg").expect_err("a link out of the folder");
            assert!(e.contains("outside"), "{e}");
        }
        let csv = base.join("m.csv");
        std::fs::write(&csv, "path\nsub/a.jpg\n../secret.jpg\n").expect("csv");
        let e = read_manifest(&csv, false).err().expect("refused").to_string();
        assert!(e.contains("line 3") && e.contains("--allow-outside"), "{e}");
        assert_eq!(read_manifest(&csv, true).expect("allowed").len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
