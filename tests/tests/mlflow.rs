//! The `mlflow` client against the real MLflow tracking server of the local stack: tracking,
//! batched logging, artifacts (a large one streamed), the registry with aliases, and errors.
//! Each test works in an experiment (and registered model) of its own.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mlflow::{Client, Error, Metric, Param, Run, RunStatus, Tag};
use sha2::{Digest, Sha256};
use tests::Stack;
use uuid::Uuid;

fn unique(what: &str) -> String {
    format!("test-{what}-{}", Uuid::new_v4().simple())
}

fn client() -> Client {
    let stack = Stack::shared();
    Client::new(stack.get("FUNDUS_MLFLOW_URI")).expect("client")
}

/// A new run in an experiment of its own.
async fn new_run(client: &Client, what: &str) -> Run {
    let exp = client.get_or_create_experiment(&unique(what)).await.expect("experiment");
    client.create_run(&exp.experiment_id, Some(what), &[]).await.expect("run")
}

/// A folder under the system temp dir, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique("mlflow"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes that do not compress (xorshift), written in 1 MiB pieces.
fn write_noise(path: &Path, len: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let n = left.min(buf.len());
        out.write_all(&buf[..n]).expect("write");
        left -= n;
    }
    out.flush().expect("flush");
}

fn sha256_of(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return hex::encode(hash.finalize());
        }
        hash.update(&buf[..n]);
    }
}

#[tokio::test]
async fn get_or_create_experiment_twice_gives_the_same_one() {
    let client = client();
    let name = unique("exp");
    assert!(client.experiment_by_name(&name).await.expect("lookup").is_none());
    let first = client.get_or_create_experiment(&name).await.expect("create");
    let second = client.get_or_create_experiment(&name).await.expect("get");
    assert_eq!(first.experiment_id, second.experiment_id);
    assert_eq!(second.name, name);
    assert_eq!(second.lifecycle_stage, "active");
}

#[tokio::test]
async fn a_batch_larger_than_one_request_is_all_logged() {
    let client = client();
    let exp = client.get_or_create_experiment(&unique("batch")).await.expect("experiment");
    let run =
        client.create_run(&exp.experiment_id, Some("big-batch"), &[Tag::new("purpose", "test")]).await.expect("run");
    let id = &run.info.run_id;

    // 150 params (the server takes 100 a request), 120 tags (100), 2500 metric points (1000).
    let params: Vec<_> = (0..150).map(|i| Param::new(format!("param_{i:03}"), format!("value {i}"))).collect();
    let tags: Vec<_> = (0..120).map(|i| Tag::new(format!("tag.{i}"), "x".repeat(i))).collect();
    let keys = ["loss", "val/auc", "lr", "epoch time", "grad:norm"];
    let mut metrics = Vec::new();
    for step in 0..500 {
        for (k, key) in keys.iter().enumerate() {
            metrics.push(Metric::new(*key, step as f64 * 0.5 + k as f64, step));
        }
    }
    assert_eq!(metrics.len(), 2500);
    client.log_batch(id, &params, &metrics, &tags).await.expect("log_batch");

    let back = client.get_run(id).await.expect("get run");
    assert_eq!(back.data.params.len(), 150);
    for p in &params {
        assert_eq!(back.data.param(&p.key), Some(p.value.as_str()), "{}", p.key);
    }
    for t in &tags {
        assert_eq!(back.data.tag(&t.key), Some(t.value.as_str()), "{}", t.key);
    }
    assert_eq!(back.data.tag("purpose"), Some("test"));
    assert_eq!(back.data.tag("mlflow.runName"), Some("big-batch"));
    for (k, key) in keys.iter().enumerate() {
        let last = back.data.metric(key).unwrap_or_else(|| panic!("metric {key}"));
        assert_eq!((last.step, last.value), (499, 499.0 * 0.5 + k as f64), "{key}");
        let history = client.metric_history(id, key).await.expect("history");
        assert_eq!(history.len(), 500, "{key}");
    }

    let runs = client.runs_of_experiment(&exp.experiment_id).await.expect("search");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].info.run_id, *id);
    assert_eq!(runs[0].data.param("param_149"), Some("value 149"));
}

#[tokio::test]
async fn finishing_a_run_sets_its_status_and_end_time() {
    let client = client();
    let run = new_run(&client, "finish").await;
    assert_eq!(run.info.status, RunStatus::Running);
    assert_eq!(run.info.end_time, None);

    let info = client.finish_run(&run.info.run_id, RunStatus::Killed).await.expect("finish");
    assert_eq!(info.status, RunStatus::Killed);
    let back = client.get_run(&run.info.run_id).await.expect("get run");
    assert_eq!(back.info.status, RunStatus::Killed);
    let (start, end) = (back.info.start_time.expect("start"), back.info.end_time.expect("end"));
    assert!(end >= start, "end {end} before start {start}");

    let info = client.finish_run(&run.info.run_id, RunStatus::Finished).await.expect("finish again");
    assert_eq!(info.status, RunStatus::Finished);
    assert!(matches!(client.finish_run(&run.info.run_id, RunStatus::Running).await, Err(Error::Invalid(_))));
}

#[tokio::test]
async fn artifacts_go_up_and_come_back_byte_identical() {
    let client = client();
    let run = new_run(&client, "artifacts").await;
    assert!(run.info.artifact_uri.starts_with("mlflow-artifacts:"), "{}", run.info.artifact_uri);
    let dir = TempDir::new();

    let small = dir.0.join("small.json");
    std::fs::write(&small, br#"{"threshold": 0.42}"#).expect("write");
    let large = dir.0.join("large.bin");
    write_noise(&large, 64 << 20);

    assert_eq!(client.upload_artifact(&run.info, "data/small.json", &small).await.expect("small"), 19);
    assert_eq!(client.upload_artifact(&run.info, "data/large.bin", &large).await.expect("large"), 64 << 20);
    client.upload_artifact_bytes(&run.info, "notes/read me.txt", b"hello".to_vec()).await.expect("bytes");

    let root = client.list_artifacts(&run.info, None).await.expect("list root");
    let mut names: Vec<_> = root.iter().map(|f| (f.path.as_str(), f.is_dir)).collect();
    names.sort();
    assert_eq!(names, [("data", true), ("notes", true)]);
    let mut files = client.list_artifacts(&run.info, Some("data")).await.expect("list data");
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let listed: Vec<_> = files.iter().map(|f| (f.path.as_str(), f.is_dir, f.file_size)).collect();
    assert_eq!(listed, [("data/large.bin", false, Some(64 << 20)), ("data/small.json", false, Some(19))]);
    assert!(client.list_artifacts(&run.info, Some("nothing/here")).await.expect("list missing").is_empty());

    for (name, original) in [("small.json", &small), ("large.bin", &large)] {
        let back = dir.0.join(format!("back-{name}"));
        let n = client.download_artifact(&run.info, &format!("data/{name}"), &back).await.expect("download");
        assert_eq!(n, std::fs::metadata(original).expect("stat").len());
        assert_eq!(sha256_of(&back), sha256_of(original), "{name}");
    }
    assert_eq!(client.read_artifact(&run.info, "notes/read me.txt").await.expect("read"), b"hello");

    let missing = dir.0.join("missing");
    let err = client.download_artifact(&run.info, "data/none.bin", &missing).await.expect_err("missing artifact");
    assert!(err.is_not_found(), "{err}");
    assert!(!missing.exists() && !dir.0.join("missing.partial").exists());

    // Also keeps the stack's artifact folder from growing by 64 MiB a test run.
    client.delete_artifacts(&run.info, "data").await.expect("delete");
    let left = client.list_artifacts(&run.info, None).await.expect("list after delete");
    assert_eq!(left.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["notes"]);
}

#[tokio::test]
async fn an_alias_points_at_a_version_and_moves() {
    let client = client();
    let run = new_run(&client, "registry").await;
    client.upload_artifact_bytes(&run.info, "model/weights.bin", vec![1, 2, 3]).await.expect("upload");
    let name = unique("model");
    client.create_registered_model(&name).await.expect("create model");
    client.create_registered_model(&name).await.expect("create model again");

    let source = run.info.artifact_location("model");
    let v1 = client.create_model_version(&name, &source, Some(&run.info.run_id)).await.expect("v1");
    assert_eq!(
        (v1.version.as_str(), v1.source.as_str(), v1.run_id.as_str()),
        ("1", source.as_str(), run.info.run_id.as_str())
    );
    client.set_alias(&name, "champion", &v1.version).await.expect("set alias");
    let champion = client.version_by_alias(&name, "champion").await.expect("resolve");
    assert_eq!(champion.version, "1");
    assert_eq!(champion.aliases, ["champion"]);

    let v2 = client.create_model_version(&name, &source, Some(&run.info.run_id)).await.expect("v2");
    assert_eq!(v2.version, "2");
    client.set_alias(&name, "champion", &v2.version).await.expect("move alias");
    assert_eq!(client.version_by_alias(&name, "champion").await.expect("resolve").version, "2");
    assert!(client.model_version(&name, "1").await.expect("v1").aliases.is_empty());
    assert_eq!(client.model_version(&name, "2").await.expect("v2").status, "READY");

    client.delete_alias(&name, "champion").await.expect("delete alias");
    let err = client.version_by_alias(&name, "champion").await.expect_err("alias gone");
    assert_eq!(err.error_code(), Some(mlflow::INVALID_PARAMETER_VALUE), "{err}");
    let err = client.model_version(&name, "3").await.expect_err("no version 3");
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn a_missing_run_is_not_found_with_the_servers_code() {
    let client = client();
    let err = client.get_run(&Uuid::new_v4().simple().to_string()).await.expect_err("no such run");
    match &err {
        Error::Api { status, error_code, message } => {
            assert_eq!((*status, error_code.as_str()), (404, mlflow::RESOURCE_DOES_NOT_EXIST));
            assert!(message.contains("not found"), "{message}");
        }
        other => panic!("expected the server's error, got {other:?}"),
    }
    assert!(err.is_not_found());
    assert!(!err.is_already_exists());
}

#[tokio::test]
async fn an_overlong_param_is_refused_before_anything_is_sent() {
    let client = client();
    let run = new_run(&client, "overlong").await;
    let params = [Param::new("ok", "fine"), Param::new("notes", "n".repeat(mlflow::MAX_PARAM_VALUE_CHARS + 1))];
    let metrics = [Metric::new("loss", 1.0, 0)];
    let err = client.log_batch(&run.info.run_id, &params, &metrics, &[]).await.expect_err("too long");
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("\"notes\"") && msg.contains("6001") && msg.contains("6000"), "{msg}");

    let back = client.get_run(&run.info.run_id).await.expect("get run");
    assert!(back.data.params.is_empty() && back.data.metrics.is_empty(), "{:?}", back.data);
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_such() {
    // A port that was free a moment ago and that nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let uri = format!("http://127.0.0.1:{port}");
    let client = Client::new(&uri).expect("client");
    let err = client.get_or_create_experiment("anything").await.expect_err("nothing listens");
    assert!(err.is_unreachable(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("the MLflow tracking server at {uri} could not be reached")), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}
