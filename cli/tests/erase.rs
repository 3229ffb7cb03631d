//! Patient references stored as keyed pseudonyms, and `fundus admin erase`
//! taking a scored, reviewed person out of Postgres and the store while
//! another person's photo of the same bytes stays whole.

use serde_json::json;
use tests::{Harness, Stack, fixtures, run_ok, start_worker};
use uuid::Uuid;

const KEY: &str = "erase-test-secret-0123456789abcdef0123";

async fn study(h: &Harness, token: &str, patient: &str) -> Uuid {
    let (status, body) = h
        .post_json(Some(token), "/v1/studies", json!({ "patient_ref": patient, "captured_at": "2026-11-20T10:00:00Z" }))
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").parse().expect("uuid")
}

async fn photo(h: &Harness, token: &str, study: Uuid, bytes: Vec<u8>) -> Uuid {
    let (status, body) = h.send(h.upload(token, study, bytes, "image/jpeg")).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").parse().expect("uuid")
}

/// Rows of any table whose text mentions `needle`. The audit trail is left
/// out: it is append-only, and names photos and items by random ids alone.
async fn mentions(h: &Harness, needle: &str) -> Vec<String> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'audit_log'")
            .fetch_all(&h.pool)
            .await
            .expect("tables");
    let mut found = Vec::new();
    for t in tables {
        let sql = format!("SELECT count(*) FROM \"{t}\" x WHERE x::text LIKE '%' || $1 || '%'");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(needle).fetch_one(&h.pool).await.expect("count");
        if n > 0 {
            found.push(format!("{t}: {n}"));
        }
    }
    found
}

#[tokio::test]
async fn erase_removes_a_person_from_postgres_and_the_store_and_keeps_a_shared_photo() {
    let stack = Stack::shared();
    let h = Harness::start_with(&stack, |c| c.pseudonym.key = Some(KEY.parse().expect("secret"))).await;
    let token = h.device("clinic").await;
    let (s1, s2, other) = (study(&h, &token, "P-ERASE").await, study(&h, &token, "P-ERASE").await, study(&h, &token, "P-KEEP").await);
    let shared = fixtures::jpeg(800, 600, 501);
    let gone = vec![
        photo(&h, &token, s1, shared.clone()).await,
        photo(&h, &token, s1, fixtures::jpeg(800, 600, 502)).await,
        photo(&h, &token, s2, fixtures::jpeg(800, 600, 503)).await,
    ];
    let kept = photo(&h, &token, other, shared).await;

    // The database holds pseudonyms, and the site can compute its own.
    let refs: Vec<String> = sqlx::query_scalar("SELECT patient_ref FROM studies ORDER BY patient_ref").fetch_all(&h.pool).await.expect("refs");
    assert!(refs.iter().all(|r| r.starts_with("ps1:")), "{refs:?}");
    let fundus = |args: &[&str]| {
        let mut c = h.command(env!("CARGO_BIN_EXE_fundus"), args);
        c.env("FUNDUS_PSEUDONYM_KEY", KEY);
        c
    };
    let pseudonym = run_ok(&mut fundus(&["admin", "pseudonym", "--site", "clinic", "P-ERASE"])).trim().to_owned();
    assert_eq!(refs.iter().filter(|r| **r == pseudonym).count(), 2, "{pseudonym} names the person's two studies");
    assert!(mentions(&h, "P-ERASE").await.is_empty(), "the reference as sent is stored nowhere");

    // Scored (threshold 0: every photo referable, reviewed, with a heatmap), viewed.
    let model = fixtures::untrained_model(&tests::scratch_dir("erase-model"), 0.0, 64);
    let (worker, _stop) = start_worker(&h, &model, |_| {});
    assert_eq!(worker.await.expect("join").expect("worker").done, 4);
    for id in &gone {
        db::audit(&h.pool, "grader", "photo.view", Some(&id.to_string()), json!({ "what": "photo" })).await.expect("audit");
    }
    let keys: Vec<(Uuid, String, Option<String>)> =
        sqlx::query_as("SELECT i.id, i.object_key, r.heatmap_key FROM images i JOIN results r ON r.image_id = i.id").fetch_all(&h.pool).await.expect("keys");
    let key_of = |id: Uuid| keys.iter().find(|k| k.0 == id).cloned().expect("keys of a photo");
    let mut ids: Vec<String> = vec![s1.to_string(), s2.to_string(), pseudonym.clone()];
    ids.extend(gone.iter().map(Uuid::to_string));
    let result_ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM results WHERE image_id = ANY($1)").bind(&gone).fetch_all(&h.pool).await.expect("results");
    let item_ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM review_items WHERE image_id = ANY($1)").bind(&gone).fetch_all(&h.pool).await.expect("items");
    assert_eq!((result_ids.len(), item_ids.len()), (3, 3), "scored and routed to review");
    // A grader's read of one of them (decisions are append-only but for erasure).
    let grader: Uuid = sqlx::query_scalar("INSERT INTO users (name, role, password_hash) VALUES ('g1', 'grader', '$argon2id$test') RETURNING id")
        .fetch_one(&h.pool)
        .await
        .expect("user");
    sqlx::query("INSERT INTO review_decisions (item_id, user_id, role, stage, decision, cdr, model_shown, started_at) VALUES ($1, $2, 'grader', 'read', 'referable', 0.7, true, now())")
        .bind(item_ids[0])
        .bind(grader)
        .execute(&h.pool)
        .await
        .expect("decision");
    assert!(sqlx::query("DELETE FROM review_decisions").execute(&h.pool).await.is_err(), "decisions are append-only");
    ids.extend(result_ids.iter().chain(&item_ids).map(Uuid::to_string));
    for id in &ids {
        assert!(!mentions(&h, id).await.is_empty(), "{id} is recorded before the erasure");
    }

    // Reviewers' previews, as the review service keeps them once a photo is viewed.
    for id in gone.iter().chain([&kept]) {
        for key in store::preview_keys(id) {
            h.store.put(&key, bytes::Bytes::from_static(b"preview")).await.expect("preview");
        }
    }
    let out = run_ok(&mut fundus(&["admin", "erase", "--patient", "P-ERASE", "--site", "clinic", "--by", "dpo"]));
    assert!(out.contains("erased 2 studies, 3 photos, 3 results, 3 review items"), "{out}");

    for id in &ids {
        assert_eq!(mentions(&h, id).await, Vec::<String>::new(), "{id} is still recorded");
    }
    // The audit trail never held the reference, in either form.
    let audit: Vec<String> = sqlx::query_scalar("SELECT x::text FROM audit_log x").fetch_all(&h.pool).await.expect("audit");
    assert!(audit.iter().all(|a| !a.contains(&pseudonym) && !a.contains("P-ERASE")), "{audit:?}");
    let objects = h.objects().await;
    for &id in &gone[1..] {
        let (_, raw, heatmap) = key_of(id);
        assert!(!objects.iter().any(|o| o.ends_with(&raw)), "{raw} is still stored");
        let heatmap = heatmap.as_deref().expect("heatmap");
        assert!(!objects.iter().any(|o| o.ends_with(heatmap)), "the heatmap is still stored");
        assert!(!objects.iter().any(|o| o.ends_with(&store::heatmap_box_key(heatmap))), "the heatmap's box is still stored");
    }
    for id in &gone {
        assert!(!objects.iter().any(|o| o.contains(&format!("previews/{id}"))), "a preview of {id} is still stored");
    }
    assert_eq!(objects.iter().filter(|o| o.contains(&format!("previews/{kept}"))).count(), 2, "the other person's previews stay");
    let (_, shared_raw, erased_heatmap) = key_of(gone[0]);
    assert!(!objects.iter().any(|o| o.ends_with(erased_heatmap.as_deref().expect("heatmap"))));
    assert!(objects.iter().any(|o| o.contains(&kept.to_string())), "the other person's heatmap stays");
    // The other person's photo, of the same bytes, is whole.
    assert_eq!(key_of(kept).1, shared_raw);
    h.store.get(&shared_raw).await.expect("the shared photo object stays");
    let (status, state) = h.get(Some(&token), &format!("/v1/images/{kept}")).await;
    assert_eq!((status, state["status"].as_str()), (reqwest::StatusCode::OK, Some("in_review")), "{state}");

    // Audited, with counts and no reference or ids.
    let (actor, detail): (String, serde_json::Value) =
        sqlx::query_as("SELECT actor, detail FROM audit_log WHERE action = 'patient.erase'").fetch_one(&h.pool).await.expect("audit entry");
    assert_eq!(actor, "dpo");
    assert_eq!((detail["studies"].as_i64(), detail["images"].as_i64(), detail["shared_objects_kept"].as_i64()), (Some(2), Some(3), Some(1)), "{detail}");
    // Again: nothing left to erase, and it says so.
    let again = run_ok(&mut fundus(&["admin", "erase", "--patient", "P-ERASE", "--site", "clinic"]));
    assert!(again.contains("erased 0 studies") && again.contains("no study of this person"), "{again}");
    let unknown = fundus(&["admin", "erase", "--patient", "P-ERASE", "--site", "nowhere"]).output().expect("run");
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("no site named \"nowhere\""));
}
