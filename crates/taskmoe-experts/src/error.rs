//! The experts crate's error type.

use thiserror::Error;

/// What can go wrong when building or running an expert layer.
#[derive(Debug, Error)]
pub enum ExpertsError {
    /// A configuration value is out of range; `key` is its dotted path.
    #[error("config key `{key}`: {message}")]
    Config {
        /// Dotted path of the key.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An input or argument does not fit the layer.
    #[error("{0}")]
    Input(String),
    /// The router failed.
    #[error(transparent)]
    Router(#[from] taskmoe_router::RouterError),
    /// A routing kernel failed.
    #[error(transparent)]
    Kernel(#[from] taskmoe_kernels::KernelError),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`ExpertsError`].
pub type Result<T> = std::result::Result<T, ExpertsError>;
