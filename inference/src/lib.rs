//! Scoring: the queue worker and its dynamic batcher, review routing, batch
//! screening with its report, offline scoring of a folder, and the bridge to
//! the MLflow registry. SQL lives in `db`, networks in `model`.

pub mod batcher;
mod manifest;
pub mod metrics;
pub mod offline;
pub mod pipeline;
pub mod registry;
pub mod report;
pub mod route;
pub mod screen;
pub mod worker;

pub use batcher::{BatchConfig, Batcher, Loaded, ModelInfo, Scored};
pub use registry::ModelSource;
pub use route::Routing;
pub use worker::{Summary, WorkerConfig};
