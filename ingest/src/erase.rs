//! `fundus admin erase`: a person's photos, results, review items and
//! derived files, gone from Postgres and the store. Rows go first,
//! in one transaction; then the objects: heatmaps and previews (named by the erased
//! photos), and each raw photo under the sweep's lock on its key, only when
//! no other photo points at it and no upload has reserved it, so a photo of
//! the same bytes in another study keeps its object. An object left by a
//! failure after the commit is unreferenced, and the orphan sweep removes it.

use crate::pseudonym::PseudonymArgs;
use store::Store;

#[derive(Debug, serde::Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub rows: db::erase::Erased,
    pub objects_removed: usize,
}

pub async fn patient(
    pool: &db::PgPool,
    store: &Store,
    keys: &PseudonymArgs,
    site: &str,
    patient_ref: &str,
    actor: &str,
) -> anyhow::Result<Report> {
    let site_id = match db::access::site_by_name(pool, site).await {
        Ok(s) => s.id,
        Err(db::Error::NotFound(_)) => anyhow::bail!("no site named {site:?}"),
        Err(e) => return Err(e.into()),
    };
    let rows = db::erase::patient(pool, site_id, &keys.candidates(site, patient_ref), actor).await?;
    let mut removed = 0;
    // Heatmaps with where they lie, and reviewers' previews (made when the
    // photo was first viewed, perhaps never: deleting what is not there is no error).
    for key in &rows.derived_keys {
        store.delete(&store::heatmap_box_key(key)).await?;
        store.delete(key).await?;
        removed += 1;
    }
    for id in &rows.image_ids {
        for key in store::preview_keys(id) {
            store.delete(&key).await?;
        }
    }
    for key in &rows.raw_keys {
        removed += crate::sweep::remove_if_unclaimed(pool, store, key).await? as usize;
    }
    Ok(Report { rows, objects_removed: removed })
}
