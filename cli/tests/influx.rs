//! The metrics push to a real InfluxDB (Debian's influxdb 1.x, started by
//! `scripts/stack`): a worker's and a server's points are read back with
//! InfluxQL, and a bad `--influx-url` is refused before anything starts.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tests::influx::{database, query, wait_up_to};
use tests::{Harness, Stack, fixtures, run_ok};

fn fundus(h: &Harness, args: &[&str]) -> Command {
    h.command(env!("CARGO_BIN_EXE_fundus"), args)
}

/// Three photos through the API, from one device of one site.
async fn upload_three(h: &Harness, seed: u64) {
    let token = h.device("clinic").await;
    let study = h.study(&token).await;
    for i in 0..3 {
        let (status, body) = h.send(h.upload(&token, study, fixtures::jpeg(800, 600, seed + i), "image/jpeg")).await;
        assert_eq!(status, 201, "{body}");
    }
}

async fn wait_for(url: &str, db: &str, q: &str, want: f64) {
    wait_up_to(url, db, q, want, Duration::from_secs(10)).await
}

#[tokio::test]
async fn a_worker_pushes_its_metrics_to_influxdb() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let (url, db) = database(&stack).await;
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    upload_three(&h, 500).await;
    let m = model.to_str().expect("path");
    let out = run_ok(&mut fundus(
        &h,
        &["worker", "--model", m, "--cpu", "--exit-when-idle", "--poll-secs", "0.2", "--influx-url", &url, "--influx-db", &db, "--influx-interval-secs", "0.2"],
    ));
    assert!(out.contains("3 done"), "{out}");
    // The last push, made as the worker exits, has every photo in it.
    wait_for(&url, &db, "SELECT last(value) FROM fundus_worker_images_scored_total", 3.0).await;
    wait_for(&url, &db, "SELECT last(value) FROM fundus_worker_jobs_total WHERE outcome = 'done'", 3.0).await;
    let versions = query(&url, &db, "SHOW TAG VALUES FROM fundus_worker_model WITH KEY = version").await;
    assert!(versions.iter().any(|v| v[1].as_str().is_some_and(|s| s.starts_with("local-"))), "{versions:?}");
    // Histograms arrive as their buckets, tagged by bound.
    let buckets = query(&url, &db, "SHOW TAG VALUES FROM fundus_worker_job_seconds_bucket WITH KEY = le").await;
    assert!(buckets.iter().any(|v| v[1] == "+Inf"), "{buckets:?}");
    wait_for(&url, &db, "SELECT last(value) FROM fundus_influx_dropped_points", 0.0).await;
}

/// A process killed when dropped, so a failing test leaves nothing behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_server_pushes_upload_counts_and_a_bad_url_is_refused() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let (url, db) = database(&stack).await;

    let bad = fundus(&h, &["serve", "--influx-url", "influx.internal:8086"]).output().expect("run");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("invalid_influx_url"), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let mut cmd = fundus(&h, &["serve", "--influx-url", &url, "--influx-db", &db, "--influx-interval-secs", "0.2"]);
    cmd.env("FUNDUS_LISTEN", format!("127.0.0.1:{port}"));
    let _server = Server(cmd.spawn().expect("fundus serve"));
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{base}/readyz")).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = h.device("phone").await;
    let study = h.study(&token).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/studies/{study}/images?eye=left"))
        .bearer_auth(&token)
        .header("content-type", "image/jpeg")
        .body(fixtures::jpeg(800, 600, 600))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    wait_for(&url, &db, "SELECT last(value) FROM fundus_ingest_uploads_total WHERE outcome = 'created'", 1.0).await;
    // The review gauges are refreshed from the database before each sample,
    // as for a scrape (unrefreshed, the backlog has no series at all).
    wait_for(&url, &db, "SELECT last(value) FROM fundus_review_backlog WHERE reason = 'referable'", 0.0).await;
}

/// An InfluxDB of this test's own, on loopback ports, so it can be stopped
/// and started again without disturbing other tests.
fn private_influx(dir: &std::path::Path, port: u16, rpc: u16) -> Server {
    let conf = dir.join("influxdb.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("log")).expect("log");
    let child = Command::new("influxd")
        .arg("-config")
        .arg(&conf)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("influxd ({e}): install Debian's influxdb, or run scripts/stack up, which does"));
    Server(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port()
}

/// Points sampled while InfluxDB was down wait, and arrive once it is back,
/// with the times they were sampled at; nothing is dropped.
#[tokio::test]
async fn points_wait_out_an_influxdb_outage() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let dir = tests::scratch_dir("influx");
    let (port, rpc) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    upload_three(&h, 700).await;
    // InfluxDB is down: the worker scores anyway.
    let m = model.to_str().expect("path");
    let _worker = Server(
        fundus(&h, &["worker", "--model", m, "--cpu", "--poll-secs", "0.2", "--influx-url", &url, "--influx-db", "outage", "--influx-interval-secs", "0.2"])
            .spawn()
            .expect("worker"),
    );
    h.wait_for_count("SELECT count(*) FROM results", 3, Duration::from_secs(60)).await;
    let scored = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    // Down long enough for several failed writes (at 0.2, 0.6, 1.4, 3 s...).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _influx = private_influx(&dir, port, rpc);
    let started = Instant::now();
    loop {
        let r = reqwest::Client::new()
            .post(reqwest::Url::parse_with_params(&format!("{url}/query"), [("q", "CREATE DATABASE outage")]).expect("URL"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "influxd did not start; see {}/log", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Within the backoff (it doubles from the interval, capped at a minute).
    let limit = Duration::from_secs(30);
    wait_up_to(&url, "outage", "SELECT last(value) FROM fundus_worker_images_scored_total", 3.0, limit).await;
    // The first samples, taken while the photos were still being scored
    // (several failed writes before InfluxDB was back), arrived.
    let first = query(&url, "outage", "SELECT first(value) FROM fundus_worker_images_scored_total").await;
    let t = first.first().and_then(|r| r[0].as_f64()).expect("a first point") as u128;
    assert!(t < scored, "the first point is {:.1} s after the photos were scored: the outage's points were lost", (t - scored) as f64 / 1e9);
    wait_for(&url, "outage", "SELECT last(value) FROM fundus_influx_dropped_points", 0.0).await;
}
