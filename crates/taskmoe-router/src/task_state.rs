//! The task states of the `task-representation` router: each task's mean token state, kept
//! beside the weights and never trained by gradient.

use std::sync::Mutex;

use tch::{nn, Kind, Tensor};

use crate::error::{Result, RouterError};

/// Each task's state `s_t` (a non-trainable variable `task_state [tasks, d]`, saved with the
/// weights), moved towards every observed batch's per-task mean of the token states, or set to
/// the exact mean of everything observed during a calibration.
#[derive(Debug)]
pub(crate) struct TaskStates {
    /// `[tasks, d]`
    pub(crate) state: Tensor,
    momentum: f64,
    /// While calibrating: the sums of the observed token states and their counts per task.
    calibration: Mutex<Option<(Tensor, Tensor)>>,
}

impl TaskStates {
    /// Zero states for `tasks` tasks of `d`-wide tokens under `p`.
    pub(crate) fn new(p: &nn::Path, tasks: i64, d: i64, momentum: f64) -> Self {
        TaskStates {
            state: p.zeros_no_train("task_state", &[tasks, d]),
            momentum,
            calibration: Mutex::new(None),
        }
    }

    /// See [`crate::Router::observe_task_states`].
    pub(crate) fn observe(&self, sums: &Tensor, counts: &Tensor) -> Result<()> {
        let state = &self.state;
        if sums.size() != state.size() || counts.size() != [state.size()[0]] {
            return Err(RouterError::Input(format!(
                "task state sums {:?} and counts {:?} for states of shape {:?}",
                sums.size(),
                counts.size(),
                state.size()
            )));
        }
        tch::no_grad(|| -> Result<()> {
            let (sums, counts) = (sums.to_kind(Kind::Float), counts.to_kind(Kind::Float));
            let mut calibration = self.calibration.lock().expect("not poisoned");
            let (mean, seen) = match calibration.as_mut() {
                Some((total, n)) => {
                    *total += &sums;
                    *n += &counts;
                    (&*total / n.clamp_min(1.0).unsqueeze(1), n.gt(0.0))
                }
                None => {
                    let mean = &sums / counts.clamp_min(1.0).unsqueeze(1);
                    let m = self.momentum;
                    (state * (1.0 - m) + mean * m, counts.gt(0.0))
                }
            };
            let updated = mean.where_self(&seen.unsqueeze(1), state);
            state.shallow_clone().f_copy_(&updated)?;
            Ok(())
        })
    }

    /// See [`crate::Router::begin_calibration`].
    pub(crate) fn begin_calibration(&self) {
        let tasks = self.state.size()[0];
        *self.calibration.lock().expect("not poisoned") = Some((
            self.state.zeros_like(),
            Tensor::zeros([tasks], (Kind::Float, self.state.device())),
        ));
    }

    /// See [`crate::Router::end_calibration`].
    pub(crate) fn end_calibration(&self) {
        *self.calibration.lock().expect("not poisoned") = None;
    }

    /// Whether a calibration is under way.
    pub(crate) fn is_calibrating(&self) -> bool {
        self.calibration.lock().expect("not poisoned").is_some()
    }
}
