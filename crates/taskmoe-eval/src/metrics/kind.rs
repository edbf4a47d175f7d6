//! The metric names of configs and task specs, and [`compute`] by name.

use std::fmt;

use serde::{Deserialize, Serialize};
use taskmoe_data::{Metric, TaskKind};

use super::{
    accuracy, balanced_accuracy, binary_f1, macro_f1, majority_baseline, matthews, mse, pearson,
    spearman,
};
use crate::error::{EvalError, Result};

/// A metric by name, as written in configs and reports (kebab-case: `accuracy`,
/// `balanced-accuracy`, `f1`, `macro-f1`, `matthews`, `pearson`, `spearman`, `mse`, `majority-baseline`).
///
/// It extends `taskmoe-data`'s [`Metric`] (the metrics a task spec declares; each converts with
/// `From`, and the single-word names are spelled the same) with `macro-f1` and
/// `majority-baseline`. The snake-case spellings `macro_f1` and `majority_baseline` are accepted
/// too, so a task spec's snake-case style reads either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricKind {
    /// Fraction of exact matches ([`accuracy`]).
    Accuracy,
    /// Mean per-class recall ([`balanced_accuracy`]).
    #[serde(alias = "balanced_accuracy")]
    BalancedAccuracy,
    /// F1 of the positive class 1 ([`binary_f1`]).
    F1,
    /// Per-class F1 averaged over the classes present ([`macro_f1`]).
    #[serde(alias = "macro_f1")]
    MacroF1,
    /// Matthews correlation, Gorodkin's `R_K` for more than two classes ([`matthews`]).
    Matthews,
    /// Pearson correlation ([`pearson`]).
    Pearson,
    /// Spearman rank correlation ([`spearman`]).
    Spearman,
    /// Mean squared error ([`mse`]).
    Mse,
    /// Accuracy of always predicting the most frequent label ([`majority_baseline`], with the
    /// evaluation labels' own majority).
    #[serde(alias = "majority_baseline")]
    MajorityBaseline,
}

impl MetricKind {
    /// Every metric, in declaration order.
    pub const ALL: [MetricKind; 9] = [
        MetricKind::Accuracy,
        MetricKind::BalancedAccuracy,
        MetricKind::F1,
        MetricKind::MacroF1,
        MetricKind::Matthews,
        MetricKind::Pearson,
        MetricKind::Spearman,
        MetricKind::Mse,
        MetricKind::MajorityBaseline,
    ];

    /// The kebab-case name, as serde writes it.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Accuracy => "accuracy",
            MetricKind::BalancedAccuracy => "balanced-accuracy",
            MetricKind::F1 => "f1",
            MetricKind::MacroF1 => "macro-f1",
            MetricKind::Matthews => "matthews",
            MetricKind::Pearson => "pearson",
            MetricKind::Spearman => "spearman",
            MetricKind::Mse => "mse",
            MetricKind::MajorityBaseline => "majority-baseline",
        }
    }

    /// Whether larger values are better (all but `mse`).
    pub fn higher_is_better(self) -> bool {
        self != MetricKind::Mse
    }

    /// The kind of task the metric scores.
    pub fn task_kind(self) -> TaskKind {
        match self {
            MetricKind::Pearson | MetricKind::Spearman | MetricKind::Mse => TaskKind::Regression,
            _ => TaskKind::Classification,
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Metric> for MetricKind {
    fn from(metric: Metric) -> Self {
        match metric {
            Metric::Accuracy => MetricKind::Accuracy,
            Metric::F1 => MetricKind::F1,
            Metric::Matthews => MetricKind::Matthews,
            Metric::Pearson => MetricKind::Pearson,
            Metric::Spearman => MetricKind::Spearman,
            Metric::Mse => MetricKind::Mse,
        }
    }
}

/// Predictions or labels: class indices (classification) or real values (regression).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Values<'a> {
    /// Class indices.
    Classes(&'a [usize]),
    /// Real values.
    Reals(&'a [f64]),
}

impl<'a> From<&'a [usize]> for Values<'a> {
    fn from(v: &'a [usize]) -> Self {
        Values::Classes(v)
    }
}

impl<'a> From<&'a Vec<usize>> for Values<'a> {
    fn from(v: &'a Vec<usize>) -> Self {
        Values::Classes(v)
    }
}

impl<'a> From<&'a [f64]> for Values<'a> {
    fn from(v: &'a [f64]) -> Self {
        Values::Reals(v)
    }
}

impl<'a> From<&'a Vec<f64>> for Values<'a> {
    fn from(v: &'a Vec<f64>) -> Self {
        Values::Reals(v)
    }
}

/// Computes metric `kind` of `predictions` against `labels`.
///
/// Classification metrics need [`Values::Classes`] on both sides, regression metrics
/// [`Values::Reals`]; otherwise [`EvalError::WrongValues`]. `majority-baseline` reads only the
/// labels. Each metric's own function documents its edge cases; empty inputs are always an
/// error.
pub fn compute<'a>(
    kind: MetricKind,
    predictions: impl Into<Values<'a>>,
    labels: impl Into<Values<'a>>,
) -> Result<f64> {
    let wrong = |expected| EvalError::WrongValues {
        metric: kind.name().to_string(),
        expected,
    };
    match (kind.task_kind(), predictions.into(), labels.into()) {
        (TaskKind::Classification, Values::Classes(p), Values::Classes(l)) => match kind {
            MetricKind::Accuracy => accuracy(p, l),
            MetricKind::BalancedAccuracy => balanced_accuracy(p, l),
            MetricKind::F1 => binary_f1(p, l),
            MetricKind::MacroF1 => macro_f1(p, l),
            MetricKind::Matthews => matthews(p, l),
            MetricKind::MajorityBaseline => majority_baseline(l, l),
            _ => unreachable!("{kind} is a classification metric"),
        },
        (TaskKind::Regression, Values::Reals(p), Values::Reals(l)) => match kind {
            MetricKind::Pearson => pearson(p, l),
            MetricKind::Spearman => spearman(p, l),
            MetricKind::Mse => mse(p, l),
            _ => unreachable!("{kind} is a regression metric"),
        },
        (TaskKind::Classification, _, _) => Err(wrong("class")),
        (TaskKind::Regression, _, _) => Err(wrong("real")),
    }
}
