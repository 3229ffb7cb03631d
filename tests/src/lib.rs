//! Harness for the end-to-end tests: the real local stack (Postgres, Garage and
//! MLflow from `scripts/stack up`), a database and a store prefix of its own for each
//! test, and the real upload API served on a free loopback port. A test that
//! cannot find the stack fails and says how to start it; none skips.

pub mod browser;
pub mod fixtures;
pub mod influx;
pub mod mesos;
pub mod proxy;
pub mod reading;
pub mod stores;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

/// The workspace root. Read at run time (cargo sets CARGO_MANIFEST_DIR for
/// each test process): a build shared between checkouts must not carry the
/// path of the checkout that compiled it.
pub fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let manifest = manifest.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().map(Path::to_path_buf).expect("workspace root")
}

/// A fresh path under `.stack/tests`, named `what-<random>` (not created).
pub fn scratch_path(what: &str) -> PathBuf {
    root().join(".stack/tests").join(format!("{what}-{}", &Uuid::new_v4().simple().to_string()[..8]))
}

/// A fresh folder under `.stack/tests` for one test's files.
pub fn scratch_dir(what: &str) -> PathBuf {
    let d = scratch_path(what);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// Runs a command that must succeed; returns its stdout and stderr together.
pub fn run_ok(c: &mut Command) -> String {
    let (ok, text) = run(c);
    assert!(ok, "{} failed:\n{text}", described(c));
    text
}

/// Runs `c` to the end: whether it succeeded, and its stdout and stderr.
pub fn run(c: &mut Command) -> (bool, String) {
    let out = c.output().unwrap_or_else(|e| panic!("running {}: {e}", described(c)));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The program and its arguments only: the environment set on it holds the
/// test stack's passwords and keys.
fn described(c: &Command) -> String {
    format!("{} {}", c.get_program().to_string_lossy(), c.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "))
}

const HOW_TO: &str = "start the local stack with `scripts/stack up` (it installs Debian's postgresql, builds \
    Garage, the S3 server, and installs Azurite and fake-gcs-server, the Azure and GCS emulators), or run the \
    README's test command, `scripts/test`, which does all of it";

/// Connection settings of a running stack, read from its `env` file.
pub struct Stack {
    pub dir: PathBuf,
    vars: HashMap<String, String>,
    /// A dedicated stack is stopped and removed when dropped.
    dedicated: bool,
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

fn stack_cmd(dir: &Path, args: &[&str]) {
    let out = Command::new(root().join("scripts/stack"))
        .args(args)
        .env("FUNDUS_STACK_DIR", dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/stack: {e}"));
    assert!(
        out.status.success(),
        "scripts/stack {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Stack {
    /// The stack `scripts/stack up` started for the whole test run.
    pub fn shared() -> Stack {
        let dir = std::env::var_os("FUNDUS_STACK_DIR").map(PathBuf::from).unwrap_or_else(|| root().join(".stack"));
        let text = std::fs::read_to_string(dir.join("env"))
            .unwrap_or_else(|_| panic!("no {}/env: the local stack is not up; {HOW_TO}", dir.display()));
        let s = Stack { dir, vars: parse_env(&text), dedicated: false };
        s.answering("FUNDUS_DATABASE_URL");
        s.answering("FUNDUS_S3_ENDPOINT");
        s
    }

    /// Panics, saying how to start it, unless the server at the URL `key` names answers.
    pub fn answering(&self, key: &str) {
        let url = url::Url::parse(self.get(key)).unwrap_or_else(|e| panic!("{key} in the stack env: {e}"));
        let addr = format!("{}:{}", url.host_str().unwrap_or("127.0.0.1"), url.port().unwrap_or(0));
        let sock = addr.parse().unwrap_or_else(|e| panic!("{key} ({addr}) in the stack env: {e}; {HOW_TO}"));
        std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{key} ({addr}) does not answer ({e}); {HOW_TO}"));
    }

    /// A stack of its own, for tests that stop and restart services.
    pub fn dedicated(name: &str) -> Stack {
        let dir = scratch_path(name);
        stack_cmd(&dir, &["up"]);
        let text = std::fs::read_to_string(dir.join("env")).expect("dedicated stack env");
        Stack { dir, vars: parse_env(&text), dedicated: true }
    }

    pub fn get(&self, key: &str) -> &str {
        self.vars.get(key).unwrap_or_else(|| panic!("{key} missing from {}/env; {HOW_TO}", self.dir.display()))
    }

    /// Stops one service: `postgres`, `garage`, `mlflow`, … (`scripts/stack stop`).
    pub fn stop(&self, service: &str) {
        stack_cmd(&self.dir, &["stop", service]);
    }

    /// Starts whatever is stopped, on the same ports.
    pub fn up(&self) {
        stack_cmd(&self.dir, &["up"]);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.dedicated {
            stack_cmd(&self.dir, &["down"]);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One test's world: its own database and store prefix, and a running server.
pub struct Harness {
    pub base: String,
    pub http: reqwest::Client,
    pub pool: db::PgPool,
    pub store: ingest::Store,
    pub config: ingest::Config,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    pub async fn start(stack: &Stack) -> Harness {
        Self::start_with(stack, |_| {}).await
    }

    pub async fn start_with(stack: &Stack, tweak: impl FnOnce(&mut ingest::Config)) -> Harness {
        // The server's warnings (why it answered 503, say) go to the test's
        // output, which the runner shows when the test fails.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_test_writer()
            .try_init();
        let name = format!("t_{}", Uuid::new_v4().simple());
        let admin_url = stack.get("FUNDUS_PG_SUPERUSER_URL");
        let admin = db::connect(admin_url, 1, Duration::from_secs(10)).expect("admin pool");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database ({e}); {HOW_TO}"));
        admin.close().await;
        let mut db_url = url::Url::parse(admin_url).expect("database URL");
        db_url.set_path(&name);

        let mut config = ingest::Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            metrics_listen: None,
            db: ingest::DbArgs {
                database_url: db_url.as_str().parse().expect("infallible"),
                max_connections: 8,
                acquire_timeout_secs: 2,
            },
            store: stores::Backend::Garage.args(stack, &name),
            max_upload_bytes: 30_000_000,
            max_megapixels: 100,
            min_side: 512,
            decode_concurrency: None,
            request_timeout_secs: 60,
            sweep_interval_secs: 0,
            sweep_min_age_secs: 3600,
            max_buffered_bytes: 256 << 20,
            // Every test's clients share 127.0.0.1, and some tests walk a
            // route matrix in a burst: no per-address rate here.
            // tests/tests/limits.rs turns it on.
            guard: ingest::guard::GuardArgs { client_rate: 0.0, ..Default::default() },
            pseudonym: Default::default(),
            review: review::Config::default(),
        };
        tweak(&mut config);
        let state = ingest::AppState::new(config.clone()).expect("server state");
        let (pool, store) = (state.db.clone(), state.store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let server = tokio::spawn(ingest::serve(listener, state, std::future::pending()));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let h = Harness { base, http, pool, store, config, server };
        h.wait_healthy().await;
        h
    }

    async fn wait_healthy(&self) {
        for _ in 0..100 {
            if self.server.is_finished() {
                panic!("the server stopped during start-up");
            }
            // /healthz answers once migrations are done and the server listens.
            if let Ok(r) = self.http.get(format!("{}/healthz", self.base)).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not become healthy");
    }

    /// A site with one device; returns the device's token.
    pub async fn device(&self, site: &str) -> String {
        let site_id = match db::access::site_by_name(&self.pool, site).await {
            Ok(s) => s.id,
            Err(_) => db::access::site_create(&self.pool, site).await.expect("site"),
        };
        let token = ingest::auth::new_token();
        let name = format!("phone-{}", Uuid::new_v4().simple());
        db::access::device_create(&self.pool, site_id, &name, &ingest::auth::hash_token(&token))
            .await
            .expect("device");
        token
    }

    pub async fn post_json(&self, token: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        decode(req.send().await.expect("request")).await
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        decode(req.send().await.expect("request")).await
    }

    pub async fn study(&self, token: &str) -> Uuid {
        let (status, body) = self
            .post_json(Some(token), "/v1/studies", serde_json::json!({
                "patient_ref": "P-0001", "captured_at": "2026-11-20T10:00:00Z", "device_model": "test-scope"
            }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("study id").parse().expect("uuid")
    }

    pub fn upload(&self, token: &str, study: Uuid, bytes: Vec<u8>, content_type: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/v1/studies/{study}/images?eye=left", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(bytes)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        decode(req.send().await.expect("request")).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Waits until the count `sql` returns reaches `want`; panics after `limit`.
    pub async fn wait_for_count(&self, sql: &str, want: i64, limit: Duration) {
        let t = std::time::Instant::now();
        loop {
            let got: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&self.pool).await.expect(sql);
            if got >= want {
                return;
            }
            assert!(t.elapsed() < limit, "{sql}: {got} after {limit:?}, wanted {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `fundus` binary at `bin` (`env!("CARGO_BIN_EXE_fundus")` in the
    /// caller) with this test's database and store in its environment.
    pub fn command(&self, bin: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .env("FUNDUS_DATABASE_URL", self.config.db.database_url.expose())
            .envs(self.config.store.env())
            .env("FUNDUS_LOG", "warn");
        c
    }

    /// Every object key under this test's store prefix.
    pub async fn objects(&self) -> Vec<String> {
        let old = std::time::SystemTime::now() + Duration::from_secs(3600);
        self.store.list_older("", old).await.expect("listing the store")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn decode(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// A scoring worker running inside the test process against this test's
/// database and store, until `stop` is cancelled or (with `exit_when_idle`)
/// the queue is empty.
pub fn start_worker(
    h: &Harness,
    model_dir: &Path,
    tweak: impl FnOnce(&mut inference::WorkerConfig),
) -> (tokio::task::JoinHandle<anyhow::Result<inference::Summary>>, tokio_util::sync::CancellationToken) {
    start_worker_on(h, h.store.clone(), model_dir, tweak)
}

/// `start_worker` reading photos from, and writing heatmaps to, `store`.
pub fn start_worker_on(
    h: &Harness,
    store: ingest::Store,
    model_dir: &Path,
    tweak: impl FnOnce(&mut inference::WorkerConfig),
) -> (tokio::task::JoinHandle<anyhow::Result<inference::Summary>>, tokio_util::sync::CancellationToken) {
    let mut cfg = inference::WorkerConfig::new(format!("test-worker-{}", &Uuid::new_v4().simple().to_string()[..6]));
    cfg.poll = Duration::from_millis(200);
    cfg.retry_base = Duration::from_millis(50);
    cfg.grace = Duration::from_secs(5);
    cfg.exit_when_idle = true;
    tweak(&mut cfg);
    let stop = tokio_util::sync::CancellationToken::new();
    let pool = db::connect(h.config.db.database_url.expose(), 8, Duration::from_secs(2)).expect("worker pool");
    let task = tokio::spawn(inference::worker::run(
        cfg,
        pool,
        store,
        inference::ModelSource::Local(model_dir.to_path_buf()),
        tch::Device::Cpu,
        model::Precision::F32,
        std::sync::Arc::new(inference::metrics::Metrics::default()),
        stop.clone(),
    ));
    (task, stop)
}
