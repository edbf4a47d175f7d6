//! The training objective and the one training step that `Trainer`, `taskmoe check` and every
//! benchmark take, so a timed step is the trained step.
//!
//! [`Objective::loss`] turns a batch into the loss and its parts: the model's forward pass in
//! training mode (under the configured autocast), the per-example task losses weighted per task,
//! plus the MoE auxiliary losses weighted by the configured coefficients. [`Objective::step`]
//! takes one optimizer step with it: loss, the host reads a log needs, backward, gradient norm,
//! clipping and AdamW. What a step may decide on the way (skip a non-finite update, average
//! over the ranks of a job) is a [`StepGuard`]'s: the trainer passes its own, benchmarks pass
//! [`Unguarded`].

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use taskmoe_data::TensorBatch;
use taskmoe_experts::MoeConfig;
use taskmoe_model::{per_example_loss, ModelConfig, ModelInput, ModelOutput, MultiTaskModel};

use crate::error::{invalid, Result};
use crate::run_config::RunConfig;
use taskmoe_optim::AdamW;

/// The model input of a batch's tensors.
pub fn model_input(batch: &TensorBatch) -> ModelInput<'_> {
    ModelInput {
        input_ids: &batch.input_ids,
        attention_mask: &batch.attention_mask,
        token_type_ids: Some(&batch.token_type_ids),
        task_ids: &batch.task_ids,
    }
}

/// What a training step minimises: task losses weighted per task, plus the MoE auxiliary
/// losses weighted by the router configuration's coefficients.
pub struct Objective {
    /// Loss weight of each task id. `[tasks]` f32 on the device.
    task_weights: Tensor,
    /// The MoE settings, for the router's auxiliary-loss coefficients (`model.moe.router`).
    moe: MoeConfig,
    /// The compute precision of the forward pass.
    precision: taskmoe_device::Precision,
    /// The device of the model and the batches.
    device: Device,
    /// Global gradient-norm clip; 0 disables clipping.
    clip_grad_norm: f64,
}

/// A batch's loss and its parts, on the device (the graph kept for backward).
pub struct BatchLoss {
    /// Task loss plus the weighted aux losses. Scalar.
    pub loss: Tensor,
    /// The weighted mean task loss. Scalar.
    pub task_loss: Tensor,
    /// Unweighted loss of every example. `[B]`
    pub per_example: Tensor,
    /// The model's output (logits, aux losses, routing statistics).
    pub output: ModelOutput,
}

/// The host values of a step that a log records.
#[derive(Clone, Debug, Default)]
pub struct StepValues {
    /// The total loss.
    pub loss: f64,
    /// The weighted mean task loss.
    pub task_loss: f64,
    /// Unweighted aux losses averaged over the MoE blocks (empty without MoE blocks).
    pub aux: BTreeMap<String, f64>,
    /// Every example's task loss, in batch order.
    pub per_example: Vec<f64>,
    /// Share of routing slots per expert, per MoE block.
    pub expert_load: Vec<Vec<f64>>,
    /// Share of dropped slots per MoE block.
    pub dropped: Vec<f64>,
    /// Mean router probability of the first choice per MoE block.
    pub top1_prob: Vec<f64>,
    /// Mean gate entropy of the router (nats) per MoE block.
    pub gate_entropy: Vec<f64>,
}

/// What [`Objective::step`] did.
#[derive(Clone, Debug)]
pub struct StepOutcome {
    /// The values read from the step (rewritten by the guard, in a job: the global batch's).
    pub values: StepValues,
    /// Global gradient L2 norm before clipping (NaN when no backward pass ran).
    pub grad_norm: f64,
    /// Why the update was not applied, or `None` when it was.
    pub skipped: Option<String>,
}

/// The decisions of a step that depend on where it runs and on the run's policy.
pub trait StepGuard {
    /// After the forward pass and the host reads: may rewrite `values` (a job's global
    /// means) and decides whether the update goes on (`None`), is skipped (the reason), or
    /// stops the run (an error).
    fn check_loss(&mut self, values: &mut StepValues) -> Result<Option<String>>;
    /// After backward: the gradient norm before clipping (a job all-reduces the gradients
    /// first).
    fn grad_norm(&mut self, opt: &mut AdamW) -> Result<f64>;
    /// Decides on the gradient norm as on the loss.
    fn check_grad_norm(&mut self, norm: f64) -> Result<Option<String>>;
}

/// The guard of a single process that applies every step: what benchmarks and `taskmoe check`
/// time.
pub struct Unguarded;

impl StepGuard for Unguarded {
    fn check_loss(&mut self, _: &mut StepValues) -> Result<Option<String>> {
        Ok(None)
    }
    fn grad_norm(&mut self, opt: &mut AdamW) -> Result<f64> {
        Ok(opt.grad_norm()?)
    }
    fn check_grad_norm(&mut self, _: f64) -> Result<Option<String>> {
        Ok(None)
    }
}

/// [`Unguarded`] that also records when the backward pass ended, so a benchmark can split a
/// step's time into forward + backward and the optimizer (norm, clipping, AdamW, zeroing).
#[derive(Debug, Default)]
pub struct Timed {
    /// When the last step's backward pass ended (`None` before the first).
    pub backward_done: Option<std::time::Instant>,
}

impl StepGuard for Timed {
    fn check_loss(&mut self, values: &mut StepValues) -> Result<Option<String>> {
        Unguarded.check_loss(values)
    }
    fn grad_norm(&mut self, opt: &mut AdamW) -> Result<f64> {
        self.backward_done = Some(std::time::Instant::now());
        Unguarded.grad_norm(opt)
    }
    fn check_grad_norm(&mut self, norm: f64) -> Result<Option<String>> {
        Unguarded.check_grad_norm(norm)
    }
}

impl Objective {
    /// The objective of a run: `train.task_weights` by task name (others weigh 1), the router's
    /// aux coefficients, `runtime.precision` and `optim.clip_grad_norm`.
    pub fn new(cfg: &RunConfig, task_names: &[String], device: Device) -> Self {
        let weights: Vec<f32> = task_names
            .iter()
            .map(|name| *cfg.train.task_weights.get(name).unwrap_or(&1.0) as f32)
            .collect();
        Objective::with_weights(
            &cfg.model,
            &weights,
            cfg.runtime.precision,
            cfg.optim.clip_grad_norm,
            device,
        )
    }

    /// An objective from its parts: a model configuration (for the aux coefficients), one loss
    /// weight per task id, the precision and the clip (0 = none).
    pub fn with_weights(
        model: &ModelConfig,
        task_weights: &[f32],
        precision: taskmoe_device::Precision,
        clip_grad_norm: f64,
        device: Device,
    ) -> Self {
        Objective {
            task_weights: Tensor::from_slice(task_weights).to_device(device),
            moe: model.moe.clone(),
            precision,
            device,
            clip_grad_norm,
        }
    }

    /// The loss of `batch` with `model` in training mode. Autocast (when configured) covers the
    /// forward pass only; the losses are computed outside it, in fp32, as in PyTorch's recipe.
    pub fn loss(&self, model: &MultiTaskModel, batch: &TensorBatch) -> Result<BatchLoss> {
        let output = taskmoe_device::autocast(self.device, self.precision, || {
            model.forward(&model_input(batch), true)
        })
        .map_err(|e| invalid("model", e.to_string()))?;
        let per_example = per_example_loss(
            &output.logits,
            &batch.class_labels,
            &batch.regression_targets,
            &batch.regression_mask,
        );
        let weights = self.task_weights.index_select(0, &batch.task_ids);
        let task_loss = (&per_example * &weights).mean(Kind::Float);
        let loss = match &output.aux {
            Some(a) => &task_loss + a.weighted(&self.moe.router),
            None => task_loss.shallow_clone(),
        };
        Ok(BatchLoss {
            loss,
            task_loss,
            per_example,
            output,
        })
    }

    /// One optimizer step on `batch` at learning rate `lr`: [`Objective::loss`], the host reads
    /// of [`StepValues`], then, unless `guard` skips it, zeroed gradients, backward, the
    /// guard's gradient norm, clipping, the AdamW update; the gradients are zeroed after.
    pub fn step(
        &self,
        model: &MultiTaskModel,
        opt: &mut AdamW,
        batch: &TensorBatch,
        lr: f64,
        guard: &mut dyn StepGuard,
    ) -> Result<StepOutcome> {
        let loss = self.loss(model, batch)?;
        let mut values = read_values(&loss);
        let mut skipped = guard.check_loss(&mut values)?;
        let mut grad_norm = f64::NAN;
        if skipped.is_none() {
            opt.zero_grad();
            loss.loss.backward();
            grad_norm = guard.grad_norm(opt)?;
            if self.clip_grad_norm > 0.0 {
                opt.clip_to_norm(grad_norm, self.clip_grad_norm)?;
            }
            skipped = guard.check_grad_norm(grad_norm)?;
        }
        if skipped.is_none() {
            opt.step(lr)?;
        }
        opt.zero_grad();
        Ok(StepOutcome {
            values,
            grad_norm,
            skipped,
        })
    }
}

/// The host values of a step's loss: one transfer per quantity, and the per-block first-choice
/// probabilities in one (one host synchronisation on CUDA, not one per block).
fn read_values(loss: &BatchLoss) -> StepValues {
    let out = &loss.output;
    let mut aux = BTreeMap::new();
    if let Some(a) = &out.aux {
        for (name, value) in [
            ("load_balance", &a.load_balance),
            ("z_loss", &a.z_loss),
            ("mutual_information", &a.mutual_information),
        ] {
            aux.insert(name.to_string(), value.double_value(&[]));
        }
    }
    let per_example = Vec::try_from(&loss.per_example.to_kind(Kind::Double)).unwrap_or_default();
    // Both gate measures of every block in one read: `[top1_prob..., gate_entropy...]`.
    let gates: Vec<f64> = if out.stats.is_empty() {
        Vec::new()
    } else {
        let values: Vec<Tensor> = (out.stats.iter().map(|(_, s)| s.top1_prob.shallow_clone()))
            .chain(
                out.stats
                    .iter()
                    .map(|(_, s)| s.gate_entropy.shallow_clone()),
            )
            .collect();
        Vec::try_from(Tensor::stack(&values, 0).to_kind(Kind::Double)).unwrap_or_default()
    };
    let (top1_prob, gate_entropy) = gates.split_at(gates.len() / 2);
    StepValues {
        loss: loss.loss.double_value(&[]),
        task_loss: loss.task_loss.double_value(&[]),
        aux,
        per_example,
        expert_load: out
            .stats
            .iter()
            .map(|(_, s)| s.routing.load.clone())
            .collect(),
        dropped: out
            .stats
            .iter()
            .map(|(_, s)| s.routing.dropped_fraction)
            .collect(),
        top1_prob: top1_prob.to_vec(),
        gate_entropy: gate_entropy.to_vec(),
    }
}
