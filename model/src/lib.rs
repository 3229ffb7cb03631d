//! Fundus's models: networks (tch), training, evaluation metrics, model cards.
//! Preprocessing comes from `imaging`, so training and inference share it.
//! No tokio, sqlx or HTTP here.

pub mod calibrate;
pub mod card;
pub mod data;
pub mod heatmap;
pub mod metrics;
pub mod net;
pub mod score;
pub mod train;

pub use card::{Evaluation, ModelCard};
pub use net::{Arch, Net};
pub use score::{Precision, Scorer, Scores};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data: {0}")]
    Data(String),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}
