//! `fundus admin store copy`: a populated Garage store moved to Azurite, each
//! object the same bytes on arrival; a resumed copy writes only what is
//! missing; `--verify` finds an object that differs; and a worker scores the
//! photos from the new store once the old one is gone. Every run, a refused
//! one too, is in the audit trail, without the stores' keys.

use std::process::Command;

use tests::stores::Backend;
use tests::{Harness, Stack, fixtures, start_worker_on};

const BIN: &str = env!("CARGO_BIN_EXE_fundus");

/// The copy command with the source's settings and the destination's Azure ones.
fn copy(h: &Harness, to: &store::StoreArgs, extra: &[&str]) -> Command {
    let mut args = vec!["admin", "store", "copy", "--from", h.config.store.store_url.as_str(), "--to", to.store_url.as_str()];
    args.extend_from_slice(extra);
    let mut c = h.command(BIN, &args);
    c.envs(to.env().into_iter().filter(|(k, _)| k.starts_with("FUNDUS_AZURE_")));
    c
}

/// The audit trail's entries about store copies, oldest first.
async fn audit_of_copies(h: &Harness) -> Vec<(String, serde_json::Value)> {
    sqlx::query_as("SELECT action, detail FROM audit_log WHERE action LIKE 'store.%' ORDER BY id")
        .fetch_all(&h.pool)
        .await
        .expect("audit_log")
}

#[tokio::test]
async fn a_store_moves_from_garage_to_azurite_and_the_worker_scores_from_it() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    for (bytes, kind) in [(fixtures::jpeg(1024, 768, 81), "image/jpeg"), (fixtures::png(800, 600, 82), "image/png"), (fixtures::jpeg(1024, 768, 83), "image/jpeg")] {
        let (s, body) = h.send(h.upload(&token, study, bytes, kind)).await;
        assert_eq!(s, 201, "{body}");
    }
    h.store.put("derived/previews/some.jpg", bytes::Bytes::from_static(b"a derived file")).await.expect("put");
    let keys = h.store.list("").await.expect("list");
    assert_eq!(keys.len(), 4);

    let to_args = Backend::Azurite.args(&stack, &format!("copy-{}", uuid::Uuid::new_v4().simple()));
    let to = store::Store::open(&to_args).expect("destination");
    let (ok, text) = tests::run(&mut copy(&h, &to_args, &[]));
    assert!(ok, "{text}");
    assert!(text.contains("4 objects in the source: 4 copied"), "{text}");
    assert_eq!(to.list("").await.expect("list"), keys);
    for k in &keys {
        assert_eq!(to.get(k).await.expect("copied"), h.store.get(k).await.expect("source"), "{k}");
    }
    // In the audit trail: which stores, then what came of it.
    let trail = audit_of_copies(&h).await;
    assert_eq!(trail.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["store.copy", "store.copy.end"], "{trail:?}");
    let (start, end) = (&trail[0].1, &trail[1].1);
    assert!(start["from"].as_str().is_some_and(|d| d.contains(&h.config.store.store_url)), "{start}");
    assert!(start["to"].as_str().is_some_and(|d| d.contains(&to_args.store_url)), "{start}");
    assert_eq!((end["outcome"]["objects"].as_u64(), end["outcome"]["copied"].as_u64()), (Some(4), Some(4)), "{end}");
    let secret = to_args.env().into_iter().find(|(k, _)| *k == "FUNDUS_AZURE_ACCESS_KEY").expect("an Azure key").1;
    assert!(!format!("{trail:?}").contains(&secret), "the audit trail holds a store's key");

    // Interrupted half-way, as far as the destination can tell: two are missing.
    to.delete(&keys[0]).await.expect("delete");
    to.delete(&keys[3]).await.expect("delete");
    let (ok, text) = tests::run(&mut copy(&h, &to_args, &[]));
    assert!(ok && text.contains("2 copied") && text.contains("2 already there"), "{text}");
    let (ok, text) = tests::run(&mut copy(&h, &to_args, &["--verify"]));
    assert!(ok && text.contains("4 verified"), "{text}");

    // Same size, other bytes: only a comparison of hashes sees it.
    let original = to.get(&keys[1]).await.expect("get");
    let mut flipped = original.to_vec();
    flipped[100] ^= 0xff;
    to.put(&keys[1], flipped.into()).await.expect("put");
    let (ok, text) = tests::run(&mut copy(&h, &to_args, &["--verify"]));
    assert!(!ok && text.contains("store_copy_mismatch") && text.contains(&keys[1]), "{text}");
    to.put(&keys[1], original).await.expect("put back");

    // The same store twice, or one inside the other, is refused.
    let mut same = to_args.clone();
    same.store_url = h.config.store.store_url.clone();
    let (ok, text) = tests::run(&mut copy(&h, &same, &[]));
    assert!(!ok && text.contains("store_copy_overlap"), "{text}");
    let mut inside = to_args.clone();
    inside.store_url = format!("{}/backup/", h.config.store.store_url);
    let (ok, text) = tests::run(&mut copy(&h, &inside, &[]));
    assert!(!ok && text.contains("store_copy_overlap"), "{text}");
    let trail = audit_of_copies(&h).await;
    let (action, refused) = trail.last().expect("audited");
    assert!(action == "store.copy.end" && refused["outcome"]["error"].as_str().is_some_and(|e| e.contains("store_copy_overlap")), "{trail:?}");
    assert_eq!(trail.iter().filter(|(a, _)| a == "store.verify").count(), 2, "{trail:?}");

    // A raw photo whose bytes do not hash to its name is reported, not copied.
    let forged = store::raw_key(&"cd".repeat(32), "jpg");
    h.store.put(&forged, bytes::Bytes::from_static(b"not the photo it names")).await.expect("put");
    let (ok, text) = tests::run(&mut copy(&h, &to_args, &[]));
    assert!(!ok && text.contains("store_copy_corrupt_source") && text.contains(&forged), "{text}");
    assert!(!to.exists(&forged).await.expect("head"), "the forged photo reached the destination");
    h.store.delete(&forged).await.expect("delete");

    // A derived file rewritten at the same size is copied again (compared by hash).
    h.store.put("derived/previews/some.jpg", bytes::Bytes::from_static(b"a derived fil3")).await.expect("put");
    let (ok, text) = tests::run(&mut copy(&h, &to_args, &[]));
    assert!(ok && text.contains("1 copied"), "{text}");
    assert_eq!(&to.get("derived/previews/some.jpg").await.expect("get")[..], b"a derived fil3");

    // The old store is emptied; the worker reads from the new one alone.
    for k in &keys {
        h.store.delete(k).await.expect("delete");
    }
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.0, 64);
    let (worker, _stop) = start_worker_on(&h, to.clone(), &model, |_| {});
    let summary = worker.await.expect("join").expect("worker");
    assert_eq!((summary.done, summary.dead), (3, 0));
    let heatmaps: Vec<Option<String>> = sqlx::query_scalar("SELECT heatmap_key FROM results").fetch_all(&h.pool).await.expect("results");
    let heatmaps: Vec<String> = heatmaps.into_iter().flatten().collect();
    assert!(!heatmaps.is_empty(), "threshold 0 draws heatmaps");
    for k in heatmaps {
        to.get(&k).await.expect("the heatmap was written to the new store");
    }
}
