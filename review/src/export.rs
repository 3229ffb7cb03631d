//! Labels back to training: the final human outcomes as a manifest that
//! `fundus train --data DIR` reads as it is, with the photos beside it.
//! Patients appear only as a pseudonym (a hash of site and reference), which
//! keeps a patient's photos in one split without naming anyone.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub photos: usize,
    pub referable: usize,
    pub not_referable: usize,
    pub ungradable: usize,
}

fn extension(format: &str) -> &'static str {
    match format {
        "png" => "png",
        "dicom" => "dcm",
        _ => "jpg",
    }
}

pub fn pseudonym(site: &str, patient_ref: &str) -> String {
    let h = Sha256::new().chain_update(site.as_bytes()).chain_update([0]).chain_update(patient_ref.as_bytes()).finalize();
    hex_prefix(&h[..8])
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `labels.csv` and `photos/` under `out`, from final outcomes decided
/// at or after `since`. Ungradable outcomes are kept as gradability labels
/// (no glaucoma label). The export is audited as `actor`.
pub async fn export_labels(
    pool: &db::PgPool,
    store: &store::Store,
    out: &Path,
    since: Option<DateTime<Utc>>,
    actor: &str,
) -> anyhow::Result<ExportSummary> {
    let rows = db::review::labels(pool, since).await?;
    let photos = out.join("photos");
    std::fs::create_dir_all(&photos).with_context(|| format!("cannot create {}", photos.display()))?;
    let mut csv = csv::Writer::from_path(out.join("labels.csv.partial"))?;
    csv.write_record(["path", "label", "gradable", "patient", "eye", "source", "decided_at", "decided_by_role", "site", "ungradable_action", "cdr"])?;
    let mut s = ExportSummary::default();
    for r in &rows {
        let name = format!("photos/{}.{}", r.image_id, extension(&r.format));
        let bytes = store.get(&r.object_key).await.with_context(|| format!("fetching {}", r.object_key))?;
        std::fs::write(out.join(&name), &bytes).with_context(|| format!("writing {name}"))?;
        let (label, gradable) = match r.final_decision.as_str() {
            "referable" => {
                s.referable += 1;
                ("1", "1")
            }
            "not_referable" => {
                s.not_referable += 1;
                ("0", "1")
            }
            _ => {
                s.ungradable += 1;
                ("", "0")
            }
        };
        csv.write_record([
            name.as_str(),
            label,
            gradable,
            &pseudonym(&r.site, &r.patient_ref),
            &r.eye,
            &format!("review:{}", r.reason),
            &r.decided_at.to_rfc3339(),
            &r.decided_role,
            &r.site,
            r.final_action.as_deref().unwrap_or(""),
            // The reader's measured ratio: training fits it as a finding.
            &r.final_cdr.map(|c| format!("{c:.2}")).unwrap_or_default(),
        ])?;
        s.photos += 1;
    }
    csv.flush()?;
    drop(csv);
    // The manifest appears whole or not at all.
    std::fs::rename(out.join("labels.csv.partial"), out.join("labels.csv"))?;
    db::audit(
        pool,
        actor,
        "labels.export",
        None,
        serde_json::json!({ "out": out.display().to_string(), "since": since, "photos": s.photos }),
    )
    .await?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_and_site_scoped() {
        assert_eq!(pseudonym("a", "P-1"), pseudonym("a", "P-1"));
        assert_ne!(pseudonym("a", "P-1"), pseudonym("b", "P-1"));
        assert_ne!(pseudonym("a", "P-1"), pseudonym("a", "P-2"));
        assert_eq!(pseudonym("a", "P-1").len(), 16);
        assert!(!pseudonym("a", "P-1").contains("P-1"));
    }
}
