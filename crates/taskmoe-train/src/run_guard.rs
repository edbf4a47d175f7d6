//! The trainer's [`StepGuard`]: in a data-parallel job the logged values become the global
//! batch's and the gradients are averaged over the ranks; a non-finite loss or gradient norm,
//! or a loss spike (`train.loss_spike_factor`), stops the run or skips the update by
//! `train.nonfinite`.

use std::collections::BTreeMap;

use crate::config_sections::TrainConfig;
use crate::distributed::Distributed;
use crate::error::{Result, TrainError};
use crate::nonfinite::{loss_spike, NonFinitePolicy, StepAction};
use crate::objective::{StepGuard, StepValues};
use taskmoe_optim::AdamW;

/// The guard of one trainer step.
pub(crate) struct RunGuard<'a> {
    /// The run's `[train]` section (policy, spike factor).
    pub train: &'a TrainConfig,
    /// The job this process is a rank of.
    pub dist: Option<&'a Distributed>,
    /// Task id of every example of this rank's batch (host values).
    pub task_ids: &'a [i64],
    /// Task names by id.
    pub task_names: &'a [String],
    /// The losses of the last applied steps.
    pub recent_losses: &'a [f64],
    /// The 1-based index of the step.
    pub step: u64,
    /// The last good checkpoint, as errors name it.
    pub checkpoint: String,
    /// Real tokens of this rank's batch; after [`StepGuard::check_loss`], of the global batch.
    pub tokens: usize,
    /// Mean task loss of each task present in the (global) batch, set by `check_loss`.
    pub task_losses: BTreeMap<String, f64>,
}

impl RunGuard<'_> {
    /// Sum and count of the per-example losses of every task id (tasks absent have count 0).
    fn task_sums(&self, per_example: &[f64]) -> Vec<(f64, usize)> {
        let mut sums = vec![(0.0, 0); self.task_names.len()];
        for (&task, &v) in self.task_ids.iter().zip(per_example) {
            let e = &mut sums[task as usize];
            e.0 += v;
            e.1 += 1;
        }
        sums
    }

    /// The logged numbers of the global batch: sums over the ranks, means of the per-rank
    /// means (every shard has the same number of examples and routing slots).
    fn reduce(
        &mut self,
        d: &Distributed,
        values: &mut StepValues,
        task_sums: &mut [(f64, usize)],
    ) -> Result<()> {
        let mut v = vec![values.loss, values.task_loss, self.tokens as f64];
        v.extend(values.aux.values());
        v.extend(task_sums.iter().flat_map(|&(s, n)| [s, n as f64]));
        v.extend(values.expert_load.iter().flatten());
        v.extend(&values.dropped);
        v.extend(&values.top1_prob);
        v.extend(&values.gate_entropy);
        let sum = d.sum(&v)?;
        let w = d.world_size() as f64;
        let mut it = sum.into_iter();
        let mut next = || it.next().expect("every rank sends the same layout");
        values.loss = next() / w;
        values.task_loss = next() / w;
        self.tokens = next() as usize;
        for value in values.aux.values_mut() {
            *value = next() / w;
        }
        for entry in task_sums.iter_mut() {
            *entry = (next(), next() as usize);
        }
        for value in values.expert_load.iter_mut().flatten() {
            *value = next() / w;
        }
        let gate_measures = values.top1_prob.iter_mut().chain(&mut values.gate_entropy);
        for value in values.dropped.iter_mut().chain(gate_measures) {
            *value = next() / w;
        }
        Ok(())
    }
}

impl StepGuard for RunGuard<'_> {
    fn check_loss(&mut self, values: &mut StepValues) -> Result<Option<String>> {
        let mut task_sums = self.task_sums(&values.per_example);
        if let Some(d) = self.dist {
            self.reduce(d, values, &mut task_sums)?;
        }
        self.task_losses = task_sums
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(t, &(sum, n))| (self.task_names[t].clone(), sum / n as f64))
            .collect();
        let bad_task = self.task_losses.iter().find(|(_, v)| !v.is_finite());
        let culprit = match bad_task {
            Some((task, _)) => format!(
                "the loss of task `{task}` (last good checkpoint: {})",
                self.checkpoint
            ),
            None => format!(
                "the loss (aux losses; last good checkpoint: {})",
                self.checkpoint
            ),
        };
        if self
            .train
            .nonfinite
            .check(self.step, &culprit, values.loss)?
            == StepAction::Skip
        {
            return Ok(Some(match bad_task {
                Some((task, _)) => format!("the loss of task `{task}` is not finite"),
                None => "the loss is not finite".to_string(),
            }));
        }
        // A finite loss that exploded is treated like a non-finite one.
        let factor = self.train.loss_spike_factor;
        let Some(median) = loss_spike(self.recent_losses, values.loss, factor) else {
            return Ok(None);
        };
        let worst = self
            .task_losses
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(String::new(), |(t, v)| format!("; task `{t}`: {v:e}"));
        match self.train.nonfinite {
            NonFinitePolicy::Error => Err(TrainError::LossSpike {
                step: self.step,
                loss: values.loss,
                median,
                factor,
                context: format!("{worst} (last good checkpoint: {})", self.checkpoint),
            }),
            NonFinitePolicy::SkipStep => Ok(Some(format!(
                "the loss {:e} is over train.loss_spike_factor = {factor:e} times its running \
                 median {median:e}{worst}",
                values.loss
            ))),
        }
    }

    fn grad_norm(&mut self, opt: &mut AdamW) -> Result<f64> {
        match self.dist {
            Some(d) => {
                d.sync_grads(opt)?;
                d.grad_norm(opt)
            }
            None => Ok(opt.grad_norm()?),
        }
    }

    fn check_grad_norm(&mut self, norm: f64) -> Result<Option<String>> {
        let what = format!(
            "the gradient norm (last good checkpoint: {})",
            self.checkpoint
        );
        Ok(match self.train.nonfinite.check(self.step, &what, norm)? {
            StepAction::Skip => Some("the gradient norm is not finite".to_string()),
            StepAction::Apply => None,
        })
    }
}
