//! The optimizer crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong in the optimizer, its state files and the schedules.
#[derive(Debug, Error)]
pub enum OptimError {
    /// A setting is out of range or inconsistent.
    #[error("{what}: {message}")]
    Invalid {
        /// The object that is wrong (`adamw`, `schedule`, `clip`...).
        what: String,
        /// What is wrong.
        message: String,
    },
    /// Saved optimizer state does not fit the optimizer's parameters.
    #[error("{path}: optimizer state does not match the parameters: {problems}")]
    StateMismatch {
        /// The state file.
        path: PathBuf,
        /// Every missing, extra and mis-shaped entry, `; `-separated.
        problems: String,
    },
    /// libtorch reported an error (reading or writing a state file, an operation).
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`OptimError`].
pub type Result<T> = std::result::Result<T, OptimError>;

/// Builds an [`OptimError::Invalid`].
pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> OptimError {
    OptimError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}
