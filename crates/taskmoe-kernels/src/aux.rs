//! Auxiliary router losses, computed per MoE layer in fp32.
//!
//! Each returns a scalar fp32 tensor that carries gradients to the router probabilities or
//! logits; callers scale them by their configured coefficients and average over layers.

use tch::{Kind, Tensor};

use crate::error::{dims2, KernelError, Result};

/// Switch Transformer load-balancing loss, `E * sum_i f_i * P_i`
/// ([Fedus et al. 2021](https://arxiv.org/abs/2101.03961), eq. 4).
///
/// `f_i` is the fraction of the `T * k` routing slots that chose expert `i` (before capacity
/// drops; not differentiable) and `P_i` the mean router probability of expert `i`. Normalising
/// `f` by `T * k` makes a perfectly balanced router score exactly 1 for any `k`; a router that
/// sends everything to one expert with certainty scores `E`.
///
/// # Shapes
/// `probs: [T, E]` (softmax over experts), `experts: [T, k]` int64 -> scalar.
pub fn load_balance_loss(probs: &Tensor, experts: &Tensor) -> Result<Tensor> {
    let (t, e) = dims2("load_balance_loss", "probs", probs)?;
    let (te, k) = dims2("load_balance_loss", "experts", experts)?;
    if te != t {
        return Err(KernelError::Shape {
            op: "load_balance_loss",
            arg: "experts",
            got: experts.size(),
            expected: format!("[{t}, k] (same tokens as probs)"),
        });
    }
    // A device-side count: no host synchronisation (bincount would read back min and max).
    let fraction = crate::count::count_ids("load_balance_loss", experts, e as usize)?
        .to_kind(Kind::Float)
        / (t * k).max(1) as f64;
    let mean_prob = probs.to_kind(Kind::Float).mean_dim(0, false, Kind::Float);
    Ok((fraction * mean_prob).sum(Kind::Float) * e as f64)
}

/// ST-MoE router z-loss, `mean_t (logsumexp_i logits_{t,i})^2`
/// ([Zoph et al. 2022](https://arxiv.org/abs/2202.08906), eq. 5): keeps router logits small,
/// which keeps the softmax stable in low precision.
///
/// # Shapes
/// `logits: [T, E]` -> scalar.
pub fn z_loss(logits: &Tensor) -> Result<Tensor> {
    dims2("z_loss", "logits", logits)?;
    let lse = logits.to_kind(Kind::Float).f_logsumexp(-1, false)?;
    Ok(lse.square().mean(Kind::Float))
}

/// Negative task-expert mutual information, `-I(task; expert)`, the Mod-Squad loss
/// ([Chen et al. 2022](https://arxiv.org/abs/2212.08066)).
///
/// With the joint distribution over the batch `P(t, e) = (1/T) sum_{x in batch, task(x) = t}
/// p(e | x)`, and its marginals `P(t)` (the task shares of the batch) and `P(e)`,
/// `I = sum_{t,e} P(t,e) log(P(t,e) / (P(t) P(e)))`. Minimising `-I` pushes each task towards
/// its own experts (low `H(E | T)`) while keeping overall expert use spread (high `H(E)`). It
/// uses the joint `P(task, expert)`, not `P(expert | task)`, so tasks weigh by their share.
///
/// # Shapes
/// `probs: [T, E]`, `task_ids: [T]` int64 in `0..num_tasks` -> scalar.
pub fn mutual_information_loss(
    probs: &Tensor,
    task_ids: &Tensor,
    num_tasks: usize,
) -> Result<Tensor> {
    let (t, _) = dims2("mutual_information_loss", "probs", probs)?;
    if task_ids.size() != [t] {
        return Err(KernelError::Shape {
            op: "mutual_information_loss",
            arg: "task_ids",
            got: task_ids.size(),
            expected: format!("[{t}] (one task per token)"),
        });
    }
    let one_hot = task_ids.f_one_hot(num_tasks as i64)?.to_kind(Kind::Float); // (tokens, tasks)
    let joint = one_hot.transpose(0, 1).matmul(&probs.to_kind(Kind::Float)) / t.max(1) as f64;
    let p_task = joint.sum_dim_intlist(1, true, Kind::Float);
    let p_expert = joint.sum_dim_intlist(0, true, Kind::Float);
    let tiny = 1e-12;
    let ratio =
        joint.clamp_min(tiny).log() - p_task.clamp_min(tiny).log() - p_expert.clamp_min(tiny).log();
    Ok(-(joint * ratio).sum(Kind::Float))
}
