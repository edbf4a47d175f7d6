//! Evaluation for taskmoe: running a model over a split, the metrics it is scored with, and
//! routing analysis.
//!
//! Scoring predictions against gold labels, by function or by the name a task spec uses:
//!
//! ```rust
//! use taskmoe_eval::{accuracy, compute, matthews, pearson, MetricKind};
//!
//! let predicted = [1usize, 0, 1, 1];
//! let gold = [1usize, 0, 0, 1];
//! assert_eq!(accuracy(&predicted, &gold)?, 0.75);
//! // 2 true positives, 1 false positive, no false negative: F1 = 4 / 5.
//! let f1 = compute(MetricKind::F1, &predicted[..], &gold[..])?;
//! assert!((f1 - 0.8).abs() < 1e-12);
//! // Matthews: (2 * 1 - 1 * 0) / sqrt(3 * 2 * 1 * 2) = 1 / sqrt(3).
//! assert!((matthews(&predicted, &gold)? - 3f64.sqrt().recip()).abs() < 1e-12);
//! // Regression tasks: correlations and squared error of real values.
//! let r = pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0])?;
//! assert!((r - 1.0).abs() < 1e-12);
//! assert!(!MetricKind::Mse.higher_is_better()); // the one metric where lower is better
//! # Ok::<(), taskmoe_eval::EvalError>(())
//! ```
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
//! - [`routing`]: how tasks share experts, and [`routing_quality`]: whether that sharing
//!   follows the declared task families (within- against across-family overlap, nearest task,
//!   the adjusted Rand index of a clustering by routing);
//! - [`gradient_affinity()`](mod@gradient_affinity): whether two tasks' loss gradients on the
//!   parameters they share (the trunk, the experts, each router's task gates) point alike, with
//!   the same family measures: the signal routing needs to follow relatedness;
//! - [`bag_of_words()`](mod@bag_of_words): a TF-IDF softmax-regression baseline per classification task, the
//!   floor a report sets beside the neural arms.

#![warn(missing_docs)]

pub mod bag_of_words;
mod batching;
mod error;
mod evaluate;
pub mod gradient_affinity;
pub mod metrics;
pub mod routing;
pub mod routing_quality;
mod sharded;

pub use bag_of_words::{
    bag_of_words, bag_of_words_with, BagOfWordsConfig, BagOfWordsFit, BagOfWordsOutcome,
    BagOfWordsResult, PenaltyFit,
};
pub use batching::{eval_batch, eval_batch_positions, eval_batches, EvalBatching};
pub use error::{EvalError, Result};
pub use evaluate::{
    evaluate, evaluate_with, predictions, Answer, EvalData, EvalResult, EvaluateError, GateStats,
    Prediction, TaskScores,
};
pub use gradient_affinity::{gradient_affinity, AffinityOptions, GradientAffinity, GroupAffinity};
pub use metrics::{
    accuracy, average_ranks, balanced_accuracy, binary_f1, compute, macro_f1, majority_baseline,
    majority_class, matthews, mse, pearson, spearman, Confusion, MetricKind, Values,
};
pub use sharded::evaluate_sharded;
