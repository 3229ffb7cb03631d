//! Prometheus metrics of the upload API and the review queue, one registry
//! per server instance.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `created`, `duplicate`, or the error code.
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub uploads: Family<Outcome, Counter>,
    pub upload_bytes: Counter,
    pub upload_seconds: Histogram,
    pub validate_seconds: Histogram,
    /// The review queue's gauges, refreshed at each scrape.
    pub review: review::metrics::Metrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        let review = review::metrics::Metrics::register(root.sub_registry_with_prefix("fundus_review"));
        let registry = root.sub_registry_with_prefix("fundus_ingest");
        let uploads = Family::<Outcome, Counter>::default();
        let upload_bytes = Counter::default();
        let upload_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let validate_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register("uploads", "Image uploads by outcome", uploads.clone());
        registry.register("upload_bytes", "Bytes of accepted images", upload_bytes.clone());
        registry.register("upload_seconds", "Time to handle an image upload", upload_seconds.clone());
        registry.register("validate_seconds", "Time to validate and decode an upload", validate_seconds.clone());
        Metrics { registry: root, uploads, upload_bytes, upload_seconds, validate_seconds, review }
    }

    pub fn count(&self, outcome: &str) {
        self.uploads.get_or_create(&Outcome { outcome: outcome.to_owned() }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
