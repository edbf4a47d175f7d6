//! Evaluation for taskmoe: metrics, and later evaluation loops, routing analysis and the
//! experiment protocols.
//!
//! The evaluation layer of taskmoe (see `docs/architecture.md`). So far it holds the
//! [`metrics`] the tasks are scored with: [`accuracy`], [`binary_f1`] and [`macro_f1`],
//! [`matthews`] (binary and Gorodkin's multiclass `R_K`), [`pearson`], [`spearman`] (average
//! ranks for ties), [`mse`] and the [`majority_baseline`]. A [`MetricKind`] names each one as
//! configs and `taskmoe-data`'s task specs do, and [`compute`] evaluates a metric by name.

#![warn(missing_docs)]

mod batching;
mod error;
mod evaluate;
pub mod metrics;
pub mod routing;

pub use batching::{eval_batches, EvalBatching};
pub use error::{EvalError, Result};
pub use evaluate::{
    evaluate, evaluate_with, predictions, Answer, EvalData, EvalResult, EvaluateError, Prediction,
    TaskScores,
};
pub use metrics::{
    accuracy, average_ranks, balanced_accuracy, binary_f1, compute, macro_f1, majority_baseline,
    majority_class, matthews, mse, pearson, spearman, Confusion, MetricKind, Values,
};
