//! Choosing the seen task an unseen task starts from, by measured few-shot loss: the seen
//! task whose routing, task embedding and head, applied unchanged to the new task's k
//! training examples, give the lowest loss against the new task's labels.

use std::path::Path;

use crate::error::Result;
use crate::results::RunResult;
use crate::runner::RESULT_FILE;
use taskmoe_data::{Batch, EncodedExample};
use taskmoe_model::per_example_loss;
use taskmoe_train::{model_input, resolve_checkpoint, TrainedRun};
use tch::{Device, Kind};

/// A trained model loaded from a finished run's tested checkpoint (on the CPU).
pub struct TrainedModel {
    /// The checkpoint with its run's configuration and data.
    pub run: TrainedRun,
}

impl TrainedModel {
    /// Loads the checkpoint `run_dir`'s final test evaluated ([`RunResult::tested_checkpoint`]:
    /// its best validation checkpoint under early stopping), or its newest usable one when
    /// the run names none ([`resolve_checkpoint`]).
    pub fn load(run_dir: &Path) -> Result<Self> {
        let tested = match run_dir.join(RESULT_FILE).is_file() {
            true => RunResult::tested_checkpoint(run_dir)?,
            false => run_dir.to_path_buf(),
        };
        let run = TrainedRun::load(resolve_checkpoint(tested)?, &[], Some(Device::Cpu))?;
        Ok(TrainedModel { run })
    }

    /// Mean loss of the examples (labels of their own task) when the model treats them as
    /// task `as_task`: its routing, task embedding and head.
    pub fn loss_as(&self, examples: &[EncodedExample], as_task: usize) -> Result<f64> {
        let batch = Batch::from_examples(
            examples.iter().map(|e| (as_task, e)),
            self.run.data.seq_len,
            self.run.data.pad_id,
        )?;
        let t = batch.to_tensors(Device::Cpu)?;
        let loss = tch::no_grad(|| -> Result<f64> {
            let out = self.run.model.forward(&model_input(&t), false)?;
            let per = per_example_loss(
                &out.logits,
                &t.class_labels,
                &t.regression_targets,
                &t.regression_mask,
            );
            Ok(per.mean(Kind::Float).double_value(&[]))
        })?;
        Ok(loss)
    }

    /// The candidate (a task id with the same head kind as `task`) with the lowest
    /// [`Self::loss_as`] on `examples`, and every candidate's loss. `None` when no candidate
    /// fits.
    pub fn most_related(
        &self,
        task: usize,
        examples: &[EncodedExample],
        candidates: &[usize],
    ) -> Result<Option<Relatedness>> {
        let heads = self.run.data.heads();
        let mut losses = Vec::new();
        for &c in candidates {
            if c != task && heads[c].kind == heads[task].kind {
                losses.push((c, self.loss_as(examples, c)?));
            }
        }
        let best = losses
            .iter()
            .filter(|(_, l)| l.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|&(c, _)| c);
        Ok(best.map(|best| Relatedness { best, losses }))
    }
}

/// What [`TrainedModel::most_related`] measured.
#[derive(Clone, Debug)]
pub struct Relatedness {
    /// The task with the lowest loss.
    pub best: usize,
    /// Every fitting candidate's loss.
    pub losses: Vec<(usize, f64)>,
}
