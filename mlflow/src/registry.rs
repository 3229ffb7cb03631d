//! The model registry: named models, their numbered versions (each pointing at a run's
//! artifacts), and aliases such as `champion` that name one version and can be moved.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use crate::client::Client;
use crate::de;
use crate::error::Result;

#[derive(Debug, Clone, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    /// A decimal number, as MLflow sends it: `"1"`, `"2"`, …
    pub version: String,
    /// Where the model's files are, e.g. `mlflow-artifacts:/1/<run_id>/artifacts/model`.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: String,
    /// `READY` once registered (`PENDING_REGISTRATION`, `FAILED_REGISTRATION` otherwise).
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub creation_timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct VersionReply {
    model_version: ModelVersion,
}

impl Client {
    /// Creates the registered model `name`; one that exists already is fine.
    pub async fn create_registered_model(&self, name: &str) -> Result<()> {
        match self.post_json::<IgnoredAny>("registered-models/create", &json!({ "name": name })).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A new version of the registered model `name` (which must exist), with the files at
    /// `source`; for a run's artifacts, `RunInfo::artifact_location`.
    pub async fn create_model_version(&self, name: &str, source: &str, run_id: Option<&str>) -> Result<ModelVersion> {
        let mut body = json!({ "name": name, "source": source });
        if let Some(id) = run_id {
            body["run_id"] = json!(id);
        }
        Ok(self.post_json::<VersionReply>("model-versions/create", &body).await?.model_version)
    }

    pub async fn model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let r: VersionReply = self.get_json("model-versions/get", &[("name", name), ("version", version)]).await?;
        Ok(r.model_version)
    }

    /// Points `alias` at `version`, moving it if it pointed elsewhere.
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        let body = json!({ "name": name, "alias": alias, "version": version });
        self.post_json::<IgnoredAny>("registered-models/alias", &body).await?;
        Ok(())
    }

    /// The version `alias` points at. MLflow 3 answers an alias that is not set with
    /// `INVALID_PARAMETER_VALUE` ("alias … not found"), not `RESOURCE_DOES_NOT_EXIST`.
    pub async fn version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        let r: VersionReply = self.get_json("registered-models/alias", &[("name", name), ("alias", alias)]).await?;
        Ok(r.model_version)
    }

    /// Removes `alias`; removing one that is not set succeeds.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        self.delete_json::<IgnoredAny>("registered-models/alias", &json!({ "name": name, "alias": alias })).await?;
        Ok(())
    }
}
