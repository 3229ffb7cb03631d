//! A real Mesos 1.11 master and agent for one test: `scripts/lib.sh`'s
//! `mesos_start` on a free loopback port, with a state folder of its own,
//! stopped (tasks and all) when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const HOW_TO: &str = "the local Mesos is built by `scripts/stack up` (ensure_mesos in scripts/lib.sh: the PyPI \
    package mesos.scheduler 1.11.0 and a small host program), or by the README's test command, `scripts/test`";

pub struct Mesos {
    pub dir: PathBuf,
    pub port: u16,
    resources: String,
    bin: String,
    launcher_dir: String,
    pub http: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Mesos {
    /// Starts a master and one agent offering `resources` (e.g. `cpus:4;mem:4096;gpus:2`).
    pub fn start(stack: &crate::Stack, resources: &str) -> Mesos {
        let bin = stack.get("FUNDUS_MESOS_LOCAL_BIN").to_owned();
        let launcher_dir = stack.get("FUNDUS_MESOS_LAUNCHER_DIR").to_owned();
        assert!(std::path::Path::new(&bin).exists(), "{bin} is missing; {HOW_TO}");
        let m = Mesos {
            dir: crate::scratch_dir("mesos"),
            port: free_port(),
            resources: resources.to_owned(),
            bin,
            launcher_dir,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client"),
        };
        m.up(false);
        m
    }

    fn script(&self, script: &str, keep_work: bool) {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(". scripts/lib.sh && {script}"))
            .arg("mesos")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(&self.resources)
            .current_dir(crate::root())
            .env("MESOS_LOCAL_BIN", &self.bin)
            .env("MESOS_LAUNCHER_DIR", &self.launcher_dir)
            .env("MESOS_KEEP_WORK", if keep_work { "1" } else { "" })
            .output()
            .unwrap_or_else(|e| panic!("running bash: {e}"));
        assert!(
            out.status.success(),
            "{script} failed; {HOW_TO}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn up(&self, keep_work: bool) {
        self.script(r#"mesos_start "$1" "$2" "$3" && mesos_wait "$1" "$2""#, keep_work);
    }

    /// Stops the master and agent (their tasks die with them) and starts them
    /// again on the same port.
    pub fn restart(&self) {
        self.stop();
        self.up(true);
    }

    pub fn stop(&self) {
        self.script(r#"mesos_stop "$1""#, true);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.url())).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let text = r.text().await.expect("body");
        // The master writes non-finite doubles as bare `Infinity`, which is not JSON.
        serde_json::from_str(&text.replace(":Infinity", ":1e308")).unwrap_or_else(|e| panic!("GET {path}: {e}: {text:.300}"))
    }

    /// Every task the master knows of this framework (`name`), running or ended.
    pub async fn tasks(&self, framework_id: &str) -> Vec<Value> {
        let v = self.get(&format!("/master/tasks?framework_id={framework_id}&limit=1000")).await;
        v["tasks"].as_array().cloned().unwrap_or_default()
    }

    /// Frameworks the master has, active or not.
    pub async fn frameworks(&self) -> Vec<Value> {
        let v = self.get("/master/frameworks").await;
        v["frameworks"].as_array().cloned().unwrap_or_default()
    }

    /// The files of a task's sandbox: `stdout` or `stderr`.
    pub fn sandbox_file(&self, task_id: &str, file: &str) -> Option<String> {
        let mut found = None;
        walk(&self.dir, &mut |p| {
            if p.file_name().is_some_and(|n| n == file) && p.to_string_lossy().contains(task_id) {
                found = std::fs::read_to_string(p).ok();
            }
        });
        found
    }
}

fn walk(dir: &std::path::Path, f: &mut dyn FnMut(&std::path::Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

impl Drop for Mesos {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#". scripts/lib.sh && mesos_stop "$1""#)
            .arg("mesos")
            .arg(&self.dir)
            .current_dir(crate::root())
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `limit` with `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "gave up after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
