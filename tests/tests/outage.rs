//! Outages of the real services under a running server: requests fail fast
//! with 503 and leave nothing half-written, and the server recovers by itself
//! once the service is back. Each test runs on a stack of its own.

use reqwest::StatusCode;
use tests::{Harness, Stack, fixtures};

#[tokio::test]
async fn s3_outage_gives_503_and_no_rows_then_recovers() {
    let stack = Stack::dedicated("s3-outage");
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (s, _) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 1), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED);

    stack.stop("garage");
    let started = std::time::Instant::now();
    let (s, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 2), "image/jpeg")).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "an outage must fail fast");
    assert_eq!(h.count("images").await, 1);
    assert_eq!(h.count("jobs").await, 1);
    let (s, ready) = h.get(None, "/readyz").await;
    assert_eq!((s, ready["store"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));

    stack.up();
    let (s, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 2), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(h.count("images").await, 2);
    assert_eq!(h.objects().await.len(), 2);
}

#[tokio::test]
async fn postgres_outage_gives_503_and_no_objects_then_recovers() {
    let stack = Stack::dedicated("pg-outage");
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (s, _) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 3), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED);

    stack.stop("postgres");
    let (s, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 4), "image/jpeg")).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("database_unavailable")), "{body}");
    assert_eq!(h.objects().await.len(), 1, "the refused upload must leave no object");
    let (s, ready) = h.get(None, "/readyz").await;
    assert_eq!((s, ready["database"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));

    stack.up();
    let (s, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 4), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(h.count("images").await, 2);
    assert_eq!(h.objects().await.len(), 2);
}

/// Postgres goes down after the photo is in the store and before its row
/// commits: the upload answers 503, no row or job is left, the object is an
/// orphan the sweep reclaims once its reservation runs out, and a retry
/// after the outage stores the photo.
#[tokio::test]
async fn postgres_outage_at_commit_gives_503_and_leaves_only_an_orphan_the_sweep_reclaims() {
    use sqlx::Connection as _;
    let stack = Stack::dedicated("pg-commit-outage");
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (s, _) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 5), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED);

    // Hold the insert of the next image row: the upload stops at its commit.
    let mut blocker = sqlx::PgConnection::connect(h.config.db.database_url.expose()).await.expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE images IN SHARE MODE").execute(&mut blocker).await.expect("lock");
    let upload = {
        let req = h.upload(&token, study, fixtures::jpeg(1024, 768, 6), "image/jpeg");
        tokio::spawn(async move { req.send().await.expect("answered").json::<serde_json::Value>().await.expect("json") })
    };
    let t = std::time::Instant::now();
    while h.objects().await.len() < 2 {
        assert!(t.elapsed() < std::time::Duration::from_secs(30), "the upload never reached the store");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stack.stop("postgres");
    let body = upload.await.expect("join");
    assert_eq!(body["code"].as_str(), Some("database_unavailable"), "{body}");
    drop(blocker);

    stack.up();
    assert_eq!((h.count("images").await, h.count("jobs").await), (1, 1), "no row of the refused upload");
    let objects = h.objects().await;
    assert_eq!(objects.len(), 2, "its object stays until the sweep may take it: {objects:?}");
    let r = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::ZERO).await.expect("sweep");
    assert_eq!(r.removed, 0, "reserved: an upload of it might still commit");
    sqlx::query("UPDATE object_reservations SET expires_at = now() - interval '1 second'").execute(&h.pool).await.expect("expire");
    let r = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::ZERO).await.expect("sweep");
    assert_eq!(r.removed, 1, "the orphan goes");
    let (s, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 6), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(h.objects().await.len(), 2);
}
