//! One suite over every store Fundus runs on — a local folder, Garage (S3),
//! Azurite (Azure Blob) and fake-gcs-server (Google Cloud Storage), all real
//! servers — with each case run once per backend: the store's own operations,
//! the upload → score → heatmap path with its content-addressed retries and
//! the orphan sweep, and an outage (503 at upload, waited out by the worker).

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use tests::stores::{Backend, StoreNode};
use tests::{Harness, Stack, fixtures, start_worker};
use uuid::Uuid;

/// `case` once per backend, as `case::folder`, `case::garage`, `case::azurite`, `case::fake_gcs`.
macro_rules! on_every_store {
    ($case:ident) => {
        mod $case {
            use super::Backend;
            #[tokio::test]
            async fn folder() {
                super::$case(Backend::Folder).await
            }
            #[tokio::test]
            async fn garage() {
                super::$case(Backend::Garage).await
            }
            #[tokio::test]
            async fn azurite() {
                super::$case(Backend::Azurite).await
            }
            #[tokio::test]
            async fn fake_gcs() {
                super::$case(Backend::FakeGcs).await
            }
        }
    };
}

on_every_store!(objects);
on_every_store!(upload_score_heatmap);
on_every_store!(outage);

fn corner() -> String {
    format!("suite-{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// Put, get, head, delete and list, as the rest of Fundus uses them.
async fn objects(backend: Backend) {
    let stack = Stack::shared();
    let store = store::Store::open(&backend.args(&stack, &corner())).expect("opening the store");
    assert!(store.ping().await, "{} does not answer", store.describe);
    let (a, b) = (store::raw_key(&"a1".repeat(32), "jpg"), "derived/previews/x.jpg".to_owned());
    assert!(!store.exists(&a).await.expect("head"));
    let e = store.get(&a).await.expect_err("nothing there yet");
    assert!(e.is_not_found(), "a missing object is not an outage: {e}");

    assert!(store.put_if_absent(&a, Bytes::from_static(b"first")).await.expect("put"));
    assert!(!store.put_if_absent(&a, Bytes::from_static(b"second")).await.expect("put again"), "the key is taken");
    assert_eq!(&store.get(&a).await.expect("get")[..], b"first", "content-addressed: the first write stands");
    store.put(&b, Bytes::from_static(b"one")).await.expect("put");
    store.put(&b, Bytes::from_static(b"two")).await.expect("replace");
    assert_eq!(&store.get(&b).await.expect("get")[..], b"two");
    assert!(store.exists(&b).await.expect("head"));

    assert_eq!(store.list("").await.expect("list"), vec![b.clone(), a.clone()], "every key, sorted");
    assert_eq!(store.list("raw").await.expect("list"), vec![a.clone()]);
    let later = SystemTime::now() + Duration::from_secs(600);
    let earlier = SystemTime::now() - Duration::from_secs(600);
    assert_eq!(store.list_older("raw", later).await.expect("list").len(), 1);
    assert!(store.list_older("raw", earlier).await.expect("list").is_empty(), "written just now");

    store.delete(&a).await.expect("delete");
    store.delete(&a).await.expect("deleting what is gone is no error");
    assert!(!store.exists(&a).await.expect("head"));
    assert_eq!(store.list("").await.expect("list"), vec![b.clone()]);
    store.delete(&b).await.expect("delete");
    assert!(store.list("").await.expect("list").is_empty());
}

/// Photos uploaded to the backend, retried, scored by a worker that fetches
/// them from it and writes heatmaps back; an orphan swept from it.
async fn upload_score_heatmap(backend: Backend) {
    let stack = Stack::shared();
    let args = backend.args(&stack, &corner());
    let h = Harness::start_with(&stack, |c| c.store = args).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (jpeg, png) = (fixtures::jpeg(1024, 768, 61), fixtures::png(800, 600, 62));
    let (s, first) = h.send(h.upload(&token, study, jpeg.clone(), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, again) = h.send(h.upload(&token, study, jpeg, "image/jpeg")).await;
    assert_eq!(s, StatusCode::OK, "a retry is answered with the photo it repeats: {again}");
    assert_eq!(again["id"], first["id"]);
    let (s, body) = h.send(h.upload(&token, study, png, "image/png")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!((h.count("images").await, h.objects().await.len()), (2, 2), "one object per photo");

    let orphan = store::raw_key(&"ab".repeat(32), "jpg");
    h.store.put_if_absent(&orphan, Bytes::from_static(b"orphan")).await.expect("put");
    let r = ingest::sweep::sweep(&h.pool, &h.store, Duration::ZERO).await.expect("sweep");
    assert_eq!((r.examined, r.removed), (3, 1));
    assert!(!h.objects().await.iter().any(|k| k.ends_with(&orphan)), "the orphan went, the photos stay");

    // Threshold 0: every gradable photo goes to review, with a heatmap.
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.0, 64);
    let (worker, _stop) = start_worker(&h, &model, |_| {});
    assert_eq!(worker.await.expect("join").expect("worker").done, 2);
    let keys: Vec<Option<String>> = sqlx::query_scalar("SELECT heatmap_key FROM results").fetch_all(&h.pool).await.expect("results");
    assert_eq!(keys.len(), 2);
    let keys: Vec<String> = keys.into_iter().flatten().collect();
    assert!(!keys.is_empty(), "no heatmap was drawn");
    for k in keys {
        let png = h.store.get(&k).await.expect("the heatmap is in the store");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let b = h.store.get(&store::heatmap_box_key(&k)).await.expect("its box beside it");
        assert!(store::parse_box(&b).is_some(), "{b:?}");
    }
}

/// The store goes down under a running server and a worker: uploads are
/// refused quickly with 503 and leave nothing, the worker waits, and both
/// carry on once the store is back.
async fn outage(backend: Backend) {
    let stack = Stack::shared();
    let node = StoreNode::start(backend);
    let args = node.args.under(&corner());
    let h = Harness::start_with(&stack, |c| c.store = args).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (s, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 71), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    node.stop();
    let started = Instant::now();
    let (s, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 72), "image/jpeg")).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(30), "an outage must fail fast: {:?}", started.elapsed());
    assert_eq!((h.count("images").await, h.count("jobs").await), (1, 1), "the refused upload left a row");
    let (s, ready) = h.get(None, "/readyz").await;
    assert_eq!((s, ready["store"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));

    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    let (worker, _stop) = start_worker(&h, &model, |c| c.patience = Duration::from_secs(120));
    // The worker has the job and cannot fetch its photo.
    h.wait_for_count("SELECT count(*) FROM jobs WHERE state = 'running'", 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!worker.is_finished(), "the worker gave up during the outage");
    assert_eq!(h.count("results").await, 0);

    node.restart();
    let summary = worker.await.expect("join").expect("worker");
    let s = (summary.done, summary.retried, summary.dead, summary.released);
    assert_eq!(s, (1, 0, 0, 0), "the worker waited the outage out, and it cost the photo nothing");
    let (s, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 72), "image/jpeg")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(h.objects().await.iter().filter(|k| k.starts_with("raw/")).count(), 2, "both photos");
}
