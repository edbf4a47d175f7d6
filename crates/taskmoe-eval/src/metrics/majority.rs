//! The majority-class baseline: the accuracy of always predicting the most frequent class.
//!
//! The reference point every classifier should beat; a model that collapses onto one class
//! scores exactly this.

use super::accuracy::accuracy;
use crate::error::{EvalError, Result};

/// The most frequent class in `labels`, ties broken towards the smaller index; `None` when
/// `labels` is empty.
pub fn majority_class(labels: &[usize]) -> Option<usize> {
    let k = labels.iter().max()? + 1;
    let mut counts = vec![0usize; k];
    for &l in labels {
        counts[l] += 1;
    }
    // `max_by_key` keeps the last maximum; reverse so the smallest index wins ties.
    counts
        .iter()
        .enumerate()
        .rev()
        .max_by_key(|&(_, &c)| c)
        .map(|(class, _)| class)
}

/// The accuracy on `eval_labels` of always predicting the majority class of `train_labels`
/// (pass the same slice twice for the majority of the evaluation set itself, the best any
/// constant predictor can do there).
///
/// Fails when either slice is empty.
pub fn majority_baseline(train_labels: &[usize], eval_labels: &[usize]) -> Result<f64> {
    let class = majority_class(train_labels).ok_or_else(|| EvalError::Empty {
        metric: "majority-baseline".to_string(),
    })?;
    let constant = vec![class; eval_labels.len()];
    accuracy(&constant, eval_labels).map_err(|e| match e {
        EvalError::Empty { .. } => EvalError::Empty {
            metric: "majority-baseline".to_string(),
        },
        other => other,
    })
}
