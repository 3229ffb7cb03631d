//! A client for the REST API of an MLflow tracking server: experiments and runs, params,
//! metrics and tags logged in batches within the server's limits, artifacts streamed through
//! the server's artifact proxy (`mlflow server --serve-artifacts`), and the model registry
//! with its aliases.
//!
//! It knows MLflow and nothing of what is tracked with it. Every call is async (reqwest);
//! failures are [`Error`]s that keep MLflow's own error codes.
//!
//! ```no_run
//! # async fn demo() -> mlflow::Result<()> {
//! use mlflow::{Client, Metric, Param, RunStatus};
//!
//! let client = Client::new("http://127.0.0.1:5000")?;
//! let exp = client.get_or_create_experiment("my-experiment").await?;
//! let run = client.create_run(&exp.experiment_id, Some("baseline"), &[]).await?;
//! let id = &run.info.run_id;
//! client.log_batch(id, &[Param::new("lr", "0.001")], &[Metric::new("loss", 0.42, 1)], &[]).await?;
//! client.upload_artifact(&run.info, "model/weights.bin", "weights.bin".as_ref()).await?;
//! client.finish_run(id, RunStatus::Finished).await?;
//!
//! client.create_registered_model("my-model").await?;
//! let source = run.info.artifact_location("model");
//! let version = client.create_model_version("my-model", &source, Some(id)).await?;
//! client.set_alias("my-model", "champion", &version.version).await?;
//! # Ok(())
//! # }
//! ```

mod artifacts;
mod batch;
mod client;
mod de;
mod error;
mod registry;
mod tracking;

pub use artifacts::FileInfo;
pub use batch::{
    MAX_ENTITIES_PER_REQUEST, MAX_KEY_CHARS, MAX_METRICS_PER_REQUEST, MAX_PARAM_VALUE_CHARS, MAX_PARAMS_PER_REQUEST,
    MAX_REQUEST_BYTES, MAX_TAG_VALUE_CHARS, MAX_TAGS_PER_REQUEST,
};
pub use client::{Auth, Client, Timeouts};
pub use error::{Error, INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, Result};
pub use registry::ModelVersion;
pub use tracking::{Experiment, Metric, Param, Run, RunData, RunInfo, RunPage, RunSearch, RunStatus, Tag, now_ms};
