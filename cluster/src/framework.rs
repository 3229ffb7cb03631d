//! The scheduler: one loop per subscription that reacts to the master's events
//! and, every second, compares the workers the queue wants with the tasks it
//! has.
//!
//! State lives in Postgres and is written before Mesos is told anything: a task
//! row before the ACCEPT that launches it, a status update before its
//! ACKNOWLEDGE. So a framework that dies at any point, or a standby that takes
//! over, knows every task Mesos might know, and reconciliation settles the rest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use db::PgPool;
use mesos::client::Caller;
use mesos::proto::{Capability, Operation, ReconcileTask};
use mesos::{Backoff, Call, Client, Event, FrameworkInfo, Id, Offer, TaskState, TaskStatus};
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Metrics};
use crate::policy::{Observation, Policy, Scaler};
pub use crate::task::TaskSpec;

#[derive(Debug, Clone)]
pub struct Config {
    pub master: String,
    pub database_url: String,
    /// Framework name; also the key of its id and leadership lock in Postgres.
    pub name: String,
    pub role: String,
    pub user: String,
    pub principal: Option<String>,
    pub failover_timeout: Duration,
    /// Announce GPU_RESOURCES (always, but for the test that shows it matters).
    pub gpu_capability: bool,
    pub task: TaskSpec,
    pub policy: Policy,
    /// How often the queue is read.
    pub observe_every: Duration,
    /// The window over which throughput and arrivals are measured.
    pub window: Duration,
    pub reconcile_every: Duration,
    /// How long declined offers stay away (REVIVE clears it).
    pub refuse: Duration,
    pub missed_heartbeats: f64,
}

const TICK: Duration = Duration::from_secs(1);
/// A task running this long ends the launch backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// KILL again if a task has not ended this long after its grace period.
const KILL_RETRY: Duration = Duration::from_secs(30);
const MAX_LAUNCH_BACKOFF: Duration = Duration::from_secs(300);

/// Runs until `stop` is cancelled: stands by until it leads, leads until it
/// loses the leadership or is stopped, and stands by again.
pub async fn run(cfg: Config, pool: PgPool, metrics: Arc<Metrics>, stop: CancellationToken) -> anyhow::Result<()> {
    cfg.policy.validate().map_err(anyhow::Error::msg)?;
    mesos::Client::new(&cfg.master)?; // a bad URL is an error now, not a retry loop
    loop {
        metrics.leader.set(0);
        let Some(leadership) = crate::leader::acquire(&cfg.database_url, &cfg.name, &stop).await else {
            return Ok(());
        };
        metrics.leader.set(1);
        tracing::info!(framework = %cfg.name, "leading");
        let r = lead(&cfg, &pool, &metrics, &leadership.lost, &stop).await;
        metrics.subscribed.set(0);
        metrics.leader.set(0);
        let lost = leadership.lost.is_cancelled();
        drop(leadership);
        if stop.is_cancelled() {
            tracing::info!("stopped; worker tasks keep running until a leader reconciles them");
            return Ok(());
        }
        match r {
            Err(e) if !lost => return Err(e),
            Err(e) => tracing::warn!("stopped leading: {e:#}"),
            Ok(()) => tracing::warn!("stopped leading: the leadership connection was lost"),
        }
    }
}

/// Why a subscription ended.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error(transparent)]
    Mesos(#[from] mesos::Error),
    #[error("database: {0}")]
    Db(#[from] db::Error),
    #[error("master sent ERROR: {0}")]
    MasterError(String),
}

async fn lead(cfg: &Config, pool: &PgPool, metrics: &Metrics, lost: &CancellationToken, stop: &CancellationToken) -> anyhow::Result<()> {
    let mut client = Client::new(&cfg.master)?.with_missed_heartbeats(cfg.missed_heartbeats);
    let mut backoff = Backoff::default();
    let mut fw = Framework::new(cfg, pool, metrics);
    loop {
        // Reload on each subscription: a standby's view of the tasks is only as
        // fresh as the last leader's writes. Without the database, stop leading.
        if let Err(e) = fw.reload().await {
            tracing::warn!("cannot load the framework's state: {e}");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.cancelled() => {}
            }
            return Ok(());
        }
        let call = fw.subscribe_call();
        let attempt = tokio::select! {
            r = client.subscribe(&call) => r,
            _ = lost.cancelled() => return Ok(()),
            _ = stop.cancelled() => return Ok(()),
        };
        match attempt {
            Ok(sub) => {
                tracing::info!(master = %sub.master(), "subscribing");
                match fw.session(sub, lost, stop, &mut backoff).await {
                    Ok(()) => return Ok(()),
                    Err(End::MasterError(m)) if m.contains("removed") || m.contains("torn down") => {
                        tracing::error!("the master removed framework {}: {m}; registering afresh", fw.framework_id_text());
                        if let Err(e) = db::mesos::forget_framework(pool, &cfg.name).await {
                            tracing::warn!("cannot forget the removed framework: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("subscription ended: {e}"),
                }
            }
            Err(e) if e.is_transient() => tracing::warn!("cannot subscribe: {e}"),
            Err(e) => return Err(e.into()),
        }
        metrics.subscribed.set(0);
        let pause = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = lost.cancelled() => return Ok(()),
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

#[derive(Debug, Clone)]
struct Task {
    agent_id: Option<String>,
    state: TaskState,
    running_since: Option<Instant>,
    launched: Instant,
    kill_sent: Option<Instant>,
    kill_requested: bool,
}

pub(crate) struct Framework<'a> {
    cfg: &'a Config,
    pool: &'a PgPool,
    metrics: &'a Metrics,
    pub(crate) framework_id: Option<Id>,
    tasks: BTreeMap<String, Task>,
    scaler: Scaler,
    started: Instant,
    suppressed: bool,
    failures: u32,
    next_launch: Instant,
    last_observed: Option<Instant>,
    last_reconcile: Instant,
}

impl<'a> Framework<'a> {
    pub(crate) fn new(cfg: &'a Config, pool: &'a PgPool, metrics: &'a Metrics) -> Framework<'a> {
        let now = Instant::now();
        Framework {
            cfg,
            pool,
            metrics,
            framework_id: None,
            tasks: BTreeMap::new(),
            scaler: Scaler::new(cfg.policy.clone()),
            started: now,
            suppressed: false,
            failures: 0,
            next_launch: now,
            last_observed: None,
            last_reconcile: now,
        }
    }

    /// The framework id and live tasks as stored. The scaler starts from the
    /// workers that are live, so a new leader scales down only after a quiet
    /// period, as the old one would have.
    async fn reload(&mut self) -> Result<(), db::Error> {
        self.framework_id = db::mesos::framework_id(self.pool, &self.cfg.name).await?.map(Id::new);
        let now = Instant::now();
        let old = std::mem::take(&mut self.tasks);
        for t in db::mesos::live_tasks(self.pool, &self.cfg.name).await? {
            let kept = old.get(&t.task_id);
            let task = Task {
                agent_id: t.agent_id,
                state: TaskState::parse(&t.state),
                running_since: kept.and_then(|k| k.running_since).or(t.running_at.map(|_| now)),
                launched: kept.map_or(now, |k| k.launched),
                kill_sent: kept.and_then(|k| k.kill_sent),
                kill_requested: t.kill_requested_at.is_some(),
            };
            self.tasks.insert(t.task_id, task);
        }
        if self.last_observed.is_none() {
            self.scaler.resume(self.active());
        }
        Ok(())
    }

    fn framework_id_text(&self) -> String {
        self.framework_id.as_ref().map(|i| i.value.clone()).unwrap_or_else(|| "(new)".into())
    }

    pub(crate) fn framework_info(&self) -> FrameworkInfo {
        let mut capabilities = vec![Capability::new(Capability::MULTI_ROLE), Capability::new(Capability::TASK_KILLING_STATE)];
        if self.cfg.gpu_capability {
            capabilities.push(Capability::new(Capability::GPU_RESOURCES));
        }
        FrameworkInfo {
            user: self.cfg.user.clone(),
            name: self.cfg.name.clone(),
            id: self.framework_id.clone(),
            roles: vec![self.cfg.role.clone()],
            failover_timeout: Some(self.cfg.failover_timeout.as_secs_f64()),
            checkpoint: Some(true),
            principal: self.cfg.principal.clone(),
            capabilities,
            ..Default::default()
        }
    }

    /// SUBSCRIBE with our id when we have one; suppressed from the start when
    /// no worker is missing, so the master sends no offers we would decline.
    fn subscribe_call(&mut self) -> Call {
        self.suppressed = self.active() >= self.scaler.wanted();
        Call::subscribe(self.framework_info(), Some(if self.suppressed { vec![self.cfg.role.clone()] } else { vec![] }))
    }

    /// Every live task, for an explicit RECONCILE.
    fn known_tasks(&self) -> Vec<ReconcileTask> {
        self.tasks
            .iter()
            .map(|(id, t)| ReconcileTask { task_id: Id::new(id.clone()), agent_id: t.agent_id.clone().map(Id::new) })
            .collect()
    }

    /// Live tasks not asked to stop.
    fn active(&self) -> u32 {
        self.tasks.values().filter(|t| !t.kill_requested).count() as u32
    }

    async fn session(
        &mut self,
        mut sub: mesos::Subscription,
        lost: &CancellationToken,
        stop: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), End> {
        let caller = sub.caller();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut subscribed = false;
        loop {
            tokio::select! {
                biased;
                _ = lost.cancelled() => return Ok(()),
                _ = stop.cancelled() => return Ok(()),
                event = sub.next() => {
                    let event = event?;
                    if matches!(event, Event::Subscribed(_)) {
                        subscribed = true;
                        backoff.reset();
                    }
                    self.on_event(event, &caller).await?;
                }
                _ = tick.tick(), if subscribed => self.on_tick(&caller).await?,
            }
        }
    }

    fn fw(&self) -> &Id {
        self.framework_id.as_ref().expect("subscribed before any call")
    }

    async fn call(&self, caller: &Caller, call: Call) -> Result<(), End> {
        match caller.call(&call).await {
            Ok(()) => Ok(()),
            // A malformed call is our bug, not a reason to drop the subscription.
            Err(mesos::Error::Rejected { status, body, call }) if status == 400 => {
                tracing::error!("master refused {call}: {body}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn on_event(&mut self, event: Event, caller: &Caller) -> Result<(), End> {
        match event {
            Event::Subscribed(s) => {
                if self.framework_id.as_ref() != Some(&s.framework_id) {
                    db::mesos::set_framework_id(self.pool, &self.cfg.name, &s.framework_id.value).await?;
                    tracing::info!(framework_id = %s.framework_id, "registered");
                } else {
                    tracing::info!(framework_id = %s.framework_id, "resubscribed");
                }
                self.framework_id = Some(s.framework_id);
                self.metrics.subscribed.set(1);
                // What happened to our tasks while nobody was listening.
                let known = self.known_tasks();
                if !known.is_empty() {
                    tracing::info!(tasks = known.len(), "reconciling known tasks");
                    self.call(caller, Call::reconcile(self.fw(), known)).await?;
                }
                self.last_reconcile = Instant::now();
            }
            Event::Offers(offers) => self.on_offers(offers, caller).await?,
            Event::Update(status) => self.on_update(status, caller).await?,
            Event::Error(m) => return Err(End::MasterError(m)),
            Event::Failure { agent_id, executor_id, status } => {
                tracing::info!(agent = ?agent_id.map(|a| a.value), executor = ?executor_id.map(|e| e.value), status, "executor or agent failed");
            }
            Event::Rescind { .. } | Event::Heartbeat => {}
            Event::Other { kind, .. } => tracing::debug!(kind, "event ignored"),
        }
        Ok(())
    }

    async fn on_update(&mut self, s: TaskStatus, caller: &Caller) -> Result<(), End> {
        let id = s.task_id.value.clone();
        let terminal = s.state.is_terminal();
        let change = db::mesos::TaskChange {
            state: s.state.as_str(),
            reason: s.reason.as_deref(),
            message: s.message.as_deref(),
            agent_id: s.agent_id.as_ref().map(|a| a.value.as_str()),
            terminal,
        };
        // Persisted before it is acknowledged: if this fails, no ACKNOWLEDGE,
        // and the agent sends the update again.
        let stored = db::mesos::update_task(self.pool, &self.cfg.name, &id, &change).await?;
        match stored {
            None if !terminal => {
                tracing::warn!(task = %id, state = s.state.as_str(), "a task this framework has no record of; killing it");
                self.metrics.tasks_killed.inc();
                self.call(caller, Call::kill(self.fw(), s.task_id.clone(), s.agent_id.clone(), Some(self.kill_grace()))).await?;
            }
            None => {}
            // Ended (now, or before this late update): never live again.
            Some((true, _)) => {
                if let Some(t) = self.tasks.remove(&id) {
                    self.metrics.tasks_ended.get_or_create(&metrics::State { state: s.state.as_str() }).inc();
                    let why = s.message.as_deref().unwrap_or("");
                    if t.kill_requested {
                        tracing::info!(task = %id, state = s.state.as_str(), "worker stopped");
                    } else if s.reason.as_deref() == Some("REASON_INVALID_OFFERS") {
                        tracing::info!(task = %id, "launch raced a rescinded offer; relaunching");
                    } else {
                        self.failures += 1;
                        let delay = Duration::from_secs(1u64 << self.failures.min(9)).min(MAX_LAUNCH_BACKOFF);
                        self.next_launch = Instant::now() + delay;
                        tracing::warn!(
                            task = %id, state = s.state.as_str(), reason = ?s.reason, message = why,
                            "worker ended unexpectedly (its sandbox stderr says why); next launch in {delay:?}"
                        );
                    }
                }
            }
            Some(_) => {
                let t = self.tasks.entry(id.clone()).or_insert_with(|| Task {
                    agent_id: None,
                    state: s.state,
                    running_since: None,
                    launched: Instant::now(),
                    kill_sent: None,
                    kill_requested: false,
                });
                t.state = s.state;
                if let Some(a) = &s.agent_id {
                    t.agent_id = Some(a.value.clone());
                }
                if s.state == TaskState::Running && t.running_since.is_none() {
                    t.running_since = Some(Instant::now());
                    tracing::info!(task = %id, "worker running");
                }
            }
        }
        if let Some(ack) = Call::acknowledge(self.fw(), &s) {
            self.call(caller, ack).await?;
        }
        self.publish();
        Ok(())
    }

    fn kill_grace(&self) -> f64 {
        crate::task::kill_grace(&self.cfg.task)
    }

    /// Workers to launch now.
    fn missing(&self) -> u32 {
        if Instant::now() < self.next_launch {
            return 0;
        }
        self.scaler.wanted().saturating_sub(self.active())
    }

    async fn on_offers(&mut self, offers: Vec<Offer>, caller: &Caller) -> Result<(), End> {
        self.metrics.offers_received.inc_by(offers.len() as u64);
        let spec = &self.cfg.task;
        let mut missing = self.missing();
        let mut declined = Vec::new();
        for offer in offers {
            let (mut cpus, mut mem, mut gpus) = (offer.scalar("cpus"), offer.scalar("mem"), offer.scalar("gpus"));
            let mut launch = Vec::new();
            while missing > 0 && cpus >= spec.cpus && mem >= spec.mem && gpus >= f64::from(spec.gpus) {
                let task_id = format!("{}-worker.{}", self.cfg.name, uuid::Uuid::new_v4().simple());
                db::mesos::insert_task(self.pool, &self.cfg.name, &task_id, &offer.agent_id.value, &offer.hostname).await?;
                launch.push(crate::task::task_info(self.cfg, &task_id, &offer));
                self.tasks.insert(
                    task_id,
                    Task {
                        agent_id: Some(offer.agent_id.value.clone()),
                        state: TaskState::Staging,
                        running_since: None,
                        launched: Instant::now(),
                        kill_sent: None,
                        kill_requested: false,
                    },
                );
                cpus -= spec.cpus;
                mem -= spec.mem;
                gpus -= f64::from(spec.gpus);
                missing -= 1;
            }
            if launch.is_empty() {
                declined.push(offer.id);
                continue;
            }
            tracing::info!(agent = %offer.hostname, tasks = launch.len(), "launching workers");
            self.metrics.offers_accepted.inc();
            self.metrics.tasks_launched.inc_by(launch.len() as u64);
            let call = Call::accept(self.fw(), vec![offer.id], vec![Operation::launch(launch)], None);
            self.call(caller, call).await?;
        }
        if !declined.is_empty() {
            self.metrics.offers_declined.inc_by(declined.len() as u64);
            self.call(caller, Call::decline(self.fw(), declined, self.cfg.refuse.as_secs_f64())).await?;
        }
        if self.missing() == 0 && !self.suppressed {
            self.call(caller, Call::suppress(self.fw(), vec![self.cfg.role.clone()])).await?;
            self.suppressed = true;
        }
        self.publish();
        Ok(())
    }

    async fn on_tick(&mut self, caller: &Caller) -> Result<(), End> {
        let now = Instant::now();
        if self.last_observed.is_none_or(|t| now - t >= self.cfg.observe_every) {
            self.last_observed = Some(now);
            let window = self.cfg.window.as_secs_f64();
            let d = db::mesos::demand(self.pool, &self.cfg.name, window).await?;
            let o = Observation {
                urgent_queued: d.urgent_queued.max(0) as u64,
                batch_queued: d.batch_queued.max(0) as u64,
                running: d.running.max(0) as u64,
                urgent_oldest: d.urgent_oldest_secs.filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64),
                urgent_arrival_rate: d.urgent_arrived.max(0) as f64 / window,
                done: d.done.max(0) as u64,
                worker_secs: d.worker_secs,
            };
            let before = self.scaler.wanted();
            let wanted = self.scaler.observe(&o, now - self.started);
            if wanted != before {
                tracing::info!(
                    wanted, was = before, urgent = o.urgent_queued, batch = o.batch_queued, running_jobs = o.running,
                    rate = self.scaler.rate(), "workers wanted changed"
                );
            }
        }
        // Launch backoff ends once a worker has stayed up.
        if self.failures > 0 && self.tasks.values().any(|t| t.running_since.is_some_and(|s| now - s >= HEALTHY_AFTER)) {
            self.failures = 0;
        }
        let wanted = self.scaler.wanted();
        if self.missing() > 0 && self.suppressed {
            self.call(caller, Call::revive(self.fw(), vec![self.cfg.role.clone()])).await?;
            self.suppressed = false;
        } else if self.active() >= wanted && !self.suppressed {
            self.call(caller, Call::suppress(self.fw(), vec![self.cfg.role.clone()])).await?;
            self.suppressed = true;
        }
        self.scale_down(caller, wanted).await?;
        self.rekill(caller, now).await?;
        if now - self.last_reconcile >= self.cfg.reconcile_every {
            self.last_reconcile = now;
            // Explicit for what we know (answers even for tasks Mesos lost),
            // implicit for anything we do not.
            let known = self.known_tasks();
            if !known.is_empty() {
                self.call(caller, Call::reconcile(self.fw(), known)).await?;
            }
            self.call(caller, Call::reconcile(self.fw(), vec![])).await?;
        }
        self.publish();
        Ok(())
    }

    /// Stops workers beyond the number wanted: those not yet running first,
    /// then the newest. Each gets SIGTERM and the worker's grace period to give
    /// its jobs back.
    async fn scale_down(&mut self, caller: &Caller, wanted: u32) -> Result<(), End> {
        let excess = self.active().saturating_sub(wanted) as usize;
        if excess == 0 {
            return Ok(());
        }
        let mut candidates: Vec<(String, bool, Instant)> = self
            .tasks
            .iter()
            .filter(|(_, t)| !t.kill_requested)
            .map(|(id, t)| (id.clone(), t.state == TaskState::Running, t.launched))
            .collect();
        candidates.sort_by_key(|(_, running, launched)| (*running, std::cmp::Reverse(*launched)));
        for (id, _, _) in candidates.into_iter().take(excess) {
            db::mesos::request_kill(self.pool, &self.cfg.name, &id).await?;
            let agent = self.tasks.get(&id).and_then(|t| t.agent_id.clone()).map(Id::new);
            if let Some(t) = self.tasks.get_mut(&id) {
                t.kill_requested = true;
                t.kill_sent = Some(Instant::now());
            }
            tracing::info!(task = %id, "stopping a worker: fewer are wanted");
            self.metrics.tasks_killed.inc();
            self.call(caller, Call::kill(self.fw(), Id::new(id), agent, Some(self.kill_grace()))).await?;
        }
        Ok(())
    }

    /// A KILL can be lost (agent disconnected, master failed over): repeat it
    /// for tasks still alive well after their grace period.
    async fn rekill(&mut self, caller: &Caller, now: Instant) -> Result<(), End> {
        let due = Duration::from_secs_f64(self.kill_grace()) + KILL_RETRY;
        let again: Vec<(String, Option<String>)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.kill_requested && t.kill_sent.is_none_or(|s| now - s >= due))
            .map(|(id, t)| (id.clone(), t.agent_id.clone()))
            .collect();
        for (id, agent) in again {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.kill_sent = Some(now);
            }
            self.call(caller, Call::kill(self.fw(), Id::new(id), agent.map(Id::new), Some(self.kill_grace()))).await?;
        }
        Ok(())
    }

    fn publish(&self) {
        let m = self.metrics;
        m.workers_wanted.set(i64::from(self.scaler.wanted()));
        m.worker_rate.set(self.scaler.rate());
        m.workers_running.set(self.tasks.values().filter(|t| t.state == TaskState::Running && !t.kill_requested).count() as i64);
        for state in TaskState::ALL.iter().filter(|s| !s.is_terminal()) {
            let n = self.tasks.values().filter(|t| t.state == *state).count() as i64;
            m.tasks.get_or_create(&metrics::State { state: state.as_str() }).set(n);
        }
    }
}
