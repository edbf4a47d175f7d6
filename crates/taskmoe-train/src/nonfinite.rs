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
