//! `fundus mesos`: a Mesos framework that runs `fundus worker` as tasks on GPU
//! agents, as many as the queue wants.
//!
//! - [`policy`]: how many workers the queue wants (pure; also driven by [`sim`]).
//! - [`framework`]: the scheduler loop: offers, launches, status updates,
//!   reconciliation, scale-down by graceful KILL.
//! - [`leader`]: leadership among several instances through a Postgres advisory lock.
//! - [`task`]: what a worker task is (resources, command, environment, kill policy).
//! - [`teardown`]: `--teardown`, the end of a framework.
//! - [`metrics`]: what it exports on `/metrics`.

pub mod framework;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod sim;
pub mod task;
pub mod teardown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
pub use framework::{Config, TaskSpec};
use tokio_util::sync::CancellationToken;

/// `fundus mesos`: flags and environment.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub db: ingest::DbArgs,
    /// The Mesos master's base URL, e.g. http://10.0.0.1:5050 (a master that
    /// does not lead redirects to the one that does).
    #[arg(long, env = "FUNDUS_MESOS_MASTER")]
    pub master: String,
    /// Framework name; instances sharing it (and the database) are one
    /// framework: one leads, the others stand by.
    #[arg(long, env = "FUNDUS_MESOS_NAME", default_value = "fundus")]
    pub name: String,
    /// The role the framework takes offers in.
    #[arg(long, env = "FUNDUS_MESOS_ROLE", default_value = "fundus")]
    pub role: String,
    #[arg(long, env = "FUNDUS_MESOS_PRINCIPAL")]
    pub principal: Option<String>,
    /// The user tasks run as (default: this process's user).
    #[arg(long, env = "FUNDUS_MESOS_USER")]
    pub user: Option<String>,
    /// How long Mesos keeps the framework's tasks while no instance is subscribed.
    #[arg(long, default_value_t = 604_800.0)]
    pub failover_timeout_secs: f64,
    #[arg(long, default_value_t = 0)]
    pub min_workers: u32,
    #[arg(long, default_value_t = 4)]
    pub max_workers: u32,
    /// CPUs per worker task.
    #[arg(long, default_value_t = 4.0)]
    pub cpus: f64,
    /// Memory per worker task, MiB.
    #[arg(long, default_value_t = 8192.0)]
    pub mem: f64,
    /// GPUs per worker task.
    #[arg(long, default_value_t = 1)]
    pub gpus: u32,
    /// Run workers without GPUs (`--gpus 0`, and `--cpu` for each worker).
    #[arg(long)]
    pub cpu_only: bool,
    /// The `fundus` program on the agents (default: this binary's path, right
    /// for one host or agents sharing an installation).
    #[arg(long, env = "FUNDUS_MESOS_WORKER_COMMAND")]
    pub worker_command: Option<String>,
    /// Fetch the `fundus` program from this URI into each sandbox instead.
    #[arg(long, env = "FUNDUS_MESOS_WORKER_URI")]
    pub worker_uri: Option<String>,
    /// The worker's --grace-secs; KILLs allow it plus 10 s.
    #[arg(long, default_value_t = 30.0)]
    pub worker_grace_secs: f64,
    /// Phone uploads should start scoring within this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub target_wait_secs: f64,
    /// A batch backlog should be done within this many hours.
    #[arg(long, default_value_t = 24.0)]
    pub drain_hours: f64,
    /// Scale down only after fewer workers were wanted for this long.
    #[arg(long, default_value_t = 300.0)]
    pub quiet_secs: f64,
    /// Images per second per worker assumed until one has been measured.
    #[arg(long, default_value_t = 20.0)]
    pub worker_rate: f64,
    /// Seconds between reads of the queue.
    #[arg(long, default_value_t = 5.0)]
    pub observe_secs: f64,
    /// Seconds over which arrivals and worker throughput are measured.
    #[arg(long, default_value_t = 120.0)]
    pub window_secs: f64,
    /// Seconds between reconciliations with the master.
    #[arg(long, default_value_t = 300.0)]
    pub reconcile_secs: f64,
    /// Seconds declined offers stay away (a REVIVE brings them back sooner).
    #[arg(long, default_value_t = 3600.0)]
    pub refuse_secs: f64,
    /// Heartbeat intervals without an event before the stream counts as dead.
    #[arg(long, default_value_t = 3.0)]
    pub missed_heartbeats: f64,
    /// End the framework instead: TEARDOWN (Mesos kills all its workers) and
    /// forget its id. Every instance must be stopped first.
    #[arg(long)]
    pub teardown: bool,
    /// Serve /metrics and /healthz here.
    #[arg(long, env = "FUNDUS_MESOS_METRICS")]
    pub metrics_listen: Option<SocketAddr>,
    /// Flags for each `fundus worker`, after `--` (e.g. -- --model models:/fundus-glaucoma@champion).
    #[arg(last = true)]
    pub worker_args: Vec<String>,
}

fn secs(name: &str, v: f64, min: f64, max: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(v.is_finite() && v >= min && v <= max, "--{name} must be between {min} and {max}, not {v}");
    Ok(Duration::from_secs_f64(v))
}

/// Settings the worker tasks need from this process's environment: the
/// `FUNDUS_*` ones (database, store, MLflow, model) but the framework's own,
/// and what loads libtorch.
fn task_env(a: &Args) -> Vec<(String, String)> {
    let skip = |k: &str| k.starts_with("FUNDUS_MESOS_") || k == "FUNDUS_WORKER_ID" || k == "FUNDUS_WORKER_METRICS";
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| (k.starts_with("FUNDUS_") && !skip(k)) || k == "LD_LIBRARY_PATH" || k == "RUST_LOG")
        .collect();
    env.retain(|(k, _)| k != "FUNDUS_DATABASE_URL");
    env.push(("FUNDUS_DATABASE_URL".into(), a.db.database_url.expose().to_owned()));
    env.sort();
    env
}

impl Args {
    pub fn config(&self) -> anyhow::Result<Config> {
        anyhow::ensure!(!self.name.is_empty() && self.name.len() <= 64, "--name must be 1 to 64 characters");
        anyhow::ensure!(!self.role.is_empty(), "--role must not be empty");
        anyhow::ensure!(self.cpus.is_finite() && self.cpus >= 0.01, "--cpus must be at least 0.01");
        anyhow::ensure!(self.mem.is_finite() && self.mem >= 32.0, "--mem must be at least 32 (MiB)");
        let gpus = if self.cpu_only {
            anyhow::ensure!(self.gpus <= 1, "--cpu-only runs workers without GPUs; drop --gpus");
            0
        } else {
            anyhow::ensure!(self.gpus >= 1, "a worker takes at least one GPU; pass --cpu-only to run workers on CPUs alone");
            self.gpus
        };
        anyhow::ensure!(self.worker_command.is_none() || self.worker_uri.is_none(), "give --worker-command or --worker-uri, not both");
        let command = match (&self.worker_command, &self.worker_uri) {
            (Some(c), _) => c.clone(),
            (None, Some(uri)) => {
                let name = uri.rsplit('/').next().filter(|n| !n.is_empty()).context("--worker-uri must end in a file name")?;
                format!("./{name}")
            }
            (None, None) => std::env::current_exe().context("finding this binary's path for the worker tasks")?.display().to_string(),
        };
        let mut worker_args = self.worker_args.clone();
        for reserved in ["--id", "--grace-secs", "--exit-when-idle"] {
            anyhow::ensure!(!worker_args.iter().any(|a| a == reserved || a.starts_with(&format!("{reserved}="))), "worker flag {reserved} is set by the framework");
        }
        if self.cpu_only && !worker_args.iter().any(|a| a == "--cpu") {
            worker_args.push("--cpu".into());
        }
        let user = match &self.user {
            Some(u) => u.clone(),
            None => std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into()),
        };
        Ok(Config {
            master: self.master.clone(),
            database_url: self.db.database_url.expose().to_owned(),
            name: self.name.clone(),
            role: self.role.clone(),
            user,
            principal: self.principal.clone(),
            failover_timeout: secs("failover-timeout-secs", self.failover_timeout_secs, 0.0, 365.0 * 86_400.0)?,
            gpu_capability: true,
            task: TaskSpec {
                cpus: self.cpus,
                mem: self.mem,
                gpus,
                command,
                uri: self.worker_uri.clone(),
                worker_args,
                env: task_env(self),
                grace: secs("worker-grace-secs", self.worker_grace_secs, 0.0, 3600.0)?,
            },
            policy: policy::Policy {
                min_workers: self.min_workers,
                max_workers: self.max_workers,
                target_wait: secs("target-wait-secs", self.target_wait_secs, 1.0, 86_400.0)?,
                drain: secs("drain-hours", self.drain_hours * 3600.0, 60.0, 365.0 * 86_400.0)?,
                quiet: secs("quiet-secs", self.quiet_secs, 0.0, 86_400.0)?,
                default_rate: self.worker_rate,
            },
            observe_every: secs("observe-secs", self.observe_secs, 0.1, 3600.0)?,
            window: secs("window-secs", self.window_secs, 1.0, 86_400.0)?,
            reconcile_every: secs("reconcile-secs", self.reconcile_secs, 1.0, 86_400.0)?,
            refuse: secs("refuse-secs", self.refuse_secs, 0.0, 31_536_000.0)?,
            missed_heartbeats: {
                anyhow::ensure!(self.missed_heartbeats.is_finite() && self.missed_heartbeats >= 1.0, "--missed-heartbeats must be at least 1");
                self.missed_heartbeats
            },
        })
    }
}

/// `fundus mesos`: serves metrics, then runs the framework until `stop`.
/// `metrics` is the framework's registry (the caller may push it elsewhere too).
pub async fn main(a: Args, metrics: Arc<metrics::Metrics>, stop: CancellationToken) -> anyhow::Result<()> {
    let cfg = a.config()?;
    cfg.policy.validate().map_err(anyhow::Error::msg)?;
    let pool = a.db.connect()?;
    db::migrate(&pool).await.context("database")?;
    if a.teardown {
        return teardown::teardown(&cfg, &pool).await;
    }
    if let Some(addr) = a.metrics_listen {
        let m = metrics.clone();
        ingest::ops::serve_metrics(addr, move || m.encode()).await?;
    }
    tracing::info!(
        master = %cfg.master, framework = %cfg.name, role = %cfg.role, min = cfg.policy.min_workers, max = cfg.policy.max_workers,
        cpus = cfg.task.cpus, mem = cfg.task.mem, gpus = cfg.task.gpus, command = %cfg.task.command, "starting"
    );
    framework::run(cfg, pool, metrics, stop).await
}
