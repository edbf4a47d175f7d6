//! The loop's own state, saved as `trainer_state.json` in every checkpoint.
//!
//! Together with the model weights and the optimizer state, this is everything a resumed run
//! needs: randomness is a pure function of `(seed, step)` (DESIGN.md section 4), so the step and
//! the seed restore the data order, dropout and noise; the sampler's own state is kept opaque
//! here (the data crate's `SamplerState`, or whatever the loop uses) so this crate does not
//! depend on its type.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, io_err, Result, TrainError};

/// The file name of the trainer state inside a checkpoint.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

/// The version of the `trainer_state.json` layout this crate writes and reads.
pub const TRAINER_STATE_VERSION: u32 = 1;

/// The best evaluation result seen so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestMetric {
    /// The metric's name (`validation/accuracy`, say).
    pub name: String,
    /// Its best value; always finite.
    pub value: f64,
    /// The step it was reached at.
    pub step: u64,
    /// Whether larger values are better (accuracy) or smaller ones (loss, MSE).
    pub higher_is_better: bool,
}

/// The state of the training loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// Layout version, [`TRAINER_STATE_VERSION`].
    pub version: u32,
    /// Optimizer updates done, which is also the index of the next step.
    pub step: u64,
    /// The run's seed; with `step` it determines all randomness.
    pub seed: u64,
    /// The sampler's state, opaque here (`null` when the loop keeps none).
    #[serde(default)]
    pub sampler: serde_json::Value,
    /// The best evaluation result, if any evaluation ran.
    #[serde(default)]
    pub best: Option<BestMetric>,
    /// Wall-clock training seconds summed over all sessions of the run.
    #[serde(default)]
    pub elapsed_secs: f64,
    /// Training examples consumed.
    #[serde(default)]
    pub examples_seen: u64,
    /// Steps whose update was skipped under [`crate::NonFinitePolicy::SkipStep`].
    #[serde(default)]
    pub skipped_steps: u64,
    /// The losses of the last applied steps (at most 100, oldest
    /// first), whose median the spike check compares against (`train.loss_spike_factor`);
    /// saved so a resumed run decides as the uninterrupted one would.
    #[serde(default)]
    pub recent_losses: Vec<f64>,
    /// Validation evaluations since the last one that set a new best (`eval.patience`
    /// counts them).
    #[serde(default)]
    pub evals_since_best: u64,
    /// The step at which `eval.patience` ended the run before `train.steps`; a resumed run
    /// that has it is finished.
    #[serde(default)]
    pub stopped_early_at: Option<u64>,
}

impl TrainerState {
    /// The state at the start of a run with `seed`.
    pub fn new(seed: u64) -> Self {
        TrainerState {
            version: TRAINER_STATE_VERSION,
            step: 0,
            seed,
            sampler: serde_json::Value::Null,
            best: None,
            elapsed_secs: 0.0,
            examples_seen: 0,
            skipped_steps: 0,
            recent_losses: Vec::new(),
            evals_since_best: 0,
            stopped_early_at: None,
        }
    }

    /// Stores a sampler state (anything serialisable) in [`TrainerState::sampler`].
    pub fn set_sampler<T: Serialize>(&mut self, sampler: &T) -> Result<()> {
        self.sampler =
            serde_json::to_value(sampler).map_err(|e| invalid("sampler", e.to_string()))?;
        Ok(())
    }

    /// Adds the loss of an applied step to [`TrainerState::recent_losses`], dropping the oldest
    /// beyond the window.
    pub fn record_loss(&mut self, loss: f64) {
        if !loss.is_finite() {
            return;
        }
        self.recent_losses.push(loss);
        let excess = self
            .recent_losses
            .len()
            .saturating_sub(crate::nonfinite::LOSS_WINDOW);
        self.recent_losses.drain(..excess);
    }

    /// Reads [`TrainerState::sampler`] back as a `T`.
    pub fn sampler<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.sampler).map_err(|e| invalid("sampler", e.to_string()))
    }

    /// Records `value` of metric `name` at the current step if it beats the best so far (or is
    /// the first); returns whether it did. A best of another metric name is replaced. Fails on
    /// a non-finite value, which cannot be compared.
    pub fn update_best(&mut self, name: &str, value: f64, higher_is_better: bool) -> Result<bool> {
        if !value.is_finite() {
            return Err(invalid(
                "best metric",
                format!("{name} = {value} is not finite"),
            ));
        }
        let better = match &self.best {
            Some(best) if best.name == name => {
                if higher_is_better {
                    value > best.value
                } else {
                    value < best.value
                }
            }
            _ => true,
        };
        if better {
            self.best = Some(BestMetric {
                name: name.to_string(),
                value,
                step: self.step,
                higher_is_better,
            });
        }
        Ok(better)
    }

    /// Writes the state as pretty-printed JSON to `path` (inside a checkpoint, use
    /// [`crate::CheckpointFiles::write_json`] with [`TRAINER_STATE_FILE`] instead).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = serde_json::to_string_pretty(self).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, text).map_err(io_err(path))
    }

    /// Reads a state written by [`TrainerState::write`]; fails on unknown fields and on another
    /// layout version.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let state: TrainerState =
            serde_json::from_str(&text).map_err(|source| TrainError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        if state.version != TRAINER_STATE_VERSION {
            return Err(invalid(
                path.display().to_string(),
                format!(
                    "trainer state version {} (this build reads {TRAINER_STATE_VERSION})",
                    state.version
                ),
            ));
        }
        Ok(state)
    }
}
