//! Task affinity by gradients: whether two tasks pull the parameters they share the same way.
//!
//! Routing can only follow task relatedness if related tasks *want* the same thing from the
//! layers they share: a per-task gate moves toward the experts whose output lowers its task's
//! loss, so two tasks end up on common experts when their gradients agree. This module measures
//! that agreement directly. For each task it takes the gradient of the task's mean loss over
//! its first examples of a split (the model in evaluation mode: no dropout, no router noise, no
//! auxiliary losses) and compares tasks by the cosine of those gradients, per group of
//! parameters:
//!
//! - `shared`: every trained parameter outside the MoE layers and the heads (embeddings,
//!   attention, norms, dense FFNs);
//! - `experts`: the experts (and shared experts) of every MoE layer;
//! - `router <block>`: one MoE layer's router; a variable with one row per task (per-task
//!   gates, task embeddings: the router's `task_indexed_variables`) contributes
//!   each task's own row, so the cosine says whether two tasks would move their gates alike;
//! - `task embeddings`: the encoder's task vectors (`model.task_embedding`), each task's own
//!   row.
//!
//! The heads are left out: each belongs to one task. The family measures of
//! [`crate::routing_quality`] are computed on each group's cosine matrix, so a gradient
//! affinity reads like a routing table: with related tasks pulling alike, within-family
//! cosine exceeds across-family cosine and clustering tasks by gradient recovers the families.

use std::collections::BTreeMap;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use taskmoe_data::TaskSpec;
use taskmoe_model::{per_example_loss, ModelInput, MultiTaskModel};

use crate::batching::{eval_batch, eval_batch_positions, EvalBatching};
use crate::evaluate::{EvalData, EvaluateError};
use crate::routing_quality::{family_structure, FamilyRouting};

/// How much of each task a gradient is taken over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AffinityOptions {
    /// The first examples of each task's split (in split order) the loss is averaged over;
    /// 0 takes them all.
    pub examples_per_task: usize,
    /// Examples per forward pass. The gradient is the same for any batch size up to rounding,
    /// except where evaluation routing depends on the batch (`expert-choice`, whose experts
    /// choose within each batch, and `capacity_factor_eval > 0`).
    pub batch_size: usize,
}

/// One parameter group's gradient comparison.
#[derive(Clone, Debug, Serialize)]
pub struct GroupAffinity {
    /// `shared`, `experts`, `router <block>` or `task embeddings`.
    pub group: String,
    /// Gradient entries compared per task (each task's own row only, for per-task rows).
    pub entries: i64,
    /// `[tasks][tasks]` cosine of two tasks' gradients; 0 where either gradient is zero.
    pub cosine: Vec<Vec<f64>>,
    /// Each task's gradient norm on the group.
    pub norm: Vec<f64>,
    /// Within- against across-family cosine, nearest task and family ARI of the clustering
    /// by `1 - cosine` ([`family_structure`]).
    pub family: FamilyRouting,
    /// The cosine of the tasks' gradients less their mean over the tasks: what sets a task
    /// apart, without the pull every task shares (at the start of training that common pull,
    /// say toward the label prior, can dominate every raw cosine).
    pub centred_cosine: Vec<Vec<f64>>,
    /// [`GroupAffinity::family`] of the centred cosine.
    pub centred_family: FamilyRouting,
}

/// The gradient affinity of a model's tasks.
#[derive(Clone, Debug, Serialize)]
pub struct GradientAffinity {
    /// The tasks compared, in the order of every matrix.
    pub tasks: Vec<String>,
    /// Each task's declared family.
    pub families: Vec<String>,
    /// Examples each task's gradient is averaged over.
    pub examples: Vec<usize>,
    /// Every parameter group with a gradient, in the order listed in the module docs.
    pub groups: Vec<GroupAffinity>,
}

/// Where one trained parameter's gradient is compared.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Shared,
    Experts,
    Router(usize),
    TaskEmbeddings,
}

impl Group {
    fn name(&self) -> String {
        match self {
            Group::Shared => "shared".into(),
            Group::Experts => "experts".into(),
            Group::Router(block) => format!("router {block}"),
            Group::TaskEmbeddings => "task embeddings".into(),
        }
    }
}

/// The group of parameter `name` and whether it holds one row per task; `None` for a head.
fn classify(model: &MultiTaskModel, name: &str) -> Option<(Group, bool)> {
    if name.starts_with("heads.") {
        return None;
    }
    if name.starts_with("task_embeddings.") {
        return Some((Group::TaskEmbeddings, true));
    }
    for (block, layer) in model.moe_layers() {
        let Some(rest) = name.strip_prefix(&model.config().moe_prefix(block)) else {
            continue;
        };
        return Some(match rest.strip_prefix("router.") {
            Some(variable) => {
                let indexed = layer.router().task_indexed_variables().contains(&variable);
                (Group::Router(block), indexed)
            }
            None => (Group::Experts, false),
        });
    }
    Some((Group::Shared, false))
}

/// The gradient affinity of `tasks` on `data`'s split, from the gradients of the trained
/// parameters `params` (name and tensor; those not requiring gradients are skipped). Leaves
/// the parameters' `.grad` zeroed.
pub fn gradient_affinity(
    model: &MultiTaskModel,
    data: &EvalData,
    tasks: &[usize],
    params: &[(String, Tensor)],
    options: AffinityOptions,
    device: Device,
) -> Result<GradientAffinity, EvaluateError> {
    let mut grouped: BTreeMap<Group, Vec<(Tensor, bool)>> = BTreeMap::new();
    for (name, t) in params {
        if !t.requires_grad() {
            continue;
        }
        if let Some((group, indexed)) = classify(model, name) {
            grouped
                .entry(group)
                .or_default()
                .push((t.shallow_clone(), indexed));
        }
    }
    let specs: Vec<&TaskSpec> = tasks.iter().map(|&t| &data.specs[t]).collect();
    // Per group, per task: the flattened gradient (fp32, on the device).
    let mut gradients: BTreeMap<&Group, Vec<Tensor>> = BTreeMap::new();
    let mut examples = Vec::new();
    for (&task, spec) in tasks.iter().zip(&specs) {
        let fail = |message: String| EvaluateError {
            task: spec.name.clone(),
            message,
        };
        zero_grads(params);
        let n = task_loss_backward(model, data, task, options, device).map_err(fail)?;
        examples.push(n);
        for (group, members) in &grouped {
            let parts: Vec<Tensor> = members
                .iter()
                .map(|(t, indexed)| {
                    let g = t.grad();
                    let g = match g.defined() {
                        true => g,
                        false => t.zeros_like(),
                    };
                    let g = match indexed {
                        true => g.get(task as i64),
                        false => g,
                    };
                    g.to_kind(Kind::Float).reshape([-1])
                })
                .collect();
            gradients
                .entry(group)
                .or_default()
                .push(Tensor::cat(&parts, 0));
        }
    }
    zero_grads(params);
    let families: Vec<String> = specs.iter().map(|s| s.family.clone()).collect();
    let groups = gradients
        .into_iter()
        .map(|(group, per_task)| compare(group.name(), &per_task, &families))
        .collect();
    Ok(GradientAffinity {
        tasks: specs.iter().map(|s| s.name.clone()).collect(),
        families,
        examples,
        groups,
    })
}

/// Zeroes the gradients of `params` (the heads' too, which no group reads).
fn zero_grads(params: &[(String, Tensor)]) {
    for (_, t) in params {
        let mut t = t.shallow_clone();
        t.zero_grad();
    }
}

/// Backpropagates `task`'s mean loss over its first examples into the parameters' `.grad`;
/// returns how many examples it averaged.
fn task_loss_backward(
    model: &MultiTaskModel,
    data: &EvalData,
    task: usize,
    options: AffinityOptions,
    device: Device,
) -> Result<usize, String> {
    let split = &data.split[task];
    let n = match options.examples_per_task {
        0 => split.examples.len(),
        n => n.min(split.examples.len()),
    };
    if n == 0 {
        return Err("the split has no examples of this task".into());
    }
    let batching = EvalBatching::bucketed(options.batch_size.max(1));
    let positions: Vec<usize> = eval_batch_positions(split, batching)
        .into_iter()
        .flatten()
        .filter(|&i| i < n)
        .collect();
    for chunk in positions.chunks(batching.batch_size) {
        let batch = eval_batch(split, chunk, batching, data.seq_len, data.pad_id)
            .and_then(|b| b.to_tensors(device))
            .map_err(|e| e.to_string())?;
        let output = model
            .forward(
                &ModelInput {
                    input_ids: &batch.input_ids,
                    attention_mask: &batch.attention_mask,
                    token_type_ids: Some(&batch.token_type_ids),
                    task_ids: &batch.task_ids,
                },
                false,
            )
            .map_err(|e| e.to_string())?;
        let loss = per_example_loss(
            &output.logits,
            &batch.class_labels,
            &batch.regression_targets,
            &batch.regression_mask,
        )
        .sum(Kind::Float)
            / n as f64;
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(format!("the loss is {value}"));
        }
        loss.f_backward().map_err(|e| e.to_string())?;
    }
    Ok(n)
}

/// The cosine matrices, norms and family measures of one group's per-task gradients. Only the
/// Gram matrix of the gradients is formed (no copy of them): the centred one follows from it,
/// `C_ij = G_ij - r_i - r_j + m` with `r` the row means of `G` and `m` its mean.
fn compare(group: String, per_task: &[Tensor], families: &[String]) -> GroupAffinity {
    let n = per_task.len();
    // Dot products in f64, one vector pair converted at a time.
    let mut gram = vec![vec![0.0; n]; n];
    for i in 0..n {
        let a = per_task[i].to_kind(Kind::Double);
        for j in 0..=i {
            let dot = a.dot(&per_task[j].to_kind(Kind::Double)).double_value(&[]);
            gram[i][j] = dot;
            gram[j][i] = dot;
        }
    }
    let rows: Vec<f64> = gram
        .iter()
        .map(|r| r.iter().sum::<f64>() / n as f64)
        .collect();
    let mean = rows.iter().sum::<f64>() / n as f64;
    let centred: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| gram[i][j] - rows[i] - rows[j] + mean)
                .collect()
        })
        .collect();
    let (cosine, norm) = cosines(&gram);
    let (centred_cosine, _) = cosines(&centred);
    GroupAffinity {
        family: family_structure(&cosine, families),
        centred_family: family_structure(&centred_cosine, families),
        group,
        entries: per_task.first().map_or(0, |t| t.size()[0]),
        cosine,
        norm,
        centred_cosine,
    }
}

/// The cosines of a Gram matrix's vectors (0 where a vector is zero) and their norms.
fn cosines(gram: &[Vec<f64>]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let n = gram.len();
    let norm: Vec<f64> = (0..n).map(|i| gram[i][i].max(0.0).sqrt()).collect();
    let cosine = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match norm[i] * norm[j] {
                    d if d > 0.0 => (gram[i][j] / d).clamp(-1.0, 1.0),
                    _ => 0.0,
                })
                .collect()
        })
        .collect();
    (cosine, norm)
}
