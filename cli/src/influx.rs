//! Pushing the metrics `/metrics` serves to InfluxDB as line protocol, for
//! operators whose monitoring lives there: every `--influx-interval-secs`
//! the exposition is sampled and converted (one point per series: the
//! metric's name as the measurement, its labels as tags, `value` as the
//! field), buffered, and written in one request to `/write?db=…` (InfluxDB
//! 1.x, and 2.x's 1.x-compatible API with a token). It runs off the request
//! path; while InfluxDB is down points wait in a bounded buffer with
//! backoff, and those pushed out of it are counted
//! (`fundus_influx_dropped_points`, written with every batch).

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Points kept while InfluxDB cannot be reached (a few minutes of a worker's).
const MAX_BUFFERED: usize = 50_000;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// No `Debug`: it holds the token.
#[derive(clap::Args, Clone)]
pub struct InfluxArgs {
    /// Also push the metrics, as InfluxDB line protocol, to this InfluxDB
    /// HTTP API (e.g. http://influx.internal:8086).
    #[arg(long, env = "FUNDUS_INFLUX_URL")]
    pub influx_url: Option<String>,
    /// The database (InfluxDB 1.x), or the bucket mapped to it (2.x).
    #[arg(long, env = "FUNDUS_INFLUX_DB", default_value = "fundus")]
    pub influx_db: String,
    /// An API token (InfluxDB 2.x), sent as `Authorization: Token …`.
    #[arg(long, env = "FUNDUS_INFLUX_TOKEN", hide_env_values = true)]
    pub influx_token: Option<String>,
    /// Seconds between samples.
    #[arg(long, env = "FUNDUS_INFLUX_INTERVAL_SECS", default_value_t = 5.0)]
    pub influx_interval_secs: f64,
}

/// Starts pushing what `render` returns (a Prometheus text exposition) when
/// `--influx-url` is set; the task flushes once more when `stop` fires.
pub fn spawn<F, Fut>(a: &InfluxArgs, render: F, stop: CancellationToken) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = String> + Send,
{
    let Some(url) = &a.influx_url else { return Ok(None) };
    let mut write = reqwest::Url::parse(url).with_context(|| format!("invalid_influx_url: --influx-url {url:?} is not a URL"))?;
    anyhow::ensure!(matches!(write.scheme(), "http" | "https"), "invalid_influx_url: --influx-url must be http:// or https://, not {url:?}");
    anyhow::ensure!(!a.influx_db.is_empty(), "invalid_influx_db: --influx-db must not be empty");
    anyhow::ensure!(
        a.influx_interval_secs.is_finite() && (0.1..=3600.0).contains(&a.influx_interval_secs),
        "invalid_influx_interval: --influx-interval-secs must be between 0.1 and 3600, not {}",
        a.influx_interval_secs
    );
    write.set_path(&format!("{}/write", write.path().trim_end_matches('/')));
    write.query_pairs_mut().append_pair("db", &a.influx_db).append_pair("precision", "ns");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let (token, every) = (a.influx_token.clone(), Duration::from_secs_f64(a.influx_interval_secs));
    tracing::info!(url = %url, db = %a.influx_db, "pushing metrics to InfluxDB");
    Ok(Some(tokio::spawn(async move {
        let mut buf: VecDeque<String> = VecDeque::new();
        let (mut dropped, mut backoff, mut next_try) = (0u64, every, tokio::time::Instant::now());
        let (mut failing, mut stopping) = (false, false);
        // A first sample at once, then one every interval, and a last one at the stop.
        loop {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
            buf.extend(line_protocol(&render().await, now));
            dropped += bound(&mut buf, MAX_BUFFERED) as u64;
            if stopping || tokio::time::Instant::now() >= next_try {
                let mut body: String = buf.iter().map(|l| format!("{l}\n")).collect();
                body += &format!("fundus_influx_dropped_points value={dropped} {now}\n");
                let mut req = http.post(write.clone()).body(body);
                if let Some(t) = &token {
                    req = req.header("authorization", format!("Token {t}"));
                }
                match req.send().await.map_err(|e| e.to_string()).and_then(|r| r.error_for_status().map_err(|e| e.to_string())) {
                    Ok(_) => {
                        if failing {
                            tracing::info!(points = buf.len(), dropped, "InfluxDB reachable again");
                        }
                        buf.clear();
                        (failing, backoff) = (false, every);
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot write to InfluxDB; keeping points and backing off");
                        }
                        failing = true;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        next_try = tokio::time::Instant::now() + backoff;
                    }
                }
            }
            if stopping {
                return;
            }
            stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep(every) => false,
            };
        }
    })))
}

/// Drops the oldest points beyond `max`; returns how many.
fn bound(buf: &mut VecDeque<String>, max: usize) -> usize {
    let over = buf.len().saturating_sub(max);
    buf.drain(..over);
    over
}

/// A Prometheus text exposition as line-protocol points at `ts_ns`: one per
/// sample, the metric's name as the measurement, its labels as tags (empty
/// ones left out: InfluxDB refuses them) and `value` as a float field.
/// Samples that are not finite (InfluxDB stores no NaN) are left out.
pub fn line_protocol(text: &str, ts_ns: u128) -> Vec<String> {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| point(l, ts_ns)).collect()
}

fn point(line: &str, ts_ns: u128) -> Option<String> {
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut out = escape(name, &[',', ' ']);
    if let Some(after) = rest.strip_prefix('{') {
        let (labels, tail) = parse_labels(after)?;
        for (k, v) in labels {
            if !v.is_empty() {
                out += &format!(",{}={}", escape(&k, &[',', '=', ' ']), escape(&v, &[',', '=', ' ']));
            }
        }
        rest = tail;
    }
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then(|| format!("{out} value={value} {ts_ns}"))
}

/// `k="v",k2="v2"}` → the pairs (values unescaped) and what follows `}`.
fn parse_labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut pairs = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(tail) = rest.strip_prefix('}') {
            return Some((pairs, tail));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_owned();
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push_str("\\n"),
                    c => value.push(c),
                },
                (i, '"') => break eq + 1 + i + 1,
                (_, c) => value.push(c),
            }
        };
        pairs.push((key, value));
        rest = &rest[end..];
    }
}

/// Backslash before each of `special` (line protocol's escaping).
fn escape(s: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_become_points_with_tags() {
        let text = "# HELP fundus_worker_jobs Jobs ended by outcome.\n\
                    # TYPE fundus_worker_jobs counter\n\
                    fundus_worker_jobs_total{outcome=\"done\"} 12\n\
                    fundus_worker_queue_depth{priority=\"urgent\"} 3\n\
                    fundus_worker_job_seconds_bucket{le=\"+Inf\"} 7\n\
                    fundus_worker_dead_jobs 0\n\
                    fundus_review_oldest_age_seconds NaN\n\
                    # EOF\n";
        assert_eq!(
            line_protocol(text, 42),
            [
                "fundus_worker_jobs_total,outcome=done value=12 42",
                "fundus_worker_queue_depth,priority=urgent value=3 42",
                "fundus_worker_job_seconds_bucket,le=+Inf value=7 42",
                "fundus_worker_dead_jobs value=0 42",
            ]
        );
    }

    /// Spaces, commas and equals signs in tags are escaped; quotes in a tag
    /// are literal in line protocol and stay; an empty tag is left out.
    #[test]
    fn tags_are_escaped() {
        let text = r#"fundus_ingest_uploads_total{outcome="a b,c=d",note="say \"hi\"",empty="",path="C:\\x"} 1.5"#;
        assert_eq!(line_protocol(text, 7), [r#"fundus_ingest_uploads_total,outcome=a\ b\,c\=d,note=say\ "hi",path=C:\x value=1.5 7"#]);
        assert_eq!(escape("a b,c", &[',', ' ']), r"a\ b\,c");
    }

    #[test]
    fn malformed_lines_are_skipped_not_guessed() {
        for bad in ["fundus_x{outcome=\"done\" 1", "fundus_x{outcome=done} 1", "fundus_x not-a-number", "fundus_x"] {
            assert!(line_protocol(bad, 1).is_empty(), "{bad}");
        }
    }

    #[test]
    fn the_buffer_keeps_the_newest_and_counts_the_rest() {
        let mut buf: VecDeque<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(bound(&mut buf, 4), 6);
        assert_eq!(buf, ["6", "7", "8", "9"]);
        assert_eq!(bound(&mut buf, 4), 0);
    }
}
