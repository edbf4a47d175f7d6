//! Pearson's linear correlation coefficient.

use super::check::finite_pairs;
use crate::error::Result;

/// Pearson's `r` without input checks; 0 when either side is constant.
pub(crate) fn pearson_unchecked(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean_x = x.iter().sum::<f64>() / n;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mean_x, b - mean_y);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
}

/// Pearson's correlation of `predictions` with `labels`, in `[-1, 1]`.
///
/// When either side is constant (including a single example) the correlation is undefined;
/// it is returned as 0, like the Matthews coefficient, so that a collapsed regressor scores
/// "no correlation" rather than NaN. Fails on a length mismatch, empty inputs and non-finite
/// values.
pub fn pearson(predictions: &[f64], labels: &[f64]) -> Result<f64> {
    finite_pairs("pearson", predictions, labels)?;
    Ok(pearson_unchecked(predictions, labels))
}
