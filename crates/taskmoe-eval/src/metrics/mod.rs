//! Evaluation metrics, one file per metric (as burn's `burn-train/src/metric/`).
//!
//! Every metric takes predictions and labels of equal length and fails on empty inputs (no
//! metric is defined on zero examples, and a made-up number would hide an empty split).
//! Correlations of constant inputs are 0, not NaN.

mod accuracy;
mod balanced;
mod check;
mod confusion;
mod f1;
mod kind;
mod majority;
mod matthews;
mod mse;
mod pearson;
mod spearman;

pub use accuracy::accuracy;
pub use balanced::balanced_accuracy;
pub use confusion::Confusion;
pub use f1::{binary_f1, macro_f1, POSITIVE_CLASS};
pub use kind::{compute, MetricKind, Values};
pub use majority::{majority_baseline, majority_class};
pub use matthews::matthews;
pub use mse::mse;
pub use pearson::pearson;
pub use spearman::{average_ranks, spearman};
