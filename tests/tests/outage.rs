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
