//! The router crate's error type.

use thiserror::Error;

/// What can go wrong when configuring or running a router.
#[derive(Debug, Error)]
pub enum RouterError {
    /// A configuration value is out of range; `key` is its path (e.g. `router.k`).
    #[error("config key `{key}`: {message}")]
    Config {
        /// Dotted path of the key.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// An input tensor or argument does not fit the router.
    #[error("router: {0}")]
    Input(String),
    /// A routing kernel failed.
    #[error(transparent)]
    Kernel(#[from] taskmoe_kernels::KernelError),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`RouterError`].
pub type Result<T> = std::result::Result<T, RouterError>;
