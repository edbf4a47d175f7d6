//! The model crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong when building, running, saving or loading a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A configuration value is out of range; `key` is its dotted path.
    #[error("config key `{key}`: {message}")]
    Config {
        /// Dotted path of the key.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An input does not fit the model.
    #[error("{0}")]
    Input(String),
    /// A checkpoint does not match the model: every problem is listed.
    #[error("checkpoint {path}: {}", problems.join("; "))]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Missing, extra and mis-shaped tensors, one entry each.
        problems: Vec<String>,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A feed-forward layer failed.
    #[error(transparent)]
    Experts(#[from] taskmoe_experts::ExpertsError),
    /// A routing kernel (the grouping by task) failed.
    #[error(transparent)]
    Kernel(#[from] taskmoe_kernels::KernelError),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;

/// A [`ModelError::Config`] for `key`.
pub(crate) fn config_error(key: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::Config {
        key: key.into(),
        message: message.into(),
    }
}
