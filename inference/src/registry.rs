//! Models between MLflow and the workers: log a training run (params, metric
//! history, final metrics, the model directory as artifacts), register it as a
//! model version and point an alias at it; and load the version behind an
//! alias (downloaded once into a local cache) or a local directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mlflow::{Client, Metric, Param, RunStatus, Tag};
use model::card::{CARD_FILE, ModelCard, WEIGHTS_FILE};
use model::{Precision, Scorer};
use tch::Device;

use crate::batcher::Loaded;

/// Where a worker's model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A model directory on disk (ours, or a TorchScript export).
    Local(PathBuf),
    /// The version an alias points at in the MLflow registry.
    Alias { tracking_uri: String, name: String, alias: String, cache: PathBuf },
}

impl ModelSource {
    /// `models:/NAME@ALIAS` (with a tracking URI) or a local path.
    pub fn parse(spec: &str, tracking_uri: Option<&str>, cache: &Path) -> anyhow::Result<ModelSource> {
        match spec.strip_prefix("models:/") {
            Some(rest) => {
                let (name, alias) = rest
                    .split_once('@')
                    .filter(|(n, a)| !n.is_empty() && !a.is_empty())
                    .with_context(|| format!("model {spec:?}: expected models:/NAME@ALIAS"))?;
                // The name becomes a folder of the cache.
                anyhow::ensure!(
                    name.len() <= 128 && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) && !name.starts_with('.'),
                    "model {spec:?}: a registered model name here is letters, digits, '.', '_' and '-', not starting with '.'"
                );
                let tracking_uri =
                    tracking_uri.with_context(|| format!("model {spec:?} needs an MLflow tracking URI (--tracking-uri or FUNDUS_MLFLOW_URI)"))?;
                Ok(ModelSource::Alias { tracking_uri: tracking_uri.into(), name: name.into(), alias: alias.into(), cache: cache.into() })
            }
            None => {
                let dir = PathBuf::from(spec);
                anyhow::ensure!(dir.join(CARD_FILE).is_file(), "model {spec:?}: no {CARD_FILE} in that directory");
                Ok(ModelSource::Local(dir))
            }
        }
    }
}

/// A model resolved to files on disk, and what it is called.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub dir: PathBuf,
    /// `None` for a local directory: then the version is its weights' digest.
    pub version: Option<String>,
    pub name: Option<String>,
    pub run_id: Option<String>,
    pub source_uri: String,
}

impl ModelSource {
    /// The version the source points at now (cheap: no download).
    pub async fn current_version(&self) -> anyhow::Result<Option<String>> {
        match self {
            ModelSource::Local(_) => Ok(None),
            ModelSource::Alias { tracking_uri, name, alias, .. } => {
                let c = Client::from_env(tracking_uri)?;
                Ok(Some(c.version_by_alias(name, alias).await.with_context(|| format!("alias {name}@{alias}"))?.version))
            }
        }
    }

    /// Finds the files, downloading a registry version into the cache once.
    pub async fn resolve(&self) -> anyhow::Result<Resolved> {
        match self {
            ModelSource::Local(dir) => Ok(Resolved {
                dir: dir.clone(),
                version: None,
                name: None,
                run_id: None,
                source_uri: format!("file://{}", std::fs::canonicalize(dir).unwrap_or(dir.clone()).display()),
            }),
            ModelSource::Alias { tracking_uri, name, alias, cache } => {
                let c = Client::from_env(tracking_uri)?;
                let mv = c.version_by_alias(name, alias).await.with_context(|| format!("alias {name}@{alias}"))?;
                loadable(name, alias, &mv)?;
                let dir = cache.join(name).join(&mv.version);
                if !dir.join(CARD_FILE).is_file() {
                    let run = c.get_run(&mv.run_id).await.with_context(|| format!("run {} of {name} v{}", mv.run_id, mv.version))?;
                    let tmp = cache.join(name).join(format!(".{}-{}", mv.version, std::process::id()));
                    let _ = std::fs::remove_dir_all(&tmp);
                    std::fs::create_dir_all(&tmp)?;
                    for f in c.list_artifacts(&run.info, Some("model")).await? {
                        if f.is_dir {
                            continue;
                        }
                        let file = Path::new(&f.path).file_name().context("artifact without a name")?;
                        c.download_artifact(&run.info, &f.path, &tmp.join(file)).await?;
                    }
                    anyhow::ensure!(tmp.join(CARD_FILE).is_file(), "{name} v{}: no model/{CARD_FILE} among the run's artifacts", mv.version);
                    // A registered model names its weights by digest; loading checks them.
                    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.join(CARD_FILE))?)?;
                    anyhow::ensure!(
                        card["weights_sha256"].as_str().is_some_and(|d| d.len() == 64),
                        "{name} v{}: its {CARD_FILE} has no weights_sha256; register models trained or exported by this version of fundus",
                        mv.version
                    );
                    // Rename into place: a crash mid-download leaves only a dot-folder,
                    // and a worker that lost the race uses the winner's copy.
                    if std::fs::rename(&tmp, &dir).is_err() && dir.join(CARD_FILE).is_file() {
                        let _ = std::fs::remove_dir_all(&tmp);
                    } else if !dir.join(CARD_FILE).is_file() {
                        anyhow::bail!("could not move the downloaded model into {}", dir.display());
                    }
                }
                Ok(Resolved { dir, version: Some(mv.version), name: Some(name.clone()), run_id: Some(mv.run_id), source_uri: mv.source })
            }
        }
    }
}

/// What the registry says becomes a path and a model: a version number (a
/// folder of the cache, so nothing else), and only a version MLflow calls READY.
fn loadable(name: &str, alias: &str, mv: &mlflow::ModelVersion) -> anyhow::Result<()> {
    anyhow::ensure!(
        !mv.version.is_empty() && mv.version.len() <= 10 && mv.version.bytes().all(|c| c.is_ascii_digit()),
        "alias {name}@{alias}: the registry answered version {:?}, not a version number",
        mv.version
    );
    anyhow::ensure!(mv.status == "READY", "alias {name}@{alias}: version {} is {:?}, not READY; not loading it", mv.version, mv.status);
    Ok(())
}

/// Loads the model (blocking work on a blocking thread) and, given a
/// database, records its `model_versions` row.
pub async fn load(
    source: &ModelSource,
    device: Device,
    precision: Precision,
    pool: Option<&db::PgPool>,
) -> anyhow::Result<Loaded> {
    let r = source.resolve().await?;
    let dir = r.dir.clone();
    let scorer = tokio::task::spawn_blocking(move || Scorer::load(&dir, device, precision))
        .await?
        .with_context(|| format!("loading the model in {}", r.dir.display()))?;
    let name = r.name.clone().unwrap_or_else(|| scorer.card.name.clone());
    let version = r.version.clone().unwrap_or_else(|| format!("local-{}", scorer.digest));
    let version_id = match pool {
        Some(pool) => {
            let prep = serde_json::to_value(&scorer.card.preprocessing)?;
            db::queue::model_version(pool, &name, &version, r.run_id.as_deref(), &r.source_uri, scorer.card.threshold, &prep, &scorer.digest)
                .await?
        }
        None => uuid::Uuid::nil(),
    };
    Ok(Loaded { scorer, name, version, version_id })
}

/// What `fundus train` sends to MLflow.
pub struct TrainingRun<'a> {
    pub experiment: &'a str,
    pub run_name: Option<&'a str>,
    pub card: &'a ModelCard,
    pub model_dir: &'a Path,
    pub n: (usize, usize, usize),
    pub data: &'a str,
    /// Register under this name; point `alias` at the new version.
    pub register: Option<&'a str>,
    pub alias: Option<&'a str>,
}

/// The run and model version created.
pub struct Logged {
    pub run_id: String,
    pub version: Option<String>,
}

fn eval_metrics(prefix: &str, e: &model::Evaluation, out: &mut Vec<Metric>) {
    for (k, v) in [
        ("auc", e.auc),
        ("sensitivity", e.sensitivity),
        ("specificity", e.specificity),
        ("pauc90", e.partial_auc_90),
        ("gradable_auc", e.gradable_auc),
        ("ece", e.calibration_error),
    ] {
        if v.is_finite() {
            out.push(Metric::new(format!("{prefix}_{k}"), v, 0));
        }
    }
}

/// Logs a finished training run and registers its model. The run is marked
/// FAILED if logging its artifacts fails part way.
pub async fn log_training(tracking_uri: &str, t: &TrainingRun<'_>) -> anyhow::Result<Logged> {
    let c = Client::from_env(tracking_uri)?;
    let exp = c.get_or_create_experiment(t.experiment).await.with_context(|| format!("MLflow at {tracking_uri}"))?;
    let tags = [Tag::new("fundus.model", &t.card.name), Tag::new("mlflow.source.name", "fundus train")];
    let run = c.create_run(&exp.experiment_id, t.run_name, &tags).await?;
    let id = run.info.run_id.clone();
    let result = async {
        let tc = &t.card.train;
        let params = vec![
            Param::new("arch", format!("{:?}", tc.arch).to_lowercase()),
            Param::new("size", tc.size.to_string()),
            Param::new("epochs", tc.epochs.to_string()),
            Param::new("batch_size", tc.batch_size.to_string()),
            Param::new("lr", tc.lr.to_string()),
            Param::new("weight_decay", tc.weight_decay.to_string()),
            Param::new("patience", tc.patience.to_string()),
            Param::new("seed", tc.seed.to_string()),
            Param::new("init", tc.init.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into())),
            Param::new("n_train", t.n.0.to_string()),
            Param::new("n_val", t.n.1.to_string()),
            Param::new("n_test", t.n.2.to_string()),
            Param::new("data", t.data),
            Param::new("data_fingerprint", &t.card.data_fingerprint),
        ];
        let mut metrics = Vec::new();
        for h in &t.card.history {
            let step = h.epoch as i64;
            for (k, v) in [("train_loss", h.train_loss), ("val_auc", h.val_auc), ("val_gradable_auc", h.val_gradable_auc)] {
                if v.is_finite() {
                    metrics.push(Metric::new(k, v, step));
                }
            }
        }
        // The final values are logged at the best epoch's step, after the history.
        let last = t.card.history.last().map(|h| h.epoch as i64 + 1).unwrap_or(0);
        let mut finals = Vec::new();
        eval_metrics("val", &t.card.validation, &mut finals);
        if let Some(test) = &t.card.test {
            eval_metrics("test", test, &mut finals);
        }
        finals.push(Metric::new("threshold", t.card.threshold as f64, 0));
        finals.push(Metric::new("best_epoch", t.card.best_epoch as f64, 0));
        metrics.extend(finals.into_iter().map(|m| Metric { step: last, ..m }));
        c.log_batch(&id, &params, &metrics, &[]).await?;
        for f in [CARD_FILE, WEIGHTS_FILE] {
            c.upload_artifact(&run.info, &format!("model/{f}"), &t.model_dir.join(f)).await?;
        }
        for f in ["roc.png", "roc.csv"] {
            let p = t.model_dir.join(f);
            if p.is_file() {
                c.upload_artifact(&run.info, f, &p).await?;
            }
        }
        c.finish_run(&id, RunStatus::Finished).await?;
        let mut version = None;
        if let Some(name) = t.register {
            c.create_registered_model(name).await?;
            let v = c.create_model_version(name, &run.info.artifact_location("model"), Some(&id)).await?;
            if let Some(alias) = t.alias {
                c.set_alias(name, alias, &v.version).await?;
            }
            version = Some(v.version);
        }
        anyhow::Ok(version)
    }
    .await;
    match result {
        Ok(version) => Ok(Logged { run_id: id, version }),
        Err(e) => {
            let _ = c.finish_run(&id, RunStatus::Failed).await;
            Err(e.context(format!("logging run {id}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &str, status: &str) -> mlflow::ModelVersion {
        serde_json::from_value(serde_json::json!({ "name": "m", "version": v, "status": status })).expect("version")
    }

    #[test]
    fn only_ready_numbered_versions_load() {
        assert!(loadable("m", "a", &version("12", "READY")).is_ok());
        for bad in ["../../etc", "1/2", "", "12345678901", "1 "] {
            let e = loadable("m", "a", &version(bad, "READY")).expect_err(bad).to_string();
            assert!(e.contains("not a version number"), "{e}");
        }
        for status in ["PENDING_REGISTRATION", "FAILED_REGISTRATION", ""] {
            assert!(loadable("m", "a", &version("3", status)).expect_err(status).to_string().contains("not READY"));
        }
    }

    #[test]
    fn registry_names_cannot_leave_the_cache() {
        let cache = Path::new("/tmp/cache");
        for bad in ["models:/../x@a", "models:/a/b@c", "models:/.hidden@a"] {
            assert!(ModelSource::parse(bad, Some("http://127.0.0.1:1"), cache).is_err(), "{bad}");
        }
        assert!(ModelSource::parse("models:/fundus-glaucoma@champion", Some("http://127.0.0.1:1"), cache).is_ok());
    }
}
