//! `fundus mesos` against a real Mesos 1.11 master and agent (one fake GPU per
//! worker slot), real `fundus worker` tasks, the real queue: scale-up from a
//! backlog, graceful scale-down, replacement of a dead worker, start-up
//! failures with backoff, leader failover with `kill -9`, and a master restart;
//! the framework's metrics pushed to InfluxDB as well.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::mesos::{Mesos, eventually};
use tests::{Harness, Stack, fixtures};

/// A child process killed when dropped, so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Framework {
    proc: Proc,
    metrics: String,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

fn start_framework(h: &Harness, master: &str, model: &Path, flags: &[&str]) -> Framework {
    let port = free_port();
    let log = tests::scratch_dir("framework").join("stderr");
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "mesos", "--master", master, "--name", "fundus-test", "--role", "fundus", "--cpus", "0.5", "--mem", "256",
        "--worker-grace-secs", "5", "--quiet-secs", "3", "--observe-secs", "0.5", "--reconcile-secs", "5",
        "--refuse-secs", "2", "--window-secs", "5", "--metrics-listen", &listen,
    ];
    args.extend_from_slice(flags);
    let model = model.to_str().expect("path");
    args.extend_from_slice(&["--", "--model", model, "--cpu", "--poll-secs", "0.2", "--retry-secs", "0.05"]);
    let file = std::fs::File::create(&log).expect("log file");
    let child = h
        .command(env!("CARGO_BIN_EXE_fundus"), &args)
        .env("FUNDUS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("starting fundus mesos");
    Framework { proc: Proc(child), metrics: format!("http://{listen}/metrics"), log }
}

impl Framework {
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
    }

    async fn wait_metric(&self, name: &str, want: f64, limit: Duration) {
        let what = format!("{name} = {want} (log: {})", self.log.display());
        eventually(limit, &what, || async { (self.metric(name).await == Some(want)).then_some(()) }).await;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill_9(&mut self) {
        let _ = self.proc.0.kill(); // SIGKILL
        let _ = self.proc.0.wait();
    }
}

async fn scalar(h: &Harness, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&h.pool).await.expect(sql)
}

async fn upload(h: &Harness, n: usize, seed: u64) {
    let token = h.device("clinic").await;
    let study = h.study(&token).await;
    for i in 0..n {
        let (status, body) = h.send(h.upload(&token, study, fixtures::jpeg(800, 600, seed + i as u64), "image/jpeg")).await;
        assert_eq!(status, 201, "{body}");
    }
}

async fn framework_id(h: &Harness) -> String {
    sqlx::query_scalar("SELECT framework_id FROM mesos_frameworks WHERE name = 'fundus-test'")
        .fetch_one(&h.pool)
        .await
        .expect("framework id stored")
}

/// Tasks of the framework the master lists in `state` (e.g. TASK_RUNNING).
async fn master_tasks(m: &Mesos, fw: &str, states: &[&str]) -> Vec<Value> {
    m.tasks(fw).await.into_iter().filter(|t| states.contains(&t["state"].as_str().unwrap_or(""))).collect()
}

fn task_ids(tasks: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = tasks.iter().map(|t| t["id"].as_str().unwrap_or("").to_owned()).collect();
    ids.sort();
    ids
}

/// Pids of processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) && text.contains(" worker ") {
            pids.push(pid);
        }
    }
    pids
}

const LIVE: &[&str] = &["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"];

#[tokio::test]
async fn workers_scale_with_the_backlog_score_every_photo_once_and_stop_gracefully() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let m = Mesos::start(&stack, "cpus:4;mem:4096;gpus:2");
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    upload(&h, 16, 1).await;
    // 16 photos due within 60 s at an assumed 0.05/s per worker: 3 wanted, but the agent has 2 GPUs.
    // Its metrics also go to InfluxDB.
    let (influx, db) = tests::influx::database(&stack).await;
    let flags = ["--max-workers", "3", "--worker-rate", "0.05", "--influx-url", &influx, "--influx-db", &db, "--influx-interval-secs", "0.5"];
    let f = start_framework(&h, &m.url(), &model, &flags);
    f.wait_metric("fundus_mesos_workers_wanted", 3.0, Duration::from_secs(30)).await;
    f.wait_metric("fundus_mesos_workers_running", 2.0, Duration::from_secs(90)).await;
    let fw = framework_id(&h).await;
    let running = master_tasks(&m, &fw, &["TASK_RUNNING"]).await;
    assert_eq!(running.len(), 2, "one worker per GPU: {running:?}");
    for t in &running {
        let gpus = t["resources"]["gpus"].as_f64();
        assert_eq!(gpus, Some(1.0), "each worker holds one GPU: {t}");
    }
    let workers = task_ids(&running);
    h.wait_for_count("SELECT count(*) FROM jobs WHERE state = 'done'", 16, Duration::from_secs(120)).await;
    // Drained: after the 3 s quiet period both are KILLed and given their grace.
    f.wait_metric("fundus_mesos_workers_wanted", 0.0, Duration::from_secs(30)).await;
    let killed = eventually(Duration::from_secs(60), "both workers TASK_KILLED", || async {
        let k = master_tasks(&m, &fw, &["TASK_KILLED"]).await;
        (k.len() == 2).then_some(k)
    })
    .await;
    assert_eq!(task_ids(&killed), workers, "the same two tasks, stopped");
    assert!(master_tasks(&m, &fw, LIVE).await.is_empty());
    // Every photo exactly once, nothing left claimed.
    assert_eq!(scalar(&h, "SELECT count(*) FROM results").await, 16);
    assert_eq!(scalar(&h, "SELECT count(DISTINCT image_id) FROM results").await, 16);
    assert_eq!(scalar(&h, "SELECT count(*) FROM jobs WHERE state <> 'done' OR locked_by IS NOT NULL").await, 0);
    // Stopped by SIGTERM: each worker printed its summary on the way out.
    for id in &workers {
        let stderr = m.sandbox_file(id, "stderr").unwrap_or_else(|| panic!("no sandbox stderr for {id}"));
        assert!(stderr.contains("worker stopped:"), "{id} did not stop gracefully:\n{stderr}");
    }
    // The framework's record agrees with the master's.
    assert_eq!(
        scalar(&h, "SELECT count(*) FROM mesos_tasks WHERE state = 'TASK_KILLED' AND kill_requested_at IS NOT NULL AND ended_at IS NOT NULL").await,
        2
    );
    let accepted = f.metric("fundus_mesos_offers_accepted_total").await.unwrap_or(0.0);
    assert!(accepted >= 1.0, "offers accepted: {accepted}");
    // What /metrics said, InfluxDB has too: the peak of workers wanted, and the drain.
    let peak = "SELECT max(value) FROM fundus_mesos_workers_wanted";
    tests::influx::wait_up_to(&influx, &db, peak, 3.0, Duration::from_secs(10)).await;
    tests::influx::wait_up_to(&influx, &db, "SELECT last(value) FROM fundus_mesos_workers_wanted", 0.0, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_killed_worker_is_replaced_under_a_new_task_id() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let m = Mesos::start(&stack, "cpus:2;mem:2048;gpus:1");
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    let f = start_framework(&h, &m.url(), &model, &["--min-workers", "1", "--max-workers", "1"]);
    f.wait_metric("fundus_mesos_workers_running", 1.0, Duration::from_secs(90)).await;
    let fw = framework_id(&h).await;
    let first = task_ids(&master_tasks(&m, &fw, &["TASK_RUNNING"]).await);
    assert_eq!(first.len(), 1);
    let pids = pids_with(&first[0]);
    assert_eq!(pids.len(), 1, "one worker process for {}: {pids:?}", first[0]);
    Command::new("kill").args(["-9", &pids[0].to_string()]).status().expect("kill");
    let second = eventually(Duration::from_secs(60), "a replacement worker running", || async {
        let r = task_ids(&master_tasks(&m, &fw, &["TASK_RUNNING"]).await);
        (r.len() == 1 && r != first).then_some(r)
    })
    .await;
    assert_ne!(second, first, "a new task id");
    let (state, message): (String, Option<String>) = sqlx::query_as("SELECT state, message FROM mesos_tasks WHERE task_id = $1")
        .bind(&first[0])
        .fetch_one(&h.pool)
        .await
        .expect("the dead task's row");
    assert_eq!(state, "TASK_FAILED");
    let message = message.unwrap_or_default();
    assert!(message.contains("signal"), "the executor said how it died: {message}");
    // And the replacement works: a photo uploaded now is scored.
    upload(&h, 2, 50).await;
    h.wait_for_count("SELECT count(*) FROM results", 2, Duration::from_secs(60)).await;

    // The framework process dies; its worker lives on (the failover timeout)…
    drop(f);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(task_ids(&master_tasks(&m, &fw, &["TASK_RUNNING"]).await), second);
    // …until the operator tears the framework down.
    let out = h
        .command(env!("CARGO_BIN_EXE_fundus"), &["mesos", "--master", &m.url(), "--name", "fundus-test", "--teardown"])
        .output()
        .expect("teardown");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(Duration::from_secs(30), "no live worker after TEARDOWN", || async {
        master_tasks(&m, &fw, LIVE).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(scalar(&h, "SELECT count(*) FROM mesos_frameworks").await, 0);
    assert_eq!(scalar(&h, "SELECT count(*) FROM mesos_tasks WHERE ended_at IS NULL").await, 0);
}

#[tokio::test]
async fn a_worker_that_cannot_start_says_why_in_its_sandbox_and_is_relaunched_with_backoff() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let m = Mesos::start(&stack, "cpus:2;mem:2048;gpus:1");
    let missing = tests::scratch_dir("nomodel").join("absent");
    let f = start_framework(&h, &m.url(), &missing, &["--min-workers", "1", "--max-workers", "1"]);
    let fw = eventually(Duration::from_secs(30), "registration", || async {
        sqlx::query_scalar::<_, String>("SELECT framework_id FROM mesos_frameworks").fetch_optional(&h.pool).await.ok().flatten()
    })
    .await;
    let failed = eventually(Duration::from_secs(60), "a failed worker", || async {
        let t = master_tasks(&m, &fw, &["TASK_FAILED"]).await;
        (!t.is_empty()).then_some(t)
    })
    .await;
    let id = failed[0]["id"].as_str().expect("id").to_owned();
    let stderr = eventually(Duration::from_secs(10), "the sandbox stderr", || async { m.sandbox_file(&id, "stderr") }).await;
    assert!(stderr.contains("absent"), "the sandbox stderr names the missing model:\n{stderr}");
    // Backoff: 2, 4, 8, 16 s… after a first failure, so over the next 20 s only a few more launches.
    let start_count = f.metric("fundus_mesos_tasks_launched_total").await.unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let launched = f.metric("fundus_mesos_tasks_launched_total").await.unwrap_or(0.0) - start_count;
    assert!((1.0..=4.0).contains(&launched), "{launched} launches in 20 s");
    assert!(f.log().contains("next launch in"), "{}", f.log());
}

#[tokio::test]
async fn a_standby_takes_over_from_a_killed_leader_without_running_more_workers_than_wanted() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let m = Mesos::start(&stack, "cpus:4;mem:4096;gpus:2");
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    let flags = ["--min-workers", "1", "--max-workers", "1"];
    let mut leader = start_framework(&h, &m.url(), &model, &flags);
    leader.wait_metric("fundus_mesos_workers_running", 1.0, Duration::from_secs(90)).await;
    let standby = start_framework(&h, &m.url(), &model, &flags);
    eventually(Duration::from_secs(30), "the second instance to stand by", || async {
        standby.log().contains("another instance leads; standing by").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(standby.metric("fundus_mesos_leader").await, Some(0.0));
    assert_eq!(standby.metric("fundus_mesos_subscribed").await, Some(0.0));
    assert_eq!(leader.metric("fundus_mesos_leader").await, Some(1.0));
    let fw = framework_id(&h).await;
    let before = task_ids(&master_tasks(&m, &fw, &["TASK_RUNNING"]).await);
    assert_eq!(before.len(), 1);

    // Watch the master throughout: never more than one live worker.
    let watch_stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let (stop, url, fw) = (watch_stop.clone(), m.url(), fw.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut most = 0;
            while !stop.is_cancelled() {
                if let Ok(r) = http.get(format!("{url}/master/tasks?framework_id={fw}&limit=1000")).send().await
                    && let Ok(text) = r.text().await
                    && let Ok(v) = serde_json::from_str::<Value>(&text.replace(":Infinity", ":1e308"))
                {
                    let live = v["tasks"].as_array().map_or(0, |t| t.iter().filter(|t| LIVE.contains(&t["state"].as_str().unwrap_or(""))).count());
                    most = most.max(live);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            most
        })
    };

    let killed_at = Instant::now();
    leader.kill_9();
    standby.wait_metric("fundus_mesos_leader", 1.0, Duration::from_secs(10)).await;
    standby.wait_metric("fundus_mesos_subscribed", 1.0, Duration::from_secs(20)).await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(20), "takeover took {took:?}");
    assert_eq!(framework_id(&h).await, fw, "the same framework id");
    let active: Vec<Value> = m.frameworks().await.into_iter().filter(|f| f["active"].as_bool() == Some(true)).collect();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0]["id"].as_str(), Some(fw.as_str()));
    // Reconciled: the standby knows the running worker and keeps it.
    standby.wait_metric("fundus_mesos_workers_running", 1.0, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(task_ids(&master_tasks(&m, &fw, &["TASK_RUNNING"]).await), before, "the same worker, not a second one");
    assert!(standby.log().contains("reconciling known tasks"), "{}", standby.log());
    upload(&h, 3, 80).await;
    h.wait_for_count("SELECT count(*) FROM results", 3, Duration::from_secs(60)).await;

    // A leader that loses its database connection stops at once.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        .execute(&h.pool)
        .await
        .expect("terminate");
    eventually(Duration::from_secs(4), "the leader to stop on losing its lock connection", || async {
        standby.log().contains("stopped leading: the leadership connection was lost").then_some(())
    })
    .await;
    // …and, still alive and the only instance, leads again (with the same id).
    eventually(Duration::from_secs(30), "the instance to lead and subscribe again", || async {
        let log = standby.log();
        let after = &log[log.find("stopped leading").unwrap_or(0)..];
        after.contains("resubscribed").then_some(())
    })
    .await;
    standby.wait_metric("fundus_mesos_subscribed", 1.0, Duration::from_secs(10)).await;

    watch_stop.cancel();
    let most = watcher.await.expect("watcher");
    assert_eq!(most, 1, "at most one worker was ever live");
}

#[tokio::test]
async fn the_framework_resubscribes_with_its_id_after_the_master_restarts() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let m = Mesos::start(&stack, "cpus:2;mem:2048;gpus:1");
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    let f = start_framework(&h, &m.url(), &model, &["--min-workers", "1", "--max-workers", "1"]);
    f.wait_metric("fundus_mesos_workers_running", 1.0, Duration::from_secs(90)).await;
    let fw = framework_id(&h).await;
    m.restart();
    // The framework notices (the stream ends), retries with backoff, and comes back as itself.
    let back = eventually(Duration::from_secs(60), "the framework back on the restarted master", || async {
        let fws = m.frameworks().await;
        fws.into_iter().find(|f| f["id"].as_str() == Some(fw.as_str()) && f["active"].as_bool() == Some(true))
    })
    .await;
    assert_eq!(back["name"].as_str(), Some("fundus-test"));
    // A worker runs again (the old one went with the agent) and scores.
    f.wait_metric("fundus_mesos_workers_running", 1.0, Duration::from_secs(90)).await;
    upload(&h, 2, 90).await;
    h.wait_for_count("SELECT count(*) FROM results", 2, Duration::from_secs(60)).await;
    assert!(f.log().contains("resubscribed"), "{}", f.log());
}

#[tokio::test]
async fn the_framework_works_through_a_single_byte_stream_and_resubscribes_after_a_stall() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let m = Mesos::start(&stack, "cpus:2;mem:2048;gpus:1");
    let proxy = tests::proxy::Proxy::start(m.addr()).await;
    proxy.set(|f| f.single_bytes = true);
    let model = fixtures::untrained_model(&tests::scratch_dir("model"), 0.5, 64);
    // The master's heartbeat is 15 s: 1.2 missed heartbeats is 18 s of silence.
    let f = start_framework(&h, &proxy.url(), &model, &["--min-workers", "1", "--max-workers", "1", "--missed-heartbeats", "1.2"]);
    f.wait_metric("fundus_mesos_workers_running", 1.0, Duration::from_secs(90)).await;
    upload(&h, 2, 70).await;
    h.wait_for_count("SELECT count(*) FROM results", 2, Duration::from_secs(60)).await;

    // The stream goes quiet without closing: the watchdog notices and the framework resubscribes.
    proxy.set(|f| f.stall_next = Some(Duration::from_secs(60)));
    let stalled = Instant::now();
    eventually(Duration::from_secs(40), "the watchdog to end the silent subscription", || async {
        f.log().contains("no event for").then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "a new subscription", || async { (proxy.subscribes() >= 2).then_some(()) }).await;
    f.wait_metric("fundus_mesos_subscribed", 1.0, Duration::from_secs(30)).await;
    assert!(stalled.elapsed() < Duration::from_secs(60), "recovered only after the stall ended: {:?}", stalled.elapsed());
    // Still one worker, the same one, and scoring.
    f.wait_metric("fundus_mesos_workers_running", 1.0, Duration::from_secs(30)).await;
    upload(&h, 2, 75).await;
    h.wait_for_count("SELECT count(*) FROM results", 4, Duration::from_secs(60)).await;
    let fw = framework_id(&h).await;
    assert_eq!(master_tasks(&m, &fw, LIVE).await.len(), 1);
}
