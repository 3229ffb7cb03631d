//! The stack's InfluxDB, for the tests of the metrics push: a database of a
//! test's own, InfluxQL queries, and waiting for a value to arrive.

use std::time::{Duration, Instant};

use crate::Stack;

/// A database of this test's own on the stack's InfluxDB; its URL and name.
pub async fn database(stack: &Stack) -> (String, String) {
    let url = stack.get("FUNDUS_STACK_INFLUX_URL").to_owned();
    let name = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let r = reqwest::Client::new()
        .post(reqwest::Url::parse_with_params(&format!("{url}/query"), [("q", format!("CREATE DATABASE {name}"))]).expect("URL"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("InfluxDB at {url} does not answer ({e}); run scripts/stack up (it installs Debian's influxdb)"));
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    (url, name)
}

/// The rows an InfluxQL query returns (first series); times in ns.
pub async fn query(url: &str, db: &str, q: &str) -> Vec<serde_json::Value> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(reqwest::Url::parse_with_params(&format!("{url}/query"), [("db", db), ("q", q), ("epoch", "ns")]).expect("URL"))
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("JSON");
    body["results"][0]["series"][0]["values"].as_array().cloned().unwrap_or_default()
}

/// Polls `q` until its first row's second column is `want`, for `limit` at most.
pub async fn wait_up_to(url: &str, db: &str, q: &str, want: f64, limit: Duration) {
    let started = Instant::now();
    loop {
        let rows = query(url, db, q).await;
        if rows.first().and_then(|r| r[1].as_f64()) == Some(want) {
            return;
        }
        assert!(started.elapsed() < limit, "{q}: {rows:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

