//! Balanced accuracy: the mean over classes of each class's recall.
//!
//! Accuracy rewards a model that favours the frequent class; balanced accuracy does not: any
//! constant predictor scores `1 / classes present`, whatever the label balance.

use super::check::same_len_nonempty;
use crate::error::Result;

/// The mean, over the classes present in `labels`, of the fraction of that class's examples
/// predicted as it; in `[0, 1]`.
///
/// Fails on a length mismatch and on empty inputs.
pub fn balanced_accuracy(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    same_len_nonempty("balanced-accuracy", predictions.len(), labels.len())?;
    let k = labels.iter().max().copied().unwrap_or(0) + 1;
    let (mut hits, mut totals) = (vec![0usize; k], vec![0usize; k]);
    for (&p, &l) in predictions.iter().zip(labels) {
        totals[l] += 1;
        hits[l] += usize::from(p == l);
    }
    let present: Vec<f64> = hits
        .iter()
        .zip(&totals)
        .filter(|(_, &t)| t > 0)
        .map(|(&h, &t)| h as f64 / t as f64)
        .collect();
    Ok(present.iter().sum::<f64>() / present.len() as f64)
}
