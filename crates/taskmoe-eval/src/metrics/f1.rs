//! F1 scores: of the positive class (binary), and macro-averaged over classes.
//!
//! `F1 = 2 TP / (2 TP + FP + FN)`. A class with no true and no predicted example has no
//! defined F1; [`binary_f1`] scores it 0 (as scikit-learn's `zero_division = 0`), and
//! [`macro_f1`] leaves such classes out of its average (scikit-learn averages over the classes
//! that occur in labels or predictions).

use super::check::same_len_nonempty;
use super::confusion::Confusion;
use crate::error::Result;

/// The class index treated as positive by [`binary_f1`]: the second label of a task, as
/// `taskmoe-data`'s `Metric::F1` documents.
pub const POSITIVE_CLASS: usize = 1;

fn f1_of(tp: u64, fp: u64, fn_: u64) -> f64 {
    let denom = 2 * tp + fp + fn_;
    if denom == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denom as f64
    }
}

/// F1 of class [`POSITIVE_CLASS`] (class 1); 0 when it occurs in neither input.
///
/// Fails on a length mismatch and on empty inputs.
pub fn binary_f1(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    same_len_nonempty("f1", predictions.len(), labels.len())?;
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    for (&p, &t) in predictions.iter().zip(labels) {
        match (p == POSITIVE_CLASS, t == POSITIVE_CLASS) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    Ok(f1_of(tp, fp, fn_))
}

/// The unweighted mean of the per-class F1 over the classes that occur in `labels` or
/// `predictions`.
///
/// Fails on a length mismatch and on empty inputs.
pub fn macro_f1(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    same_len_nonempty("macro-f1", predictions.len(), labels.len())?;
    let confusion = Confusion::new(predictions, labels);
    let (sum, present) = (0..confusion.num_classes())
        .map(|c| confusion.tp_fp_fn(c))
        .filter(|&(tp, fp, fn_)| tp + fp + fn_ > 0)
        .fold((0.0, 0usize), |(sum, n), (tp, fp, fn_)| {
            (sum + f1_of(tp, fp, fn_), n + 1)
        });
    // Non-empty inputs make at least one class present.
    Ok(sum / present as f64)
}
