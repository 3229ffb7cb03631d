//! Experiments and runs: find or create an experiment by name, create a run in it, finish it
//! with a status, and read runs back (one by id, or all of an experiment).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::Client;
use crate::de;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    #[serde(default)]
    pub artifact_location: String,
    /// `active`, or `deleted` while it sits in the server's trash.
    #[serde(default)]
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: String,
    pub status: RunStatus,
    /// Milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub end_time: Option<i64>,
    /// Where the run's artifacts live, e.g. `mlflow-artifacts:/1/<run_id>/artifacts`.
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default)]
    pub lifecycle_stage: String,
}

impl RunInfo {
    /// The URI of `path` among the run's artifacts: the `source` of a model version
    /// registered from them.
    pub fn artifact_location(&self, path: &str) -> String {
        format!("{}/{}", self.artifact_uri.trim_end_matches('/'), path.trim_start_matches('/'))
    }
}

/// What a run holds. For metrics, the latest value of each key (the highest step, then the
/// latest timestamp), not the history.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<Param>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl RunData {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|p| p.key == key).map(|p| p.value.as_str())
    }

    pub fn metric(&self, key: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.key == key)
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(deserialize_with = "de::f64", serialize_with = "de::write_f64")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[serde(deserialize_with = "de::i64")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "de::i64")]
    pub step: i64,
}

impl Metric {
    /// A metric value at `step`, timestamped now.
    pub fn new(key: impl Into<String>, value: f64, step: i64) -> Metric {
        Metric { key: key.into(), value, timestamp: now_ms(), step }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl Param {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Param {
        Param { key: key.into(), value: value.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl Tag {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag { key: key.into(), value: value.into() }
    }
}

/// A search over runs, one page at a time. `filter` and `order_by` use MLflow's search syntax,
/// e.g. `metrics.auc > 0.9` and `attributes.start_time DESC`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSearch {
    pub experiment_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order_by: Vec<String>,
    /// Runs per page; the server's default is 1000, its maximum 50000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunPage {
    #[serde(default)]
    pub runs: Vec<Run>,
    /// Present when there are more runs: put it in `RunSearch::page_token` for the next page.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// Milliseconds since the Unix epoch, MLflow's timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(Deserialize)]
struct ExperimentReply {
    experiment: Experiment,
}

#[derive(Deserialize)]
struct CreatedExperiment {
    experiment_id: String,
}

#[derive(Deserialize)]
struct RunReply {
    run: Run,
}

#[derive(Deserialize)]
struct RunInfoReply {
    run_info: RunInfo,
}

#[derive(Deserialize)]
struct HistoryPage {
    #[serde(default)]
    metrics: Vec<Metric>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl Client {
    /// The experiment with this name, if there is one (deleted ones included).
    pub async fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        match self.get_json::<ExperimentReply>("experiments/get-by-name", &[("experiment_name", name)]).await {
            Ok(r) => Ok(Some(r.experiment)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn experiment(&self, experiment_id: &str) -> Result<Experiment> {
        let r: ExperimentReply = self.get_json("experiments/get", &[("experiment_id", experiment_id)]).await?;
        Ok(r.experiment)
    }

    /// The experiment with this name, created if there is none. Safe to call concurrently:
    /// when another caller creates it first, that one is returned.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<Experiment> {
        let found = match self.experiment_by_name(name).await? {
            Some(e) => e,
            None => match self.post_json::<CreatedExperiment>("experiments/create", &json!({ "name": name })).await {
                Ok(created) => self.experiment(&created.experiment_id).await?,
                Err(e) if e.is_already_exists() => {
                    self.experiment_by_name(name).await?.ok_or_else(|| Error::Protocol {
                        endpoint: "experiments/get-by-name".into(),
                        detail: format!("experiment {name:?} exists by create, but not by name"),
                    })?
                }
                Err(e) => return Err(e),
            },
        };
        // A deleted experiment keeps its name but takes no runs; only a person should restore it.
        if found.lifecycle_stage == "deleted" {
            return Err(Error::Invalid(format!(
                "experiment {name:?} (id {}) is deleted; restore it or permanently delete it on the server",
                found.experiment_id
            )));
        }
        Ok(found)
    }

    /// A new run, started now, with these tags. MLflow records `run_name` as the tag
    /// `mlflow.runName` too.
    pub async fn create_run(&self, experiment_id: &str, run_name: Option<&str>, tags: &[Tag]) -> Result<Run> {
        crate::batch::check_tags(tags)?;
        let mut body = json!({ "experiment_id": experiment_id, "start_time": now_ms(), "tags": tags });
        if let Some(name) = run_name {
            body["run_name"] = json!(name);
        }
        Ok(self.post_json::<RunReply>("runs/create", &body).await?.run)
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run> {
        Ok(self.get_json::<RunReply>("runs/get", &[("run_id", run_id)]).await?.run)
    }

    /// Sets the run's status and, when given, its end time (ms since the epoch).
    pub async fn update_run(&self, run_id: &str, status: RunStatus, end_time: Option<i64>) -> Result<RunInfo> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if let Some(t) = end_time {
            body["end_time"] = json!(t);
        }
        Ok(self.post_json::<RunInfoReply>("runs/update", &body).await?.run_info)
    }

    /// Ends the run now with `status` (`Finished`, `Failed` or `Killed`).
    pub async fn finish_run(&self, run_id: &str, status: RunStatus) -> Result<RunInfo> {
        if matches!(status, RunStatus::Running | RunStatus::Scheduled) {
            return Err(Error::Invalid(format!("a run cannot finish as {status:?}")));
        }
        self.update_run(run_id, status, Some(now_ms())).await
    }

    /// Every logged point of one metric of a run, following the pages.
    pub async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        let mut points = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("run_id", run_id), ("metric_key", key)];
            if !token.is_empty() {
                query.push(("page_token", &token));
            }
            let page: HistoryPage = self.get_json("metrics/get-history", &query).await?;
            points.extend(page.metrics);
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = next,
                _ => return Ok(points),
            }
        }
    }

    /// One page of runs.
    pub async fn search_runs(&self, search: &RunSearch) -> Result<RunPage> {
        self.post_json("runs/search", search).await
    }

    /// Every active run of an experiment, newest first, following the pages.
    pub async fn runs_of_experiment(&self, experiment_id: &str) -> Result<Vec<Run>> {
        let mut search = RunSearch {
            experiment_ids: vec![experiment_id.to_owned()],
            order_by: vec!["attributes.start_time DESC".into()],
            max_results: Some(1000),
            ..RunSearch::default()
        };
        let mut runs = Vec::new();
        loop {
            let page = self.search_runs(&search).await?;
            runs.extend(page.runs);
            match page.next_page_token {
                Some(token) if !token.is_empty() => search.page_token = Some(token),
                _ => return Ok(runs),
            }
        }
    }
}
