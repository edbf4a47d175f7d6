//! Mean squared error.

use super::check::finite_pairs;
use crate::error::Result;

/// The mean of `(predictions[i] - labels[i])^2`; lower is better.
///
/// Fails on a length mismatch, empty inputs and non-finite values.
pub fn mse(predictions: &[f64], labels: &[f64]) -> Result<f64> {
    finite_pairs("mse", predictions, labels)?;
    let sum: f64 = predictions
        .iter()
        .zip(labels)
        .map(|(p, l)| (p - l) * (p - l))
        .sum();
    Ok(sum / labels.len() as f64)
}
