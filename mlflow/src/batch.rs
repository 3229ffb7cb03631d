//! `log_batch`: params, metrics and tags of any number, split into requests the server
//! accepts. Everything is checked against the server's rules first, so a batch that would be
//! refused half-way is refused whole, before anything is sent.

use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::tracking::{Metric, Param, Tag};

/// The server's limits on one `runs/log-batch` request (MLflow's `utils/validation.py`).
pub const MAX_METRICS_PER_REQUEST: usize = 1000;
pub const MAX_PARAMS_PER_REQUEST: usize = 100;
pub const MAX_TAGS_PER_REQUEST: usize = 100;
pub const MAX_ENTITIES_PER_REQUEST: usize = 1000;
/// Bytes of one request body.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// Characters, as Python counts them (code points).
pub const MAX_KEY_CHARS: usize = 250;
pub const MAX_PARAM_VALUE_CHARS: usize = 6000;
pub const MAX_TAG_VALUE_CHARS: usize = 8000;

/// Room left in each request for the run id and the JSON around the entities.
const ENVELOPE_BYTES: usize = 1000;

#[derive(Debug, Default, Serialize)]
struct Chunk<'a> {
    run_id: &'a str,
    params: Vec<&'a Param>,
    tags: Vec<&'a Tag>,
    metrics: Vec<&'a Metric>,
}

impl Chunk<'_> {
    fn len(&self) -> usize {
        self.params.len() + self.tags.len() + self.metrics.len()
    }
}

impl Client {
    /// Logs params, metrics and tags to a run, in as many requests as the server's limits need.
    /// Params cannot change once logged: logging a key again with another value is refused by
    /// the server. Metrics keep their history, one point per (key, timestamp, step).
    pub async fn log_batch(&self, run_id: &str, params: &[Param], metrics: &[Metric], tags: &[Tag]) -> Result<()> {
        check_params(params)?;
        check_tags(tags)?;
        for m in metrics {
            check_key("metric", &m.key)?;
        }
        for chunk in chunks(run_id, params, metrics, tags)? {
            self.post_json::<serde::de::IgnoredAny>("runs/log-batch", &chunk).await?;
        }
        Ok(())
    }

    pub async fn log_params(&self, run_id: &str, params: &[Param]) -> Result<()> {
        self.log_batch(run_id, params, &[], &[]).await
    }

    pub async fn log_metrics(&self, run_id: &str, metrics: &[Metric]) -> Result<()> {
        self.log_batch(run_id, &[], metrics, &[]).await
    }

    pub async fn set_tags(&self, run_id: &str, tags: &[Tag]) -> Result<()> {
        self.log_batch(run_id, &[], &[], tags).await
    }
}

/// Fills each request with params and tags first, then metrics, up to every limit at once.
fn chunks<'a>(run_id: &'a str, params: &'a [Param], metrics: &'a [Metric], tags: &'a [Tag]) -> Result<Vec<Chunk<'a>>> {
    let mut out = Vec::new();
    let (mut p, mut t, mut m) = (params.iter().peekable(), tags.iter().peekable(), metrics.iter().peekable());
    while p.peek().is_some() || t.peek().is_some() || m.peek().is_some() {
        let mut chunk = Chunk { run_id, ..Chunk::default() };
        let mut bytes = ENVELOPE_BYTES + run_id.len();
        // `fits` charges an entity's JSON size against the request when it fits.
        let mut fits = |entity: &dyn ErasedSize, count: usize, max: usize, total: usize| -> Result<bool> {
            if count >= max || total >= MAX_ENTITIES_PER_REQUEST {
                return Ok(false);
            }
            let size = entity.json_size()? + 1;
            if bytes + size > MAX_REQUEST_BYTES {
                return Ok(false);
            }
            bytes += size;
            Ok(true)
        };
        while let Some(&x) = p.peek() {
            if !fits(x, chunk.params.len(), MAX_PARAMS_PER_REQUEST, chunk.len())? {
                break;
            }
            chunk.params.push(x);
            p.next();
        }
        while let Some(&x) = t.peek() {
            if !fits(x, chunk.tags.len(), MAX_TAGS_PER_REQUEST, chunk.len())? {
                break;
            }
            chunk.tags.push(x);
            t.next();
        }
        while let Some(&x) = m.peek() {
            if !fits(x, chunk.metrics.len(), MAX_METRICS_PER_REQUEST, chunk.len())? {
                break;
            }
            chunk.metrics.push(x);
            m.next();
        }
        // Cannot happen after the checks (one entity is at most ~50 KB), but an empty request
        // here would loop for ever.
        if chunk.len() == 0 {
            return Err(Error::Invalid("an entity is too large for one log-batch request".into()));
        }
        out.push(chunk);
    }
    Ok(out)
}

/// The JSON size of one entity, whatever its type.
trait ErasedSize {
    fn json_size(&self) -> Result<usize>;
}

impl<T: Serialize> ErasedSize for T {
    fn json_size(&self) -> Result<usize> {
        serde_json::to_vec(self).map(|v| v.len()).map_err(|e| Error::Invalid(format!("cannot encode: {e}")))
    }
}

fn check_params(params: &[Param]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for p in params {
        check_key("param", &p.key)?;
        check_len(&format!("param {:?}", p.key), &p.value, MAX_PARAM_VALUE_CHARS)?;
        // The server refuses a batch that names a param twice.
        if !seen.insert(p.key.as_str()) {
            return Err(Error::Invalid(format!("param {:?} is given twice; a param has one value", p.key)));
        }
    }
    Ok(())
}

pub(crate) fn check_tags(tags: &[Tag]) -> Result<()> {
    for t in tags {
        check_key("tag", &t.key)?;
        check_len(&format!("tag {:?}", t.key), &t.value, MAX_TAG_VALUE_CHARS)?;
    }
    Ok(())
}

fn check_len(what: &str, value: &str, max: usize) -> Result<()> {
    let chars = value.chars().count();
    if chars > max {
        return Err(Error::Invalid(format!(
            "the value of {what} is {chars} characters long; MLflow accepts at most {max}"
        )));
    }
    Ok(())
}

/// MLflow's rules for param, metric and tag names: word characters, `_ - . : / ` and space,
/// at most 250 characters, and a normalised relative path (no empty, `.` or `..` parts).
fn check_key(kind: &str, key: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Invalid(format!("{kind} name {key:?} {why}")));
    let shown: String = key.chars().take(60).collect();
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(Error::Invalid(format!("{kind} name {shown:?}… is longer than {MAX_KEY_CHARS} characters")));
    }
    if let Some(c) = key.chars().find(|&c| !(c.is_alphanumeric() || "_-.:/ ".contains(c))) {
        return bad(&format!(
            "contains {c:?}: names may only contain alphanumerics, underscores, dashes, periods, colons, \
             spaces and slashes"
        ));
    }
    if key.starts_with("..") || key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return bad("is not a normalised relative path (empty, `.` or `..` parts, or a leading or trailing slash)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(n: usize) -> Vec<Metric> {
        (0..n).map(|i| Metric { key: format!("m{}", i % 7), value: i as f64, timestamp: 1, step: i as i64 }).collect()
    }

    fn params(n: usize, value_len: usize) -> Vec<Param> {
        (0..n).map(|i| Param::new(format!("p{i}"), "v".repeat(value_len))).collect()
    }

    fn within_limits(c: &Chunk) {
        assert!(c.params.len() <= MAX_PARAMS_PER_REQUEST);
        assert!(c.tags.len() <= MAX_TAGS_PER_REQUEST);
        assert!(c.metrics.len() <= MAX_METRICS_PER_REQUEST);
        assert!(c.len() <= MAX_ENTITIES_PER_REQUEST);
        assert!(serde_json::to_vec(c).expect("json").len() <= MAX_REQUEST_BYTES);
    }

    #[test]
    fn splits_by_count_and_keeps_everything_in_order() {
        let (p, m) = (params(150, 5), metrics(2500));
        let t = vec![Tag::new("a", "b")];
        let cs = chunks("r", &p, &m, &t).expect("chunks");
        cs.iter().for_each(within_limits);
        assert_eq!(cs.len(), 3); // 100 p + 1 t + 899 m, 50 p + 950 m, 651 m
        let all_p: Vec<_> = cs.iter().flat_map(|c| c.params.iter().map(|x| x.key.clone())).collect();
        assert_eq!(all_p, p.iter().map(|x| x.key.clone()).collect::<Vec<_>>());
        let all_m: Vec<_> = cs.iter().flat_map(|c| c.metrics.iter().map(|x| x.step)).collect();
        assert_eq!(all_m, (0..2500).collect::<Vec<_>>());
    }

    #[test]
    fn splits_by_size() {
        // 100 params of 6000 characters and 100 tags of 8000 are 1.4 MB: too much for one request.
        let p = params(100, MAX_PARAM_VALUE_CHARS);
        let t: Vec<_> = (0..100).map(|i| Tag::new(format!("t{i}"), "x".repeat(MAX_TAG_VALUE_CHARS))).collect();
        let cs = chunks("r", &p, &[], &t).expect("chunks");
        assert_eq!(cs.len(), 2);
        cs.iter().for_each(within_limits);
    }

    #[test]
    fn nothing_to_log_sends_nothing() {
        assert!(chunks("r", &[], &[], &[]).expect("chunks").is_empty());
    }

    #[test]
    fn refuses_what_the_server_would() {
        assert!(check_params(&params(1, MAX_PARAM_VALUE_CHARS)).is_ok());
        let e = check_params(&params(1, MAX_PARAM_VALUE_CHARS + 1)).expect_err("too long");
        assert!(e.to_string().contains("6001 characters"), "{e}");
        // Characters, not bytes: 6000 two-byte characters are fine.
        assert!(check_params(&[Param::new("p", "é".repeat(MAX_PARAM_VALUE_CHARS))]).is_ok());
        assert!(check_params(&[Param::new("p", "1"), Param::new("p", "1")]).is_err());
        for key in ["", "a//b", "/a", "a/", "a/../b", "..a", "a?b", "a\nb", &"k".repeat(251)] {
            assert!(check_key("metric", key).is_err(), "{key:?}");
        }
        for key in ["loss", "val/auc", "lr:head", "epoch time", "a.b-c_d", "größe", &"k".repeat(250)] {
            assert!(check_key("metric", key).is_ok(), "{key:?}");
        }
    }
}
