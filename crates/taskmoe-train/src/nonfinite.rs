//! What to do when a loss or gradient norm is NaN or infinite.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The policy for a non-finite loss or gradient norm, as written in configs: `"error"` or
/// `"skip-step"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonFinitePolicy {
    /// Stop training with [`TrainError::NonFinite`] (default): a NaN usually means a bug or a
    /// learning rate that is too high, and is best seen at once.
    #[default]
    Error,
    /// Skip the optimizer update of this step (gradients are discarded, parameters and
    /// optimizer state unchanged), count it in [`crate::TrainerState::skipped_steps`] and go on.
    SkipStep,
}

/// What the training loop does with the current step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    /// The value is finite: apply the update.
    Apply,
    /// The value is not finite and the policy is [`NonFinitePolicy::SkipStep`].
    Skip,
}

impl NonFinitePolicy {
    /// Decides on `value` (the loss or the gradient norm, named by `what`) at optimizer step
    /// `step`: [`StepAction::Apply`] when it is finite, otherwise [`StepAction::Skip`] or
    /// [`TrainError::NonFinite`] by policy.
    pub fn check(self, step: u64, what: &str, value: f64) -> Result<StepAction> {
        if value.is_finite() {
            return Ok(StepAction::Apply);
        }
        match self {
            NonFinitePolicy::SkipStep => Ok(StepAction::Skip),
            NonFinitePolicy::Error => Err(TrainError::NonFinite {
                step,
                what: what.to_string(),
                value,
            }),
        }
    }
}

/// Losses of applied steps kept for the running median of the spike check
/// ([`crate::TrainerState::recent_losses`]).
pub(crate) const LOSS_WINDOW: usize = 100;

/// Losses needed in the window before the spike check applies.
pub(crate) const LOSS_WINDOW_MIN: usize = 10;

/// The least median the spike check compares against: a run whose losses fell to almost zero
/// (a learned toy task) does not make an ordinary loss of 0.01 look like an explosion.
pub(crate) const LOSS_MEDIAN_FLOOR: f64 = 1e-3;

/// The running median of `recent` when the finite `loss` is over `factor` times it (the median
/// floored at [`LOSS_MEDIAN_FLOOR`]): a loss that exploded without (yet) overflowing, treated like
/// a non-finite one. `None` when `factor` is 0 (the check is off), fewer than
/// [`LOSS_WINDOW_MIN`] losses are known, or the loss is within bounds.
pub(crate) fn loss_spike(recent: &[f64], loss: f64, factor: f64) -> Option<f64> {
    if factor <= 0.0 || recent.len() < LOSS_WINDOW_MIN || !loss.is_finite() {
        return None;
    }
    let mut sorted = recent.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    };
    (loss > factor * median.max(LOSS_MEDIAN_FLOOR)).then_some(median)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_is_a_loss_far_above_the_running_median() {
        let recent = vec![0.5; LOSS_WINDOW_MIN];
        assert_eq!(loss_spike(&recent, 0.6e6, 1e6), Some(0.5));
        assert_eq!(loss_spike(&recent, 0.4e6, 1e6), None);
        assert_eq!(loss_spike(&recent, 1e30, 0.0), None, "factor 0 disables it");
        assert_eq!(
            loss_spike(&recent[1..], 1e30, 1e6),
            None,
            "too few losses yet"
        );
        let learned = vec![1e-9; LOSS_WINDOW_MIN];
        assert_eq!(
            loss_spike(&learned, 0.5, 1e6),
            None,
            "the median is floored"
        );
        assert!(loss_spike(&learned, 2e3, 1e6).is_some());
    }
}
