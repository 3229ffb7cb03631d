//! The worker's Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// done, retry, dead, released, lost
    pub outcome: &'static str,
}

/// `urgent` (phone uploads, ahead of the queue) or `batch`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Priority {
    pub priority: &'static str,
}

/// The model answering, as an info metric (value 1).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub version: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub queue_depth: Family<Priority, Gauge>,
    pub model: Family<ModelLabels, Gauge>,
    /// Jobs dead-lettered and not retried (each has a `scoring_failed` review item).
    pub dead_jobs: Gauge,
    pub claim_seconds: Histogram,
    pub batch_size: Histogram,
    pub inference_seconds: Histogram,
    pub images_scored: Counter,
    pub jobs: Family<Outcome, Counter>,
    pub job_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fundus_worker");
        let queue_depth = Family::<Priority, Gauge>::default();
        let model = Family::<ModelLabels, Gauge>::default();
        let dead_jobs = Gauge::default();
        let claim_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let inference_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let images_scored = Counter::default();
        let jobs = Family::<Outcome, Counter>::default();
        let job_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register("queue_depth", "Jobs queued and ready or waiting to retry, by priority", queue_depth.clone());
        registry.register("model", "The model version answering (1)", model.clone());
        registry.register("dead_jobs", "Jobs dead-lettered and not retried (fundus admin jobs list --dead)", dead_jobs.clone());
        registry.register("claim_seconds", "Time to claim a batch of jobs", claim_seconds.clone());
        registry.register("batch_size", "Photos per model forward pass", batch_size.clone());
        registry.register("inference_seconds", "Time per model forward pass (batch)", inference_seconds.clone());
        registry.register("images_scored", "Photos scored (rate() gives images/s)", images_scored.clone());
        registry.register("jobs", "Jobs ended by outcome", jobs.clone());
        registry.register("job_seconds", "Claim to completion per job", job_seconds.clone());
        Metrics { registry, queue_depth, model, dead_jobs, claim_seconds, batch_size, inference_seconds, images_scored, jobs, job_seconds }
    }
}

impl Metrics {
    pub fn queue_depth(&self, d: &db::queue::Depth) {
        self.queue_depth.get_or_create(&Priority { priority: "urgent" }).set(d.urgent);
        self.queue_depth.get_or_create(&Priority { priority: "batch" }).set(d.queued - d.urgent);
    }

    /// Names the model answering now (and only it).
    pub fn model_in_use(&self, name: &str, version: &str) {
        self.model.clear();
        self.model.get_or_create(&ModelLabels { model: name.to_owned(), version: version.to_owned() }).set(1);
    }

    pub fn outcome(&self, outcome: &'static str) {
        self.jobs.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
