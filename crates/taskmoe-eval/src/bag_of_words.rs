//! A bag-of-words baseline per task: TF-IDF features and a softmax regression, the floor
//! against which the neural arms of a report are read.
//!
//! For one classification task, [`bag_of_words`] builds features over the task's own training
//! vocabulary (the token ids seen in its train split, the framing special tokens left out;
//! segment ids ignored), with sublinear term frequency `1 + ln tf`, inverse document frequency
//! `ln((1 + n) / (1 + df)) + 1` from the train split and every row scaled to unit L2 norm
//! (scikit-learn's `TfidfVectorizer(sublinear_tf=True)` on token ids). It fits one multinomial
//! logistic regression per L2 penalty of [`BagOfWordsConfig::penalties`] full-batch by L-BFGS
//! from zero, keeps the penalty with the best validation accuracy (a tie goes to the stronger
//! penalty) and scores that model on the test split.
//!
//! Special tokens: stored examples are unpadded ([`taskmoe_data::Batch`] pads them), so no
//! padding reaches the features. The ids that frame every training example, at its first and
//! at its last position (`[CLS]` and `[SEP]` of the BERT-style encodings this project makes),
//! are left out, and so are the ids of [`BagOfWordsConfig::excluded_ids`] (a pad id, or special
//! tokens of another encoding).
//!
//! Memory: the features are stored sparse, one entry per distinct (example, token), so they
//! take memory linear in the splits' token count; the model, its gradient and L-BFGS's history
//! are about 30 vectors of `(V + 1) x C` f64 values for `V` vocabulary columns and `C` classes.
//! Nothing is `examples x V`.
//!
//! Determinism: no randomness is involved (the fit starts from zero and L-BFGS is
//! deterministic), so two calls give the same result; a different libtorch thread count can
//! change sums in the last bits only.
//!
//! A regression task, a task without a labeled test split and one without a labeled
//! validation split (nothing to choose the penalty by) are skipped with the reason in
//! [`BagOfWordsOutcome::Skipped`], not an error.

mod softmax_regression;
mod tfidf;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use taskmoe_data::{Label, TaskData, TaskKind, TaskSpec};

use crate::error::{EvalError, Result};
use crate::metrics::{accuracy, compute, MetricKind};
use softmax_regression::{SoftmaxRegression, Stopping};
use tfidf::{framing_ids, Vocabulary};

/// The settings of [`bag_of_words_with`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BagOfWordsConfig {
    /// The L2 penalties tried (coefficient of `|W|^2 / 2` beside the mean cross-entropy);
    /// each finite and non-negative. Default `[1e-4, 1e-3, 1e-2, 1e-1]`.
    pub penalties: Vec<f64>,
    /// Most L-BFGS iterations per fit. Default `1000`.
    pub max_iterations: usize,
    /// A fit has converged once every gradient entry is at most this in absolute value.
    /// Default `1e-6`.
    pub gradient_tolerance: f64,
    /// Token ids left out of the features besides the framing ids found in the train split
    /// (a pad id, other special tokens). Default none.
    pub excluded_ids: Vec<i64>,
}

impl Default for BagOfWordsConfig {
    fn default() -> Self {
        BagOfWordsConfig {
            penalties: vec![1e-4, 1e-3, 1e-2, 1e-1],
            max_iterations: 1000,
            gradient_tolerance: 1e-6,
            excluded_ids: Vec::new(),
        }
    }
}

/// One penalty of the grid: how its fit went and scored on validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PenaltyFit {
    /// The L2 penalty.
    pub penalty: f64,
    /// Accuracy on the validation split.
    pub validation_accuracy: f64,
    /// L-BFGS iterations taken.
    pub iterations: usize,
    /// Whether the fit met its tolerance before the iteration limit.
    pub converged: bool,
}

/// The baseline of one classification task: the chosen penalty and its scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BagOfWordsFit {
    /// The penalty chosen by validation accuracy.
    pub penalty: f64,
    /// Validation accuracy at the chosen penalty.
    pub validation_accuracy: f64,
    /// Test accuracy at the chosen penalty.
    pub test_accuracy: f64,
    /// The task's headline metric (the first its spec names; `accuracy` if none).
    pub primary: String,
    /// The headline metric on the test split.
    pub test_primary: f64,
    /// Metric name -> test value: accuracy, balanced accuracy, macro-F1 and Matthews, plus
    /// every metric the task spec names (as [`crate::evaluate`] scores a task).
    pub test_metrics: BTreeMap<String, f64>,
    /// Feature columns: the distinct ids of the train split, excluded ids left out.
    pub vocabulary: usize,
    /// The ids left out: framing ids found in the train split and the configured ones.
    pub excluded_ids: Vec<i64>,
    /// Examples in the train, validation and test splits.
    pub examples: [usize; 3],
    /// Every penalty tried, in the configured order.
    pub grid: Vec<PenaltyFit>,
}

/// What became of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BagOfWordsOutcome {
    /// Fitted and scored.
    Fitted(BagOfWordsFit),
    /// Not fitted, for the reason given (a regression task, a missing or unlabeled split).
    Skipped {
        /// Why, in words.
        reason: String,
    },
}

/// The bag-of-words baseline of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BagOfWordsResult {
    /// The task's name.
    pub task: String,
    /// Fitted or skipped.
    #[serde(flatten)]
    pub outcome: BagOfWordsOutcome,
}

impl BagOfWordsResult {
    /// The fit, unless the task was skipped.
    pub fn fit(&self) -> Option<&BagOfWordsFit> {
        match &self.outcome {
            BagOfWordsOutcome::Fitted(fit) => Some(fit),
            BagOfWordsOutcome::Skipped { .. } => None,
        }
    }

    /// Why the task was skipped, if it was.
    pub fn skip_reason(&self) -> Option<&str> {
        match &self.outcome {
            BagOfWordsOutcome::Fitted(_) => None,
            BagOfWordsOutcome::Skipped { reason } => Some(reason),
        }
    }
}

/// The bag-of-words baseline of task `spec` with the default [`BagOfWordsConfig`].
///
/// Fails if the splits belong to different tasks, a training example is unlabeled or a label
/// is not one of the task's classes.
pub fn bag_of_words(
    spec: &TaskSpec,
    train: &TaskData,
    validation: &TaskData,
    test: &TaskData,
) -> Result<BagOfWordsResult> {
    bag_of_words_with(spec, train, validation, test, &BagOfWordsConfig::default())
}

/// The bag-of-words baseline of task `spec` (see the [module docs](self)).
///
/// Fails as [`bag_of_words`] does, and on an empty penalty grid or a penalty that is negative
/// or not finite.
pub fn bag_of_words_with(
    spec: &TaskSpec,
    train: &TaskData,
    validation: &TaskData,
    test: &TaskData,
    config: &BagOfWordsConfig,
) -> Result<BagOfWordsResult> {
    let fail = |message: String| EvalError::BagOfWords {
        task: spec.name.clone(),
        message,
    };
    if config.penalties.is_empty() {
        return Err(fail("the penalty grid is empty".into()));
    }
    if let Some(p) = config
        .penalties
        .iter()
        .find(|p| !(p.is_finite() && **p >= 0.0))
    {
        return Err(fail(format!(
            "penalty {p} is not a finite non-negative number"
        )));
    }
    if validation.task_id != train.task_id || test.task_id != train.task_id {
        return Err(fail(format!(
            "the splits belong to different tasks: train {}, validation {}, test {}",
            train.task_id, validation.task_id, test.task_id
        )));
    }
    let skipped = |reason: &str| {
        Ok(BagOfWordsResult {
            task: spec.name.clone(),
            outcome: BagOfWordsOutcome::Skipped {
                reason: reason.to_string(),
            },
        })
    };
    if spec.kind == TaskKind::Regression {
        return skipped("a regression task (the baseline is a classifier)");
    }
    if train.examples.is_empty() {
        return skipped("no training examples");
    }
    if test.examples.is_empty() {
        return skipped("no test split");
    }
    if !labeled(test) {
        return skipped("the test split is unlabeled");
    }
    if validation.examples.is_empty() || !labeled(validation) {
        return skipped("no labeled validation split to choose the penalty by");
    }

    let classes = spec.labels.len();
    let class_labels = |split: &str, data: &TaskData| -> Result<Vec<i64>> {
        data.examples
            .iter()
            .map(|e| match e.label {
                Label::Class(c) if (0..classes as i64).contains(&c) => Ok(c),
                other => Err(fail(format!(
                    "{split} example {} has label {other:?}, not one of the {classes} classes",
                    e.id
                ))),
            })
            .collect()
    };
    let y_train = class_labels("train", train)?;
    let y_validation = class_labels("validation", validation)?;
    let y_test = class_labels("test", test)?;

    let mut excluded: BTreeSet<i64> = framing_ids(&train.examples);
    excluded.extend(config.excluded_ids.iter().copied());
    let vocabulary = Vocabulary::fit(&train.examples, &excluded);
    let x_train = vocabulary.transform(&train.examples);
    let x_validation = vocabulary.transform(&validation.examples);
    let x_test = vocabulary.transform(&test.examples);
    let stopping = Stopping {
        max_iterations: config.max_iterations,
        gradient_tolerance: config.gradient_tolerance,
    };

    let as_classes = |y: &[i64]| y.iter().map(|&c| c as usize).collect::<Vec<_>>();
    let gold_validation = as_classes(&y_validation);
    let mut grid = Vec::with_capacity(config.penalties.len());
    let mut best: Option<(f64, f64, SoftmaxRegression)> = None; // (accuracy, penalty, model)
    for &penalty in &config.penalties {
        let (model, report) =
            SoftmaxRegression::fit(&x_train, &y_train, classes as i64, penalty, stopping);
        let validation_accuracy = accuracy(&model.predict(&x_validation), &gold_validation)?;
        grid.push(PenaltyFit {
            penalty,
            validation_accuracy,
            iterations: report.iterations,
            converged: report.converged,
        });
        let better = match &best {
            None => true,
            Some((acc, pen, _)) => {
                validation_accuracy > *acc || (validation_accuracy == *acc && penalty > *pen)
            }
        };
        if better {
            best = Some((validation_accuracy, penalty, model));
        }
    }
    let (validation_accuracy, penalty, model) = best.expect("the grid is not empty");

    let predicted = model.predict(&x_test);
    let gold = as_classes(&y_test);
    let mut kinds = vec![
        MetricKind::Accuracy,
        MetricKind::BalancedAccuracy,
        MetricKind::MacroF1,
        MetricKind::Matthews,
    ];
    let primary = spec
        .metrics
        .first()
        .map_or(MetricKind::Accuracy, |&m| MetricKind::from(m));
    for &m in &spec.metrics {
        if !kinds.contains(&m.into()) {
            kinds.push(m.into());
        }
    }
    let mut test_metrics = BTreeMap::new();
    for kind in kinds {
        test_metrics.insert(
            kind.name().to_string(),
            compute(kind, &predicted[..], &gold[..])?,
        );
    }
    Ok(BagOfWordsResult {
        task: spec.name.clone(),
        outcome: BagOfWordsOutcome::Fitted(BagOfWordsFit {
            penalty,
            validation_accuracy,
            test_accuracy: test_metrics[MetricKind::Accuracy.name()],
            primary: primary.name().to_string(),
            test_primary: test_metrics[primary.name()],
            test_metrics,
            vocabulary: vocabulary.len(),
            excluded_ids: excluded.into_iter().collect(),
            examples: [
                train.examples.len(),
                validation.examples.len(),
                test.examples.len(),
            ],
            grid,
        }),
    })
}

/// Whether every example of `data` has a label.
fn labeled(data: &TaskData) -> bool {
    data.examples.iter().all(|e| e.label.is_present())
}
