//! Where a fresh run's weights start, and which of them train: a pretrained BERT
//! (`init.from`, upcycled into the experts), another run's checkpoint
//! (`init.checkpoint`), seen tasks' routing copied to new ones (`init.task_init`) or
//! calibrated from their own examples (`init.calibrate_routing`), and `train.train_only`.

use tch::{nn, Tensor};

use taskmoe_model::{import_bert, is_pretrained_param, ImportReport, MultiTaskModel};

use crate::checkpoint::resolve_checkpoint;
use crate::error::{invalid, Result};
use crate::objective::model_input;
use crate::run_config::RunConfig;
use crate::run_data::RunData;
use taskmoe_data::Batch;

/// Initialises a fresh run's model from what `cfg.train` names, in this order: the BERT import,
/// the checkpoint's weights, the task initialisations. Returns what the import did.
pub(crate) fn initialise(
    model: &MultiTaskModel,
    vs: &nn::VarStore,
    cfg: &RunConfig,
    data: &RunData,
) -> Result<Option<ImportReport>> {
    let import = match &cfg.init.from {
        Some(dir) => Some(import_bert(model, vs, dir, cfg.init.upcycling())?),
        None => None,
    };
    if let Some(path) = &cfg.init.checkpoint {
        let ckpt = resolve_checkpoint(path)?;
        ckpt.load_weights(vs).map_err(|e| {
            invalid(
                "config",
                format!("key `init.checkpoint` ({}): {e}", ckpt.dir.display()),
            )
        })?;
    }
    for (new, seen) in &cfg.init.task_init {
        let (Some(t), Some(s)) = (data.id(new), data.id(seen)) else {
            unreachable!("RunData::load checked the task names");
        };
        model
            .init_task_from(t, s, cfg.init.task_init_routing)
            .map_err(|e| invalid("config", format!("key `init.task_init.{new}`: {e}")))?;
    }
    for (new, seen) in &cfg.init.routing_from {
        let (Some(t), Some(s)) = (data.id(new), data.id(seen)) else {
            unreachable!("RunData::load checked the task names");
        };
        model
            .copy_routing(t, s)
            .map_err(|e| invalid("config", format!("key `init.routing_from.{new}`: {e}")))?;
    }
    if cfg.init.calibrate_routing {
        calibrate(model, vs.device(), cfg, data)?;
    }
    Ok(import)
}

/// The parameters the optimizer updates: all that require gradients (not the buffers that
/// other rules move, such as a router's selection bias, nor the frozen base FFNs of LoRA
/// experts), less the pretrained encoder with `train.freeze_pretrained` and the frozen
/// bottom of `model.frozen_layers`, and (with
/// `train.train_only`) only those whose name contains one of its patterns; the others stop
/// requiring gradients, so backward skips them and the optimizer holds no state for them. A
/// pattern that matches nothing is an error naming it.
pub fn trainable(vs: &nn::VarStore, cfg: &RunConfig) -> Result<Vec<(String, Tensor)>> {
    let train = &cfg.train;
    let only = &train.train_only;
    let mut all = Vec::new();
    for (name, t) in vs.variables() {
        if !t.requires_grad() {
            continue;
        }
        let frozen = cfg.model.is_frozen_param(&name);
        if frozen || (train.freeze_pretrained && is_pretrained_param(&name)) {
            let _ = t.set_requires_grad(false);
        } else {
            all.push((name, t));
        }
    }
    if only.is_empty() {
        return Ok(all);
    }
    for pattern in only {
        if !all.iter().any(|(name, _)| name.contains(pattern.as_str())) {
            return Err(invalid(
                "config",
                format!("key `train.train_only`: `{pattern}` matches no parameter"),
            ));
        }
    }
    let mut kept = Vec::new();
    for (name, tensor) in all {
        if only.iter().any(|p| name.contains(p.as_str())) {
            kept.push((name, tensor));
        } else {
            let _ = tensor.set_requires_grad(false);
        }
    }
    Ok(kept)
}

/// `init.calibrate_routing`: each training task's examples (those whose routing
/// `init.task_init` did not copy), in batches of `data.batch_size`, through
/// [`MultiTaskModel::calibrate_routing`].
fn calibrate(
    model: &MultiTaskModel,
    device: tch::Device,
    cfg: &RunConfig,
    data: &RunData,
) -> Result<()> {
    let copied = |t: usize| {
        let name = &data.specs[t].name;
        (cfg.init.task_init_routing && cfg.init.task_init.contains_key(name))
            || cfg.init.routing_from.contains_key(name)
    };
    let mut batches = Vec::new();
    for &t in data.train_tasks.iter().filter(|&&t| !copied(t)) {
        for chunk in data.train[t].examples.chunks(cfg.data.batch_size.max(1)) {
            let batch =
                Batch::from_examples(chunk.iter().map(|e| (t, e)), data.seq_len, data.pad_id)
                    .map_err(|e| invalid("config", format!("key `init.calibrate_routing`: {e}")))?;
            batches.push(batch.to_tensors(device)?);
        }
    }
    let inputs: Vec<_> = batches.iter().map(model_input).collect();
    Ok(model.calibrate_routing(&inputs)?)
}
