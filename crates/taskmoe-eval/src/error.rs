//! The evaluation crate's error type.

use thiserror::Error;

/// What can go wrong when a metric is computed or a baseline fitted.
#[derive(Debug, Error, PartialEq)]
pub enum EvalError {
    /// Predictions and labels differ in length.
    #[error("{metric}: {predictions} predictions for {labels} labels")]
    LengthMismatch {
        /// The metric's name.
        metric: String,
        /// Number of predictions.
        predictions: usize,
        /// Number of labels.
        labels: usize,
    },
    /// There is nothing to score: every metric is undefined on zero examples, and no number is
    /// made up for them.
    #[error("{metric}: no examples to score")]
    Empty {
        /// The metric's name.
        metric: String,
    },
    /// A regression value is NaN or infinite.
    #[error("{metric}: {which}[{index}] = {value} is not finite")]
    NonFinite {
        /// The metric's name.
        metric: String,
        /// `predictions` or `labels`.
        which: &'static str,
        /// Position of the value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Class predictions given to a regression metric or the reverse.
    #[error("{metric} needs {expected} values")]
    WrongValues {
        /// The metric's name.
        metric: String,
        /// `class` or `real`.
        expected: &'static str,
    },
    /// The bag-of-words baseline cannot be fitted to a task's data or with its settings.
    #[error("bag-of-words baseline of task `{task}`: {message}")]
    BagOfWords {
        /// The task's name.
        task: String,
        /// What is wrong.
        message: String,
    },
}

/// `Result` with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;
