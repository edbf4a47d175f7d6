//! Learning-rate schedules: linear warmup, then constant, linear decay or cosine decay to a
//! floor.
//!
//! `step` is the 0-based index of the optimizer update about to be applied (the number of
//! updates already done), so [`ScheduleConfig::lr`] is a pure function of it and a resumed run
//! gets the same rates. With `W = warmup_steps`, `N = total_steps`, `peak = peak_lr` and
//! `floor = min_lr_ratio * peak`:
//!
//! ```text
//! step < W:        peak * (step + 1) / W          (the last warmup step reaches peak)
//! W <= step < N:   progress = (step - W) / (N - W)
//!                  constant: peak
//!                  linear:   floor + (peak - floor) * (1 - progress)
//!                  cosine:   floor + (peak - floor) * (1 + cos(pi * progress)) / 2
//! step >= N:       constant: peak; linear and cosine: floor
//! ```
//!
//! Unlike Hugging Face's `get_*_schedule_with_warmup`, the first update does not get a rate of
//! exactly zero.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// The shape of the schedule after warmup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    /// Stay at the peak rate.
    Constant,
    /// Fall linearly from the peak to the floor at `total_steps` (default).
    #[default]
    Linear,
    /// Follow half a cosine from the peak to the floor at `total_steps`.
    Cosine,
}

/// A learning-rate schedule, as written in a TOML config:
///
/// ```toml
/// peak_lr = 3e-4
/// warmup_steps = 100
/// total_steps = 10000
/// decay = "cosine"
/// min_lr_ratio = 0.1
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// The rate reached at the end of warmup. Default `1e-4`.
    pub peak_lr: f64,
    /// Number of linear warmup steps; `0` starts at the peak. Default `0`.
    pub warmup_steps: u64,
    /// The step at which decay reaches the floor; must be at least `warmup_steps` for `linear`
    /// and `cosine`, ignored for `constant`. `0` means the run's step count (a run
    /// configuration resolves it, `RunConfig::optimizer_schedule`); a schedule used on its own
    /// with `0` is at its floor after warmup. Default `0`.
    pub total_steps: u64,
    /// The shape after warmup: `constant`, `linear` or `cosine`. Default `linear`.
    pub decay: Decay,
    /// The floor as a fraction of `peak_lr`, in `[0, 1]`. Default `0.0`.
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            peak_lr: 1e-4,
            warmup_steps: 0,
            total_steps: 0,
            decay: Decay::Linear,
            min_lr_ratio: 0.0,
        }
    }
}

impl ScheduleConfig {
    /// Checks ranges: `peak_lr > 0` and finite, `min_lr_ratio` in `[0, 1]`, and
    /// `warmup_steps <= total_steps` when the schedule decays and `total_steps` is set.
    pub fn validate(&self) -> Result<()> {
        if !(self.peak_lr.is_finite() && self.peak_lr > 0.0) {
            return Err(invalid(
                "schedule",
                format!("peak_lr = {} must be > 0", self.peak_lr),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(invalid(
                "schedule",
                format!("min_lr_ratio = {} is not in [0, 1]", self.min_lr_ratio),
            ));
        }
        // `total_steps = 0` is resolved by the run (`RunConfig::optimizer_schedule`), which
        // checks the resolved schedule again.
        if self.decay != Decay::Constant
            && self.total_steps != 0
            && self.warmup_steps > self.total_steps
        {
            return Err(invalid(
                "schedule",
                format!(
                    "warmup_steps = {} exceeds total_steps = {}",
                    self.warmup_steps, self.total_steps
                ),
            ));
        }
        Ok(())
    }

    /// The learning rate of the update with 0-based index `step` (formula in the module docs).
    pub fn lr(&self, step: u64) -> f64 {
        let peak = self.peak_lr;
        if step < self.warmup_steps {
            return peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let floor = self.min_lr_ratio * peak;
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps);
        if self.decay == Decay::Constant {
            return peak;
        }
        if step >= self.total_steps || decay_steps == 0 {
            return floor;
        }
        let progress = (step - self.warmup_steps) as f64 / decay_steps as f64;
        let fraction = match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => 1.0 - progress,
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        floor + (peak - floor) * fraction
    }
}
