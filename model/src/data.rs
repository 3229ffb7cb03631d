//! Data sets through one loader: the synthetic generator's folder (photos and
//! labels.csv), a folder per class (`glaucoma/`, `normal/`), or a CSV manifest
//! (`path,label`, or AIROGS's `challenge_id,class` with RG/NRG). Splits keep a
//! patient's photos together when a patient column exists.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Unknown for ungradable photos of some data sets.
    pub glaucoma: Option<bool>,
    /// Unknown (None) for data sets that do not grade quality.
    pub gradable: Option<bool>,
    /// Key that keeps one person's photos in one split.
    pub group: String,
    /// The synthetic generator's probability of glaucoma given everything it
    /// drew (the label was drawn from it): the best any model can do.
    pub oracle_p: Option<f32>,
    /// Likewise the probability that a grader calls the photo gradable.
    pub gradable_p: Option<f32>,
    /// What a grader recorded beside the label, per [`FINDINGS`], where the
    /// data set has it.
    pub findings: [Option<f32>; FINDINGS.len()],
}

/// Which head a finding belongs to: the one whose view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    Glaucoma,
    Gradable,
}

/// A finding graders record beside the label (a column of a manifest or of
/// `labels.csv`). Training fits the findings a data set has as auxiliary
/// targets of the head whose view shows them: a measured cup-to-disc ratio
/// says what to look at far more densely than a yes/no label drawn at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub column: &'static str,
    pub head: Head,
    /// A yes/no finding (fitted as a logit); otherwise a measurement
    /// (standardised on the training photos and fitted by squared error).
    pub flag: bool,
    /// Fitted as its natural logarithm (a factor, such as exposure).
    pub log: bool,
}

const fn finding(column: &'static str, head: Head, flag: bool, log: bool) -> Finding {
    Finding { column, head, flag, log }
}

/// The findings training knows: the disc's (vertical cup-to-disc ratio, the
/// disc's vertical diameter over the field's, a rim notch, a disc
/// haemorrhage) and the capture's (defocus, exposure factor, glare, eyelash
/// shadows), each in the synthetic generator's columns.
pub const FINDINGS: [Finding; 8] = [
    finding("cdr", Head::Glaucoma, false, false),
    finding("disc_size", Head::Glaucoma, false, false),
    finding("notch", Head::Glaucoma, true, false),
    finding("haemorrhage", Head::Glaucoma, true, false),
    finding("blur", Head::Gradable, false, false),
    finding("exposure", Head::Gradable, false, true),
    finding("glare", Head::Gradable, false, false),
    finding("lashes", Head::Gradable, false, false),
];

// Training lays the findings out as the glaucoma head's, then the gradability head's.
const _: () = {
    let mut i = 1;
    while i < FINDINGS.len() {
        assert!(!(matches!(FINDINGS[i - 1].head, Head::Gradable) && matches!(FINDINGS[i].head, Head::Glaucoma)), "FINDINGS: the glaucoma head's come first");
        i += 1;
    }
};

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "rg" | "glaucoma" | "referable" => Some(true),
        "0" | "false" | "no" | "nrg" | "normal" | "non_referable" => Some(false),
        _ => None,
    }
}

/// Loads a data set from a folder (synthetic layout or a folder per class) or a CSV manifest.
pub fn load(path: &Path) -> Result<Vec<Sample>, Error> {
    let samples = if path.is_file() {
        manifest(path)?
    } else if path.join("labels.csv").is_file() {
        manifest(&path.join("labels.csv"))?
    } else if path.join("glaucoma").is_dir() || path.join("normal").is_dir() {
        per_class(path)?
    } else {
        return Err(Error::Data(format!(
            "{}: expected a CSV manifest, a folder with labels.csv, or glaucoma/ and normal/ subfolders",
            path.display()
        )));
    };
    if samples.is_empty() {
        return Err(Error::Data(format!("{}: no photos found", path.display())));
    }
    Ok(samples)
}

fn per_class(dir: &Path) -> Result<Vec<Sample>, Error> {
    let mut out = Vec::new();
    for (class, label) in [("glaucoma", true), ("normal", false)] {
        let Ok(entries) = std::fs::read_dir(dir.join(class)) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("").to_ascii_lowercase();
            if matches!(ext.as_str(), "jpg" | "jpeg" | "png" | "dcm") {
                let group = p.to_string_lossy().into_owned();
                out.push(Sample { path: p, glaucoma: Some(label), gradable: None, group, oracle_p: None, gradable_p: None, findings: [None; FINDINGS.len()] });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn manifest(csv_path: &Path) -> Result<Vec<Sample>, Error> {
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let err = |m: String| Error::Data(format!("{}: {m}", csv_path.display()));
    let mut r = csv::Reader::from_path(csv_path).map_err(|e| err(e.to_string()))?;
    let headers: Vec<String> = r.headers().map_err(|e| err(e.to_string()))?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let path_col = col(&["path", "file", "image", "filename"]);
    let id_col = col(&["challenge_id", "id"]);
    let label_col = col(&["glaucoma", "label", "class"])
        .ok_or_else(|| err("no label column (glaucoma, label or class)".into()))?;
    let gradable_col = col(&["gradable"]);
    let oracle_col = col(&["oracle_p"]);
    let gradable_p_col = col(&["gradable_p"]);
    let patient_col = col(&["patient", "patient_id", "patient_ref"]);
    let finding_cols = FINDINGS.map(|f| col(&[f.column]));
    if path_col.is_none() && id_col.is_none() {
        return Err(err("no path column (path, file, image) or challenge_id".into()));
    }
    let mut out = Vec::new();
    for (line, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| err(format!("row {}: {e}", line + 2)))?;
        let field = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(str::trim).unwrap_or("");
        let path = match path_col {
            Some(c) => base.join(field(Some(c))),
            None => find_image(base, field(id_col)).ok_or_else(|| err(format!("row {}: no image for id {:?}", line + 2, field(id_col))))?,
        };
        let label = field(Some(label_col));
        let glaucoma = if label.is_empty() {
            None
        } else {
            Some(parse_bool(label).ok_or_else(|| err(format!("row {}: unknown label {label:?}", line + 2)))?)
        };
        let gradable = gradable_col.and_then(|c| parse_bool(field(Some(c))));
        let group = match field(patient_col) {
            "" => path.to_string_lossy().into_owned(),
            p => p.to_owned(),
        };
        let probability = |c: Option<usize>, name: &str| match field(c) {
            "" => Ok(None),
            v => v.parse::<f32>().ok().filter(|p| (0.0..=1.0).contains(p)).map(Some).ok_or_else(|| err(format!("row {}: {name} {v:?} is not a probability", line + 2))),
        };
        let (oracle_p, gradable_p) = (probability(oracle_col, "oracle_p")?, probability(gradable_p_col, "gradable_p")?);
        let mut findings = [None; FINDINGS.len()];
        for ((slot, f), c) in findings.iter_mut().zip(FINDINGS).zip(finding_cols) {
            let v = field(c);
            if v.is_empty() {
                continue;
            }
            let bad = || err(format!("row {}: {} {v:?} is not {}", line + 2, f.column, if f.flag { "0 or 1" } else if f.log { "a positive number" } else { "a finite number" }));
            let x = if f.flag { parse_bool(v).map(|b| b as u8 as f32) } else { v.parse::<f32>().ok().filter(|x| x.is_finite()) }.ok_or_else(bad)?;
            *slot = Some(if f.log { if x > 0.0 { x.ln() } else { return Err(bad()) } } else { x });
        }
        out.push(Sample { path, glaucoma, gradable, group, oracle_p, gradable_p, findings });
    }
    Ok(out)
}

fn find_image(base: &Path, id: &str) -> Option<PathBuf> {
    ["jpg", "jpeg", "png", "JPG"].iter().map(|e| base.join(format!("{id}.{e}"))).find(|p| p.exists())
}

/// Splits into train / validation / test by group, deterministically per seed.
pub fn split(samples: &[Sample], val: f64, test: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>, Vec<Sample>) {
    let mut groups: Vec<&str> = samples.iter().map(|s| s.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    groups.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n = groups.len() as f64;
    let (n_test, n_val) = ((n * test).round() as usize, (n * val).round() as usize);
    let which: HashMap<&str, u8> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (*g, if i < n_test { 2 } else if i < n_test + n_val { 1 } else { 0 }))
        .collect();
    let mut parts = (Vec::new(), Vec::new(), Vec::new());
    for s in samples {
        match which[s.group.as_str()] {
            2 => parts.2.push(s.clone()),
            1 => parts.1.push(s.clone()),
            _ => parts.0.push(s.clone()),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airogs_manifest_and_patient_split() {
        let dir = std::env::temp_dir().join(format!("fundus-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut csv = String::from("challenge_id,class,patient\n");
        for i in 0..40 {
            std::fs::write(dir.join(format!("TRAIN{i:03}.jpg")), b"x").expect("file");
            csv.push_str(&format!("TRAIN{i:03},{},p{}\n", if i % 3 == 0 { "RG" } else { "NRG" }, i / 2));
        }
        std::fs::write(dir.join("train_labels.csv"), csv).expect("csv");
        let s = load(&dir.join("train_labels.csv")).expect("load");
        assert_eq!(s.len(), 40);
        assert_eq!(s.iter().filter(|x| x.glaucoma == Some(true)).count(), 14);
        let (tr, va, te) = split(&s, 0.2, 0.2, 1);
        assert_eq!(tr.len() + va.len() + te.len(), 40);
        // No patient straddles two splits.
        for a in &tr {
            assert!(!va.iter().chain(&te).any(|b| b.group == a.group));
        }
        assert_eq!(split(&s, 0.2, 0.2, 1).1, va, "deterministic per seed");
        std::fs::write(dir.join("bad.csv"), "challenge_id,class\nTRAIN000,maybe\n").expect("csv");
        let e = load(&dir.join("bad.csv")).expect_err("unknown label");
        assert!(e.to_string().contains("row 2: unknown label \"maybe\""), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Findings come from their columns where a row has them, exposure as
    /// its logarithm; a malformed one names its row and column.
    #[test]
    fn findings_are_read_where_present() {
        let dir = std::env::temp_dir().join(format!("fundus-findings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("labels.csv"), "path,glaucoma,cdr,notch,exposure\na.jpg,1,0.71,1,2.0\nb.jpg,0,,0,\n").expect("csv");
        let s = load(&dir).expect("load");
        let at = |name| FINDINGS.iter().position(|f| f.column == name).expect("finding");
        assert_eq!(s[0].findings[at("cdr")], Some(0.71));
        assert_eq!(s[0].findings[at("notch")], Some(1.0));
        assert!((s[0].findings[at("exposure")].expect("exposure") - 2f32.ln()).abs() < 1e-6);
        assert_eq!(s[0].findings[at("disc_size")], None);
        assert_eq!((s[1].findings[at("cdr")], s[1].findings[at("notch")]), (None, Some(0.0)));
        std::fs::write(dir.join("labels.csv"), "path,glaucoma,exposure\na.jpg,1,0\n").expect("csv");
        let e = load(&dir).expect_err("exposure 0");
        assert!(e.to_string().contains("row 2: exposure \"0\" is not a positive number"), "{e}");
        std::fs::write(dir.join("labels.csv"), "path,glaucoma,cdr\na.jpg,1,NaN\n").expect("csv");
        assert!(load(&dir).expect_err("NaN").to_string().contains("cdr \"NaN\" is not a finite number"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
