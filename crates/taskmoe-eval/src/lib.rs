//! Evaluation for taskmoe: running a model over a split, the metrics it is scored with, and
//! routing analysis.
//!
//! The evaluation layer of taskmoe (see `docs/architecture.md`):
//! - [`evaluate`] runs a model over a split in length-bucketed batches ([`eval_batches`]) and
//!   returns per-task scores against majority baselines, every prediction, and the task x
//!   expert routing counts ([`EvalResult`]); [`evaluate_sharded`] shares that work among the
//!   ranks of a data-parallel job and gathers the same result on rank 0;
//! - the [`metrics`]: [`accuracy`], [`binary_f1`] and [`macro_f1`], [`matthews`] (binary and
//!   Gorodkin's multiclass `R_K`), [`pearson`], [`spearman`] (average ranks for ties), [`mse`]
//!   and the [`majority_baseline`]; a [`MetricKind`] names each one as configs and
//!   `taskmoe-data`'s task specs do, and [`compute`] evaluates a metric by name;
//! - [`routing`]: how tasks share experts.

#![warn(missing_docs)]

mod batching;
mod error;
mod evaluate;
pub mod metrics;
pub mod routing;
mod sharded;

pub use batching::{eval_batch, eval_batch_positions, eval_batches, EvalBatching};
pub use error::{EvalError, Result};
pub use evaluate::{
    evaluate, evaluate_with, predictions, Answer, EvalData, EvalResult, EvaluateError, Prediction,
    TaskScores,
};
pub use metrics::{
    accuracy, average_ranks, balanced_accuracy, binary_f1, compute, macro_f1, majority_baseline,
    majority_class, matthews, mse, pearson, spearman, Confusion, MetricKind, Values,
};
pub use sharded::evaluate_sharded;
