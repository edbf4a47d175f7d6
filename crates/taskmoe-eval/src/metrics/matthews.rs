//! The Matthews correlation coefficient, binary and multiclass.
//!
//! For `K` classes this is Gorodkin's `R_K` (2004), which equals Matthews' binary formula for
//! `K = 2` and is what scikit-learn's `matthews_corrcoef` computes. With the confusion matrix
//! `C`, `n` examples, `c = trace(C)` correct ones, `t_k` true and `p_k` predicted examples of
//! class `k`:
//!
//! ```text
//! R_K = (c * n - sum_k p_k t_k) / sqrt((n^2 - sum_k p_k^2) * (n^2 - sum_k t_k^2))
//! ```
//!
//! When a factor of the denominator is zero (all predictions, or all labels, in one class) the
//! coefficient is undefined; it is returned as 0, like scikit-learn, never NaN.

use super::check::same_len_nonempty;
use super::confusion::Confusion;
use crate::error::Result;

/// Gorodkin's `R_K` of `predictions` against `labels`, in `[-1, 1]`; 0 when undefined.
///
/// Fails on a length mismatch and on empty inputs.
pub fn matthews(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    same_len_nonempty("matthews", predictions.len(), labels.len())?;
    let confusion = Confusion::new(predictions, labels);
    let k = confusion.num_classes();
    let n = labels.len() as f64;
    let correct: f64 = (0..k).map(|c| confusion.counts[c][c] as f64).sum();
    let truth: Vec<f64> = (0..k)
        .map(|c| confusion.counts[c].iter().sum::<u64>() as f64)
        .collect();
    let predicted: Vec<f64> = (0..k)
        .map(|c| confusion.counts.iter().map(|row| row[c]).sum::<u64>() as f64)
        .collect();
    let cov_pt: f64 = correct * n
        - truth
            .iter()
            .zip(&predicted)
            .map(|(t, p)| t * p)
            .sum::<f64>();
    let cov_pp: f64 = n * n - predicted.iter().map(|p| p * p).sum::<f64>();
    let cov_tt: f64 = n * n - truth.iter().map(|t| t * t).sum::<f64>();
    if cov_pp == 0.0 || cov_tt == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_pt / (cov_pp * cov_tt).sqrt())
}
