//! The experiments crate's error type: what went wrong, with the context it happened in (the
//! file, the run folder, the experiment), wrapping the cause from the crates below.

use thiserror::Error;

/// What can go wrong loading settings, running arms and writing reports.
#[derive(Debug, Error)]
pub enum ExperimentError {
    /// Settings, arms or results that do not fit (the message names the key, task or file).
    #[error("{0}")]
    Invalid(String),
    /// A failure with what was being done when it happened (`writing report.md`,
    /// `experiment low-resource`).
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// The cause.
        source: Box<ExperimentError>,
    },
    /// A file or process operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A JSON file (scores, routing, a run's logs) does not parse.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Settings TOML does not parse or serialize.
    #[error(transparent)]
    TomlRead(#[from] toml::de::Error),
    /// Settings TOML does not serialize.
    #[error(transparent)]
    TomlWrite(#[from] toml::ser::Error),
    /// Training or a run's configuration and data.
    #[error(transparent)]
    Train(#[from] taskmoe_train::TrainError),
    /// The data crate.
    #[error(transparent)]
    Data(#[from] taskmoe_data::DataError),
    /// The model crate.
    #[error(transparent)]
    Model(#[from] taskmoe_model::ModelError),
    /// An evaluation.
    #[error(transparent)]
    Evaluate(#[from] taskmoe_eval::EvaluateError),
    /// A metric or the bag-of-words baseline.
    #[error(transparent)]
    Eval(#[from] taskmoe_eval::EvalError),
    /// libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// Writing a report's text.
    #[error(transparent)]
    Fmt(#[from] std::fmt::Error),
}

/// `Result` with [`ExperimentError`].
pub type Result<T> = std::result::Result<T, ExperimentError>;

/// Adds what was being done to an error (as `anyhow::Context` does, typed).
pub trait Context<T> {
    /// The error, within `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// The error, within the context `f` returns (built only on failure).
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<ExperimentError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.with_context(|| context)
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| ExperimentError::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| ExperimentError::Invalid(context.into()))
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| ExperimentError::Invalid(f().into()))
    }
}

/// Returns an [`ExperimentError::Invalid`] with the formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::ExperimentError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;
