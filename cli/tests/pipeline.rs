//! The scoring pipeline against the real stack: upload → worker → result and
//! review item; a worker killed with -9 mid-batch; service outages during a
//! batch; a poison photo; SIGTERM; batch screening with its report; offline
//! scoring; and an MLflow alias moving under a running worker.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::{Harness, Stack, fixtures, run_ok, start_worker};
use uuid::Uuid;

fn fundus(h: &Harness, args: &[&str]) -> Command {
    h.command(env!("CARGO_BIN_EXE_fundus"), args)
}

async fn scalar(h: &Harness, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&h.pool).await.expect(sql)
}

/// Uploads `n` synthetic photos through the API; returns their ids.
async fn upload(h: &Harness, n: usize, seed: u64) -> Vec<Uuid> {
    let token = h.device("clinic").await;
    let study = h.study(&token).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, body) = h.send(h.upload(&token, study, fixtures::jpeg(800, 600, seed + i as u64), "image/jpeg")).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().expect("id").parse().expect("uuid"));
    }
    ids
}

async fn wait_for(h: &Harness, sql: &str, want: i64, limit: Duration) {
    h.wait_for_count(sql, want, limit).await
}

/// Every job done, one result per photo, no result twice.
async fn assert_exactly_once(h: &Harness, n: i64) {
    assert_eq!(scalar(h, "SELECT count(*) FROM jobs WHERE state = 'done'").await, n);
    assert_eq!(scalar(h, "SELECT count(*) FROM results").await, n);
    assert_eq!(scalar(h, "SELECT count(DISTINCT image_id) FROM results").await, n);
}

#[tokio::test]
async fn an_upload_is_scored_routed_to_review_with_a_heatmap() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.0, 64);
    let ids = upload(&h, 3, 100).await;
    let (worker, _stop) = start_worker(&h, &model, |_| {});
    let summary = worker.await.expect("join").expect("worker");
    assert_eq!(summary.done, 3);
    assert_exactly_once(&h, 3).await;
    let token = h.device("clinic2").await;
    for id in ids {
        let (label, reason, key): (String, String, Option<String>) = sqlx::query_as(
            "SELECT r.label, ri.reason, r.heatmap_key FROM results r JOIN review_items ri ON ri.result_id = r.id WHERE r.image_id = $1",
        )
        .bind(id)
        .fetch_one(&h.pool)
        .await
        .expect("a result with a review item");
        // Threshold 0: every gradable photo is referable.
        assert!(matches!((label.as_str(), reason.as_str()), ("referable", "referable") | ("ungradable", "ungradable")), "{label}/{reason}");
        let png = h.store.get(key.as_deref().expect("heatmap key")).await.expect("heatmap object");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let img = image::load_from_memory(&png).expect("heatmap decodes");
        assert_eq!((img.width(), img.height()), (64, 64));
        // Beside it, where it lies on the photo: the field's square, centred.
        let b = h.store.get(&store::heatmap_box_key(key.as_deref().expect("key"))).await.expect("heatmap box");
        let b: Vec<f32> = std::str::from_utf8(&b).expect("text").split(',').map(|x| x.parse().expect("a fraction")).collect();
        assert!(b.len() == 4 && (b[0] + b[2] / 2.0 - 0.5).abs() < 0.05 && (b[1] + b[3] / 2.0 - 0.5).abs() < 0.05, "{b:?}");
        let status: String = sqlx::query_scalar("SELECT status FROM images WHERE id = $1").bind(id).fetch_one(&h.pool).await.expect("status");
        assert_eq!(status, "in_review");
        // Another site's device sees nothing of it.
        let (code, _) = h.get(Some(&token), &format!("/v1/images/{id}")).await;
        assert_eq!(code, 404, "as if it did not exist");
    }
    let version: String = sqlx::query_scalar("SELECT version FROM model_versions").fetch_one(&h.pool).await.expect("model version");
    assert!(version.starts_with("local-"), "{version}");
    // The result says what decided it: the model's threshold and the routing in force.
    let applied: (Option<f32>, Option<f32>, Option<f32>, f32) =
        sqlx::query_as("SELECT threshold, gradable_threshold, uncertainty_band, qa_rate FROM results").fetch_one(&h.pool).await.expect("result");
    // At threshold 0 the uncertain band (a factor in odds) has no room below it.
    assert_eq!(applied, (Some(0.0), Some(0.5), Some(0.0), 0.10));
    let digest: Option<String> = sqlx::query_scalar("SELECT digest FROM model_versions").fetch_one(&h.pool).await.expect("digest");
    assert_eq!(digest.map(|d| format!("local-{d}")), Some(version));
}

/// Photos scored together are finished together: fewer transactions than
/// photos, and still exactly one result each.
#[tokio::test]
async fn a_scored_batch_is_finished_in_few_transactions() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    upload(&h, 12, 300).await;
    let (worker, _stop) = start_worker(&h, &model, |_| {});
    let summary = worker.await.expect("join").expect("worker");
    assert_eq!(summary.done, 12, "{summary:?}");
    assert_exactly_once(&h, 12).await;
    assert!(summary.finish_transactions < summary.done, "one transaction per photo: {summary:?}");
}

#[tokio::test]
async fn a_poison_photo_is_dead_lettered_and_the_others_proceed() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    let ids = upload(&h, 4, 200).await;
    // Accepted at upload, then its object is damaged in the store.
    let key: String = sqlx::query_scalar("SELECT object_key FROM images WHERE id = $1").bind(ids[1]).fetch_one(&h.pool).await.expect("key");
    h.store.put(&key, bytes::Bytes::from_static(b"\xff\xd8\xff\xe0 not a photo any more")).await.expect("overwrite");
    let (worker, _stop) = start_worker(&h, &model, |_| {});
    let summary = worker.await.expect("join").expect("worker");
    assert_eq!((summary.done, summary.dead), (3, 1), "{summary:?}");
    let (state, attempts, error): (String, i32, Option<String>) =
        sqlx::query_as("SELECT state, attempts, last_error FROM jobs WHERE image_id = $1").bind(ids[1]).fetch_one(&h.pool).await.expect("job");
    assert_eq!((state.as_str(), attempts), ("dead", 5));
    assert!(error.as_deref().unwrap_or("").starts_with("digest_mismatch: "), "{error:?}");
    let status: String = sqlx::query_scalar("SELECT status FROM images WHERE id = $1").bind(ids[1]).fetch_one(&h.pool).await.expect("status");
    assert_eq!(status, "failed");
    assert_eq!(scalar(&h, "SELECT count(*) FROM results").await, 3);
    // It does not leave the clinical workflow: a person is asked to look.
    let (reason, state): (String, String) = sqlx::query_as("SELECT reason, state FROM review_items WHERE image_id = $1")
        .bind(ids[1])
        .fetch_one(&h.pool)
        .await
        .expect("a review item for the dead-lettered photo");
    assert_eq!((reason.as_str(), state.as_str()), ("scoring_failed", "open"));

    // The operator finds it, repairs the cause (the photo's own bytes back) and retries it.
    let listed = run_ok(&mut fundus(&h, &["admin", "jobs", "list", "--dead"]));
    assert!(listed.contains(&ids[1].to_string()) && listed.contains("digest_mismatch"), "{listed}");
    let job: i64 = sqlx::query_scalar("SELECT id FROM jobs WHERE image_id = $1").bind(ids[1]).fetch_one(&h.pool).await.expect("job id");
    h.store.put(&key, bytes::Bytes::from(fixtures::jpeg(800, 600, 201))).await.expect("repair");
    let out = run_ok(&mut fundus(&h, &["admin", "jobs", "retry", "--id", &job.to_string()]));
    assert!(out.contains("1 job(s) re-queued"), "{out}");
    let (state, attempts): (String, i32) =
        sqlx::query_as("SELECT state, attempts FROM jobs WHERE id = $1").bind(job).fetch_one(&h.pool).await.expect("job");
    assert_eq!((state.as_str(), attempts), ("queued", 0));
    assert_eq!(scalar(&h, "SELECT count(*) FROM audit_log WHERE action = 'job.retry'").await, 1);
    let (worker, _stop) = start_worker(&h, &model, |_| {});
    let summary = worker.await.expect("join").expect("worker");
    assert_eq!((summary.done, summary.dead), (1, 0), "{summary:?}");
    assert_eq!(scalar(&h, "SELECT count(*) FROM results").await, 4);
    assert_eq!(scalar(&h, "SELECT count(*) FROM review_items WHERE reason = 'scoring_failed'").await, 0, "the item went once scored");
    // A job that is not dead-lettered is not retried, and says so.
    let again = fundus(&h, &["admin", "jobs", "retry", "--id", &job.to_string()]).output().expect("run");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not dead-lettered"), "{}", String::from_utf8_lossy(&again.stderr));
}

/// A child process killed when dropped, so a failing test leaves no worker behind.
struct Proc(Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(h: &Harness, model: &Path, extra: &[&str]) -> Proc {
    let mut args = vec!["worker", "--model", model.to_str().expect("path"), "--cpu", "--poll-secs", "0.2", "--retry-secs", "0.05"];
    args.extend_from_slice(extra);
    Proc(fundus(h, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("starting a worker"))
}

#[tokio::test]
async fn kill_9_mid_batch_then_another_worker_scores_each_photo_exactly_once() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    let n = 60;
    upload(&h, n, 300).await;
    let mut first = spawn_worker(&h, &model, &["--lease-secs", "2", "--max-batch", "4", "--in-flight", "8", "--claim-batch", "4"]);
    wait_for(&h, "SELECT count(*) FROM jobs WHERE state = 'done'", 5, Duration::from_secs(60)).await;
    first.kill().expect("kill -9");
    let _ = first.wait();
    // A COMMIT the worker sent just before dying still lands: let Postgres
    // finish with its sessions before counting (nobody else can reclaim yet).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = scalar(&h, "SELECT count(*) FROM jobs WHERE state = 'running'").await;
    assert!(held > 0, "the killed worker held no job: nothing was interrupted");
    let done_before = scalar(&h, "SELECT count(*) FROM jobs WHERE state = 'done'").await;
    assert!(done_before < n as i64, "all done before the kill");
    // The second worker puts the expired leases back and finishes the batch.
    let out = fundus(&h, &["worker", "--model", model.to_str().expect("path"), "--cpu", "--poll-secs", "0.2", "--exit-when-idle"]).output().expect("second worker");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_exactly_once(&h, n as i64).await;
    let retried = scalar(&h, "SELECT count(*) FROM jobs WHERE attempts = 2").await;
    assert_eq!(retried, held, "the interrupted jobs ran exactly once more");
    assert_eq!(scalar(&h, "SELECT count(*) FROM jobs WHERE attempts > 2").await, 0);
}

#[tokio::test]
async fn sigterm_stops_claiming_and_leaves_no_job_held() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    upload(&h, 30, 400).await;
    let mut w = spawn_worker(&h, &model, &["--max-batch", "2", "--in-flight", "4", "--claim-batch", "2", "--grace-secs", "10"]);
    wait_for(&h, "SELECT count(*) FROM jobs WHERE state = 'done'", 2, Duration::from_secs(60)).await;
    let t = Instant::now();
    Command::new("kill").args(["-TERM", &w.id().to_string()]).status().expect("kill -TERM");
    let status = w.wait().expect("wait");
    assert!(status.success(), "worker exit {status:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?} to stop", t.elapsed());
    assert_eq!(scalar(&h, "SELECT count(*) FROM jobs WHERE state = 'running'").await, 0);
    let done = scalar(&h, "SELECT count(*) FROM jobs WHERE state = 'done'").await;
    assert!(done < 30, "the worker went on after SIGTERM");
    // What it gave back was not counted as an attempt.
    assert_eq!(scalar(&h, "SELECT count(*) FROM jobs WHERE state = 'queued' AND attempts > 0").await, 0);
    let mut stderr = String::new();
    use std::io::Read;
    w.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read");
    assert!(stderr.contains("worker stopped"), "{stderr}");
}

#[tokio::test]
async fn batch_screening_registers_waits_reports_and_reruns() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let dir = tests::scratch_dir("batch");
    let model = fixtures::untrained_model(&dir.join("model"), 0.5, 64);
    let photos = fixtures::photo_files(&dir.join("photos"), 8, 500);
    let mut manifest = String::from("path,label,eye\n");
    for (i, p) in photos.iter().enumerate() {
        manifest += &format!("photos/{},{},{}\n", p.file_name().expect("name").to_string_lossy(), i % 2, if i % 2 == 0 { "left" } else { "" });
    }
    std::fs::write(dir.join("photos/broken.jpg"), b"\xff\xd8\xff not a JPEG").expect("broken");
    manifest += "photos/broken.jpg,0,\n";
    std::fs::write(dir.join("manifest.csv"), &manifest).expect("manifest");
    let report = dir.join("report");
    let m = dir.join("manifest.csv");
    // Every photo counts as gradable, so both labels reach the ROC.
    let w = spawn_worker(&h, &model, &["--gradable-threshold", "0"]);
    let text = run_ok(&mut fundus(&h, &["batch", "--manifest", m.to_str().expect("p"), "--report", report.to_str().expect("p"), "--timeout-secs", "120"]));
    assert!(text.contains("8 registered, 0 already registered, 1 rejected"), "{text}");
    let csv = std::fs::read_to_string(report.join("report.csv")).expect("report.csv");
    assert_eq!(csv.lines().count(), 1 + 9, "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("photos/broken.jpg,,rejected")), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.contains(",done,")).count(), 8, "{csv}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("Glaucoma scores") && html.contains("AUC"), "labels given: the HTML shows the ROC");
    assert!(html.contains("sensitivity</text>") && html.contains("1 − specificity"), "the ROC's axes are labelled");
    assert!(html.contains("id=operating-point"), "the operating point is marked");
    // Rates per site with their 95% interval, over the 8 scored photos.
    let referable = scalar(&h, "SELECT count(*) FROM results WHERE label = 'referable'").await as u64;
    let r = review::stats::wilson(referable, 8);
    let want = format!(
        "<td>batch</td><td>8</td><td>{:.1}% ({:.1}–{:.1}%)</td>",
        100.0 * r.value.expect("rate"),
        100.0 * r.low.expect("low"),
        100.0 * r.high.expect("high")
    );
    assert!(html.contains(&want), "{want} missing from the per-site table:\n{html}");
    // Photos sent to review are listed with links into the review UI.
    let routed: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT image_id FROM review_items").fetch_all(&h.pool).await.expect("items");
    assert!(!routed.is_empty(), "threshold 0.5 on an untrained net routes some photos");
    for id in routed {
        assert!(html.contains(&format!("href='http://127.0.0.1:8080/review/images/{id}'")), "no link to {id}");
    }
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report.join("summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["scored"], 8);
    assert_eq!(summary["rejected"], 1);
    // Batch jobs sit below phone uploads in the queue.
    assert_eq!(scalar(&h, "SELECT count(*) FROM jobs WHERE priority = 0").await, 8);
    // Running it again registers nothing new and reports the same photos.
    let again = run_ok(&mut fundus(&h, &["batch", "--manifest", m.to_str().expect("p"), "--report", report.to_str().expect("p"), "--timeout-secs", "60"]));
    assert!(again.contains("0 registered, 8 already registered"), "{again}");
    assert_eq!(scalar(&h, "SELECT count(*) FROM images").await, 8);
    drop(w);
    // A manifest without a path column is refused with a clear message.
    std::fs::write(dir.join("bad.csv"), "file,label\nx.jpg,1\n").expect("bad manifest");
    let out = fundus(&h, &["batch", "--manifest", dir.join("bad.csv").to_str().expect("p"), "--no-wait"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `path` column"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn phone_uploads_are_claimed_before_batch_work() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let dir = tests::scratch_dir("prio");
    let photos = fixtures::photo_files(&dir.join("photos"), 5, 600);
    let mut manifest = String::from("path\n");
    for p in &photos {
        manifest += &format!("{}\n", p.display());
    }
    std::fs::write(dir.join("m.csv"), manifest).expect("manifest");
    run_ok(&mut fundus(&h, &["batch", "--manifest", dir.join("m.csv").to_str().expect("p"), "--no-wait", "--report", dir.join("r").to_str().expect("p")]));
    let phone = upload(&h, 1, 700).await;
    let claimed = db::queue::claim(&h.pool, "probe", 1, 30.0).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].image_id, phone[0], "the phone upload goes first");
}

#[tokio::test]
async fn the_worker_survives_a_store_outage_and_a_postgres_restart() {
    let stack = Stack::dedicated("outage-worker");
    let h = Harness::start(&stack).await;
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    let n = 40;
    upload(&h, n, 800).await;
    // A short lease, so that the database outage outlasts it.
    let (worker, stop) = start_worker(&h, &model, |c| {
        c.exit_when_idle = false;
        c.batch.max_batch = 2;
        c.in_flight = 4;
        c.claim_batch = 2;
        c.lease = Duration::from_secs(3);
    });
    wait_for(&h, "SELECT count(*) FROM jobs WHERE state = 'done'", 4, Duration::from_secs(60)).await;
    // Longer than the S3 client's own retries (5 s): the worker's wait-out runs.
    stack.stop("garage");
    tokio::time::sleep(Duration::from_secs(12)).await;
    stack.up();
    wait_for(&h, "SELECT count(*) FROM jobs WHERE state = 'done'", 12, Duration::from_secs(90)).await;
    // Longer than a lease: the leases run out while nobody can renew them.
    stack.stop("postgres");
    tokio::time::sleep(Duration::from_secs(8)).await;
    stack.up();
    wait_for(&h, "SELECT count(*) FROM jobs WHERE state = 'done'", n as i64, Duration::from_secs(180)).await;
    stop.cancel();
    let summary = worker.await.expect("join").expect("worker");
    assert_eq!(summary.dead, 0, "{summary:?}");
    assert_exactly_once(&h, n as i64).await;
    // Outages cost no attempts, even one that outlasts the leases.
    assert_eq!(scalar(&h, "SELECT count(*) FROM jobs WHERE attempts <> 1").await, 0);
}

#[tokio::test]
async fn score_dir_writes_a_csv_and_heatmaps_without_services() {
    let dir = tests::scratch_dir("score");
    let model = fixtures::untrained_model(&dir.join("model"), 0.0, 64);
    fixtures::photo_files(&dir.join("photos/sub"), 6, 900);
    std::fs::write(dir.join("photos/notes.txt"), "ignored").expect("txt");
    std::fs::write(dir.join("photos/broken.png"), b"\x89PNG\r\n\x1a\nbroken").expect("broken");
    let out = dir.join("scores.csv");
    let text = run_ok(&mut {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fundus"));
        c.args(["score", dir.join("photos").to_str().expect("p"), "--model", model.to_str().expect("p"), "--cpu", "--out", out.to_str().expect("p"), "--heatmaps", dir.join("maps").to_str().expect("p")]);
        c
    });
    assert!(text.contains("7 photos") && text.contains("1 failed"), "{text}");
    let csv = std::fs::read_to_string(&out).expect("csv");
    assert_eq!(csv.lines().count(), 8, "{csv}");
    let broken = csv.lines().find(|l| l.starts_with("broken.png")).expect("broken row");
    assert!(broken.contains(",corrupt_image: png photo"), "the error has a code and names the problem: {broken}");
    // Threshold 0: every scored photo is routed, so each has a heatmap.
    // Heatmaps mirror the photos' folders, so names cannot collide.
    assert_eq!(std::fs::read_dir(dir.join("maps/sub")).expect("maps").count(), 6);
    assert!(dir.join("maps/sub/p000.jpg.heatmap.png").is_file());
    // A folder that is not a model is refused clearly.
    let bad = Command::new(env!("CARGO_BIN_EXE_fundus")).args(["score", dir.join("photos").to_str().expect("p"), "--model", dir.to_str().expect("p")]).output().expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("model_card.json"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// Registers `dir` (a model directory) as a new version of `name` through a
/// run of its own, and points `alias` at it.
async fn register(client: &mlflow::Client, name: &str, dir: &Path, alias: &str) -> String {
    let exp = client.get_or_create_experiment(&format!("test-{name}")).await.expect("experiment");
    let run = client.create_run(&exp.experiment_id, None, &[]).await.expect("run");
    for f in ["model_card.json", "weights.safetensors"] {
        client.upload_artifact(&run.info, &format!("model/{f}"), &dir.join(f)).await.expect("artifact");
    }
    client.finish_run(&run.info.run_id, mlflow::RunStatus::Finished).await.expect("finish");
    client.create_registered_model(name).await.expect("registered model");
    let v = client.create_model_version(name, &run.info.artifact_location("model"), Some(&run.info.run_id)).await.expect("version");
    client.set_alias(name, alias, &v.version).await.expect("alias");
    v.version
}

#[tokio::test]
async fn the_worker_follows_a_moved_alias_without_dropping_jobs() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let uri = stack.get("FUNDUS_MLFLOW_URI").to_owned();
    let client = mlflow::Client::new(&uri).expect("client");
    let name = format!("alias-{}", Uuid::new_v4().simple());
    let dir = tests::scratch_dir("alias");
    let v1 = register(&client, &name, &fixtures::untrained_model(&dir.join("v1"), 0.5, 64), "champion").await;
    upload(&h, 4, 1100).await;
    let mut cfg = inference::WorkerConfig::new("alias-worker".into());
    cfg.poll = Duration::from_millis(100);
    cfg.reload_every = Duration::from_millis(300);
    let stop = tokio_util::sync::CancellationToken::new();
    let source = inference::ModelSource::Alias { tracking_uri: uri.clone(), name: name.clone(), alias: "champion".into(), cache: dir.join("cache") };
    let worker = tokio::spawn(inference::worker::run(
        cfg,
        h.pool.clone(),
        h.store.clone(),
        source,
        tch::Device::Cpu,
        model::Precision::F32,
        std::sync::Arc::new(inference::metrics::Metrics::default()),
        stop.clone(),
    ));
    wait_for(&h, "SELECT count(*) FROM jobs WHERE state = 'done'", 4, Duration::from_secs(60)).await;
    // A second version at another threshold; move the alias to it.
    let v2 = register(&client, &name, &fixtures::untrained_model(&dir.join("v2"), 0.0, 64), "champion").await;
    assert_ne!(v1, v2);
    let t = Instant::now();
    loop {
        upload(&h, 1, 1200 + t.elapsed().as_millis() as u64).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM results r JOIN model_versions m ON m.id = r.model_version_id WHERE m.version = $1")
            .bind(&v2)
            .fetch_one(&h.pool)
            .await
            .expect("count");
        if n > 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no result from version {v2} after 30 s");
    }
    // Every photo has exactly one result, from whichever version scored it,
    // and each result records that version's threshold.
    let photos = scalar(&h, "SELECT count(*) FROM images").await;
    wait_for(&h, "SELECT count(*) FROM jobs WHERE state = 'done'", photos, Duration::from_secs(30)).await;
    stop.cancel();
    let summary = worker.await.expect("join").expect("worker");
    assert_eq!(summary.dead + summary.lost, 0, "{summary:?}");
    assert_eq!(scalar(&h, "SELECT count(*) FROM results").await, photos);
    let versions: Vec<(String, f32, Option<String>)> = sqlx::query_as("SELECT version, threshold, mlflow_run_id FROM model_versions ORDER BY version")
        .fetch_all(&h.pool)
        .await
        .expect("versions");
    assert_eq!(versions.iter().map(|v| (v.0.as_str(), v.1)).collect::<Vec<_>>(), [(v1.as_str(), 0.5), (v2.as_str(), 0.0)]);
    assert!(versions.iter().all(|v| v.2.is_some()), "each version names its MLflow run");
}
