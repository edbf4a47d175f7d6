//! Input checks shared by the metrics.

use crate::error::{EvalError, Result};

/// Fails unless `predictions` and `labels` have the same, non-zero length.
pub(crate) fn same_len_nonempty(metric: &str, predictions: usize, labels: usize) -> Result<()> {
    if predictions != labels {
        return Err(EvalError::LengthMismatch {
            metric: metric.to_string(),
            predictions,
            labels,
        });
    }
    if labels == 0 {
        return Err(EvalError::Empty {
            metric: metric.to_string(),
        });
    }
    Ok(())
}

/// Fails unless both real-valued inputs have the same non-zero length and are all finite.
pub(crate) fn finite_pairs(metric: &str, predictions: &[f64], labels: &[f64]) -> Result<()> {
    same_len_nonempty(metric, predictions.len(), labels.len())?;
    for (which, values) in [("predictions", predictions), ("labels", labels)] {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(EvalError::NonFinite {
                metric: metric.to_string(),
                which,
                index,
                value,
            });
        }
    }
    Ok(())
}
