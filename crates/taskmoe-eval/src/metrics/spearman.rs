//! Spearman's rank correlation coefficient.

use super::check::finite_pairs;
use super::pearson::pearson_unchecked;
use crate::error::Result;

/// 1-based ranks of `values`, tied values sharing the average of their ranks (`[10, 20, 20]`
/// ranks `[1, 2.5, 2.5]`), as `scipy.stats.rankdata(method = "average")`. Values must be
/// finite (NaN has no order).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1 ..= end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman's correlation: Pearson's correlation of the [`average_ranks`] of `predictions`
/// and `labels`, in `[-1, 1]`; 0 when either side is constant.
///
/// Fails on a length mismatch, empty inputs and non-finite values.
pub fn spearman(predictions: &[f64], labels: &[f64]) -> Result<f64> {
    finite_pairs("spearman", predictions, labels)?;
    Ok(pearson_unchecked(
        &average_ranks(predictions),
        &average_ranks(labels),
    ))
}
