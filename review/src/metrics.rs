//! Prometheus gauges of the review queue and of the model in the field,
//! refreshed from the database when `/metrics` is scraped.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    pub model: String,
    pub version: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Default)]
pub struct Metrics {
    pub backlog: Family<ReasonLabel, Gauge>,
    pub oldest_age_seconds: FloatGauge,
    pub sensitivity: Family<ModelLabel, FloatGauge>,
    pub specificity: Family<ModelLabel, FloatGauge>,
    pub qa_miss_rate: Family<ModelLabel, FloatGauge>,
    pub reviewed: Family<ModelLabel, Gauge>,
}

impl Metrics {
    /// Registers the gauges under `registry` (which carries the prefix).
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        registry.register("backlog", "Undecided review items by reason", m.backlog.clone());
        registry.register("oldest_age_seconds", "Age of the oldest undecided review item", m.oldest_age_seconds.clone());
        registry.register("model_sensitivity", "Model sensitivity against final human outcomes (reviewed photos only)", m.sensitivity.clone());
        registry.register("model_specificity", "Model specificity against final human outcomes (reviewed photos only)", m.specificity.clone());
        registry.register("model_qa_miss_rate", "Share of blinded QA reads of model negatives finally called referable", m.qa_miss_rate.clone());
        registry.register("model_reviewed", "Photos with a final human outcome behind the model figures", m.reviewed.clone());
        m
    }

    /// Reads the current figures over every site.
    pub async fn refresh(&self, pool: &db::PgPool) -> db::Result<()> {
        let sites = db::review::all_site_ids(pool).await?;
        let counts = db::review::counts(pool, &sites).await?;
        self.backlog.clear();
        for reason in crate::work::REASONS {
            let n: i64 = counts.iter().filter(|c| c.reason == reason).map(|c| c.n).sum();
            self.backlog.get_or_create(&ReasonLabel { reason: reason.into() }).set(n);
        }
        let oldest = counts.iter().map(|c| c.oldest).min();
        self.oldest_age_seconds
            .set(oldest.map_or(0.0, |o| (chrono::Utc::now() - o).num_milliseconds() as f64 / 1000.0));
        let s = crate::stats::stats(pool, &sites).await?;
        for m in s.models {
            let l = ModelLabel { model: m.model, version: m.version };
            let set = |f: &Family<ModelLabel, FloatGauge>, v: Option<f64>| {
                if let Some(v) = v {
                    f.get_or_create(&l).set(v);
                }
            };
            set(&self.sensitivity, m.sensitivity.value);
            set(&self.specificity, m.specificity.value);
            set(&self.qa_miss_rate, m.qa_miss_rate.value);
            self.reviewed.get_or_create(&l).set(m.reviewed as i64);
        }
        Ok(())
    }
}
