//! Accuracy: the fraction of exact label matches.

use super::check::same_len_nonempty;
use crate::error::Result;

/// The fraction of positions where `predictions[i] == labels[i]`, in `[0, 1]`.
///
/// Fails on a length mismatch and on empty inputs.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    same_len_nonempty("accuracy", predictions.len(), labels.len())?;
    let hits = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(hits as f64 / labels.len() as f64)
}
