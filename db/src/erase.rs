//! Erasure of one person's records at one site, in one transaction: studies,
//! photos, jobs, results, review items and decisions, batch entries, and one
//! audit entry saying the erasure happened (counts only: no reference, no
//! ids). The audit trail itself stays append-only; its entries about the
//! person name photos and items by random ids, which lead nowhere once the
//! rows are gone. Runtime-checked SQL: the erase test runs every statement
//! against the real schema.

use uuid::Uuid;

use crate::{PgPool, Result};

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Erased {
    pub studies: usize,
    pub images: usize,
    pub results: usize,
    pub review_items: usize,
    /// Raw photo objects no longer referenced (the caller deletes them).
    pub raw_keys: Vec<String>,
    /// Derived files (heatmaps) of the erased results.
    pub derived_keys: Vec<String>,
    /// The erased photos, whose previews the caller deletes.
    pub image_ids: Vec<Uuid>,
}

/// Removes every row of the person whose stored reference is one of `refs`
/// at site `site_id`. `actor` is recorded in the audit entry.
pub async fn patient(pool: &PgPool, site_id: Uuid, refs: &[String], actor: &str) -> Result<Erased> {
    let mut tx = pool.begin().await?;
    // The one deletion review_decisions allow (migration 0009).
    sqlx::query("SET LOCAL fundus.erasure = 'on'").execute(&mut *tx).await?;
    let studies: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM studies WHERE site_id = $1 AND patient_ref = ANY($2) FOR UPDATE")
            .bind(site_id)
            .bind(refs)
            .fetch_all(&mut *tx)
            .await?;
    let images: Vec<(Uuid, String)> = sqlx::query_as("SELECT id, object_key FROM images WHERE study_id = ANY($1) FOR UPDATE")
        .bind(&studies)
        .fetch_all(&mut *tx)
        .await?;
    let ids: Vec<Uuid> = images.iter().map(|(id, _)| *id).collect();
    let items: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM review_items WHERE image_id = ANY($1)").bind(&ids).fetch_all(&mut *tx).await?;
    sqlx::query("DELETE FROM review_decisions WHERE item_id = ANY($1)").bind(&items).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM review_items WHERE id = ANY($1)").bind(&items).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM batch_images WHERE image_id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM jobs WHERE image_id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
    let results: Vec<(Uuid, Option<String>)> =
        sqlx::query_as("DELETE FROM results WHERE image_id = ANY($1) RETURNING id, heatmap_key").bind(&ids).fetch_all(&mut *tx).await?;
    sqlx::query("DELETE FROM images WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
    let batch_ids: Vec<Uuid> = sqlx::query_scalar("DELETE FROM batches WHERE study_id = ANY($1) RETURNING id").bind(&studies).fetch_all(&mut *tx).await?;
    sqlx::query("DELETE FROM studies WHERE id = ANY($1)").bind(&studies).execute(&mut *tx).await?;
    // Objects still pointed at by someone else's photo stay.
    let mut keys: Vec<String> = images.iter().map(|(_, k)| k.clone()).collect();
    keys.sort();
    keys.dedup();
    let shared: Vec<String> = sqlx::query_scalar("SELECT DISTINCT object_key FROM images WHERE object_key = ANY($1)")
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
    keys.retain(|k| !shared.contains(k));
    let erased = Erased {
        studies: studies.len(),
        images: ids.len(),
        results: results.len(),
        review_items: items.len(),
        raw_keys: keys,
        derived_keys: results.into_iter().filter_map(|(_, k)| k).collect(),
        image_ids: ids,
    };
    let detail = serde_json::json!({
        "studies": erased.studies, "images": erased.images, "results": erased.results,
        "review_items": erased.review_items, "batches": batch_ids.len(),
        "objects": erased.raw_keys.len() + erased.derived_keys.len(), "shared_objects_kept": shared.len(),
    });
    crate::audit(&mut *tx, actor, "patient.erase", Some(&site_id.to_string()), detail).await?;
    tx.commit().await?;
    Ok(erased)
}
