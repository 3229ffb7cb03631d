//! The framework's Prometheus metrics, served on `/metrics` with `/healthz`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    /// TASK_STAGING, TASK_RUNNING, …
    pub state: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub leader: Gauge,
    pub subscribed: Gauge,
    pub workers_wanted: Gauge,
    /// Tasks in TASK_RUNNING that were not asked to stop.
    pub workers_running: Gauge,
    /// Live tasks by their last state.
    pub tasks: Family<State, Gauge>,
    /// Tasks that ended, by their final state.
    pub tasks_ended: Family<State, Counter>,
    pub tasks_launched: Counter,
    pub tasks_killed: Counter,
    pub offers_received: Counter,
    pub offers_accepted: Counter,
    pub offers_declined: Counter,
    pub worker_rate: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fundus_mesos");
        let m = Metrics {
            leader: Gauge::default(),
            subscribed: Gauge::default(),
            workers_wanted: Gauge::default(),
            workers_running: Gauge::default(),
            tasks: Family::default(),
            tasks_ended: Family::default(),
            tasks_launched: Counter::default(),
            tasks_killed: Counter::default(),
            offers_received: Counter::default(),
            offers_accepted: Counter::default(),
            offers_declined: Counter::default(),
            worker_rate: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("leader", "1 while this instance holds the leadership lock", m.leader.clone());
        registry.register("subscribed", "1 while subscribed to a Mesos master", m.subscribed.clone());
        registry.register("workers_wanted", "Workers the queue wants now", m.workers_wanted.clone());
        registry.register("workers_running", "Worker tasks running and not being stopped", m.workers_running.clone());
        registry.register("tasks", "Live worker tasks by last known state", m.tasks.clone());
        registry.register("tasks_ended", "Worker tasks ended, by final state", m.tasks_ended.clone());
        registry.register("tasks_launched", "Worker tasks launched", m.tasks_launched.clone());
        registry.register("tasks_killed", "Worker tasks asked to stop (scale-down or unknown)", m.tasks_killed.clone());
        registry.register("offers_received", "Resource offers received", m.offers_received.clone());
        registry.register("offers_accepted", "Offers used to launch workers", m.offers_accepted.clone());
        registry.register("offers_declined", "Offers declined", m.offers_declined.clone());
        registry.register("worker_images_per_second", "Images per second per worker the scaler assumes", m.worker_rate.clone());
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
