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

/// Load balance over tasks: the Switch loss `E * sum_i f_i * P_i` with `f_i` and `P_i` the
/// means over the batch's tasks of each task's own slot share and mean probability, so that
/// every task present weighs the same whatever its number of tokens, and the loss asks the
/// tasks together to use every expert, not every task to use every expert: tasks that split
/// the experts among them score 1 (balanced), as a router that spreads every token does.
/// Tasks absent from the batch are left out. The token-weighted [`load_balance_loss`] is the
/// same formula over tokens, which the most frequent tasks dominate.
///
/// # Shapes
/// `probs: [T, E]`, `experts: [T, k]` int64, `task_ids: [T]` int64 in `0..num_tasks` ->
/// scalar.
pub fn task_load_balance_loss(
    probs: &Tensor,
    experts: &Tensor,
    task_ids: &Tensor,
    num_tasks: usize,
) -> Result<Tensor> {
    let (t, e) = dims2("task_load_balance_loss", "probs", probs)?;
    let (te, k) = dims2("task_load_balance_loss", "experts", experts)?;
    if te != t || task_ids.size() != [t] {
        return Err(KernelError::Shape {
            op: "task_load_balance_loss",
            arg: if te != t { "experts" } else { "task_ids" },
            got: if te != t {
                experts.size()
            } else {
                task_ids.size()
            },
            expected: format!("{t} rows (same tokens as probs)"),
        });
    }
    let one_hot = task_ids.f_one_hot(num_tasks as i64)?.to_kind(Kind::Float); // [T, tasks]
    let slots = experts.f_one_hot(e)?.sum_dim_intlist(1, false, Kind::Float); // [T, E]
    let task_slots = one_hot.tr().matmul(&slots);
    let task_probs = one_hot.tr().matmul(&probs.to_kind(Kind::Float));
    let tokens = one_hot.sum_dim_intlist(0, false, Kind::Float);
    Ok(task_load_balance_from_sums(
        &task_slots,
        &task_probs,
        &tokens,
        k,
    ))
}

/// [`task_load_balance_loss`] from per-task sums, which add over ranks: `task_slots [tasks,
/// E]` (slots each task sent to each expert), `task_prob_sums [tasks, E]` (the sum of each
/// task's tokens' probabilities), `task_tokens [tasks]`, `k` slots per token. The slot shares
/// carry no gradient, the probabilities do.
pub fn task_load_balance_from_sums(
    task_slots: &Tensor,
    task_prob_sums: &Tensor,
    task_tokens: &Tensor,
    k: i64,
) -> Tensor {
    let e = task_slots.size()[1] as f64;
    let present = task_tokens.gt(0.0).to_kind(Kind::Float).unsqueeze(1); // [tasks, 1]
    let n = task_tokens.clamp_min(1.0).unsqueeze(1);
    let fraction = task_slots.detach() / (&n * k as f64) * &present;
    let mean_prob = task_prob_sums / &n * &present;
    let m = present.sum(Kind::Float).clamp_min(1.0);
    let f = fraction.sum_dim_intlist(0, false, Kind::Float) / &m;
    let p = mean_prob.sum_dim_intlist(0, false, Kind::Float) / &m;
    (f * p).sum(Kind::Float) * e
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
