//! `deploy/grafana/fundus.json` asks only for metrics Fundus exports: every
//! metric a panel's query names is in the exposition of the worker, the
//! upload and review server, or the Mesos framework, under its type's names.

use std::collections::BTreeSet;

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// Names in a PromQL expression that are Fundus metrics.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("fundus_"))
        .map(str::to_owned)
        .collect()
}

/// `# TYPE` lines of every registry Fundus serves: name → type. A family
/// with no series yet is not in the exposition, so each gets one first.
fn exported() -> Vec<(String, String)> {
    let worker = inference::metrics::Metrics::default();
    worker.outcome("dead");
    worker.queue_depth(&db::queue::Depth { queued: 3, urgent: 1, running: 0, dead: 0 });
    worker.model_in_use("fundus-glaucoma", "1");
    let server = ingest::metrics::Metrics::new();
    server.count("created");
    let m = review::metrics::ModelLabel { model: "fundus-glaucoma".into(), version: "1".into() };
    server.review.backlog.get_or_create(&review::metrics::ReasonLabel { reason: "referable".into() }).set(1);
    server.review.sensitivity.get_or_create(&m).set(0.9);
    server.review.specificity.get_or_create(&m).set(0.9);
    server.review.qa_miss_rate.get_or_create(&m).set(0.0);
    server.review.reviewed.get_or_create(&m).set(1);
    let mesos = cluster::metrics::Metrics::default();
    let text = [worker.encode(), server.render(), mesos.encode()].concat();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect()
}

/// Whether `name` is a series the exposition has: a gauge by its name, a
/// counter with `_total`, a histogram with `_bucket`, `_sum` or `_count`.
fn is_exported(name: &str, types: &[(String, String)]) -> bool {
    types.iter().any(|(base, kind)| match kind.as_str() {
        "counter" => name == format!("{base}_total"),
        "histogram" => ["_bucket", "_sum", "_count"].iter().any(|s| name == format!("{base}{s}")),
        _ => name == base,
    })
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let path = tests::root().join("deploy/grafana/fundus.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("dashboard is JSON");
    let mut all = Vec::new();
    exprs(&dash["panels"], &mut all);
    assert!(all.len() >= 12, "{} queries", all.len());
    let types = exported();
    assert!(types.len() > 20, "{types:?}");
    let mut named = BTreeSet::new();
    for e in &all {
        let names = metric_names(e);
        assert!(!names.is_empty(), "a query naming no Fundus metric: {e}");
        for n in names {
            assert!(is_exported(&n, &types), "{n} (in `{e}`) is not a metric Fundus exports");
            named.insert(n);
        }
    }
    // What the dashboard is for: each of these is on it.
    for want in [
        "fundus_worker_queue_depth",
        "fundus_worker_images_scored_total",
        "fundus_ingest_upload_seconds_bucket",
        "fundus_worker_job_seconds_bucket",
        "fundus_worker_dead_jobs",
        "fundus_review_backlog",
        "fundus_review_oldest_age_seconds",
        "fundus_worker_model",
    ] {
        assert!(named.contains(want), "the dashboard does not show {want}");
    }
    // Every panel reads the dashboard's Prometheus data source.
    for p in dash["panels"].as_array().expect("panels") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
}

#[test]
fn a_name_that_is_not_exported_is_caught() {
    let types = exported();
    assert!(is_exported("fundus_worker_jobs_total", &types));
    assert!(!is_exported("fundus_worker_jobs", &types), "a counter is served with _total");
    assert!(!is_exported("fundus_worker_queue_depth_total", &types));
    assert!(!is_exported("fundus_worker_scored_per_second", &types));
}
