//! Expert parallelism: the experts of a MoE layer split over the ranks of a group, token rows
//! travelling to them and back by all-to-all (GShard, DeepSpeed-MoE, Tutel).
//!
//! Rank `p` of `P` runs experts `p E/P .. (p+1) E/P`. After `permute` the rows of a rank's
//! tokens are grouped by expert, so the rows for rank `q`'s experts are one contiguous run:
//!
//! 1. every rank learns every other rank's per-expert row counts (an all-gather of `[E]`);
//! 2. an all-to-all sends each run to the rank holding its experts (rows arrive grouped by
//!    source rank, then expert) and a permutation regroups them by expert;
//! 3. the local experts run on their rows;
//! 4. the inverse permutation and the mirrored all-to-all bring the outputs home, in the order
//!    `combine` expects.
//!
//! The exchanges are autograd-aware (their backward is the reverse exchange), so gradients
//! reach the experts on their ranks and the rows' gradients come back to their tokens.
//!
//! The aux losses that are not linear in the batch (load balance, mutual information) are
//! recomputed over the whole group's tokens by [`group_aux`]: one differentiable all-reduce of
//! the per-expert counts and probability sums and the task x expert probability sums.

use std::fmt::Debug;

use taskmoe_kernels::{aux::task_load_balance_from_sums, count_ids};
use taskmoe_router::{AuxLosses, BalanceOver};
use tch::{Kind, Tensor};

use crate::bank::ExpertBank;
use crate::error::{ExpertsError, Result};

/// The collectives expert parallelism needs, over the ranks of one expert-parallel group
/// (implemented by the training crate over a c10d process group).
pub trait ExpertExchange: Debug + Send + Sync {
    /// Ranks in the group `P`.
    fn size(&self) -> usize;
    /// This process's rank in the group.
    fn rank(&self) -> usize;
    /// Every rank's `t`, stacked in rank order: `[...] -> [P, ...]`.
    fn all_gather(&self, t: &Tensor) -> std::result::Result<Tensor, String>;
    /// Sends `in_splits[q]` consecutive rows of `t` to rank `q` and returns the `out_splits[q]`
    /// rows received from each rank `q`, in rank order; differentiable (the backward is the
    /// reverse exchange).
    fn all_to_all(
        &self,
        t: &Tensor,
        out_splits: &[i64],
        in_splits: &[i64],
    ) -> std::result::Result<Tensor, String>;
    /// The sum of `t` over the group; differentiable (the backward sums the gradients over the
    /// group, as every rank's loss depends on the sum).
    fn all_reduce_sum(&self, t: &Tensor) -> std::result::Result<Tensor, String>;
}

fn exchange_err(op: &str, e: String) -> ExpertsError {
    ExpertsError::Input(format!("expert parallelism: {op}: {e}"))
}

/// Runs `bank`'s experts split over `ex`'s ranks on this rank's expert-grouped `rows`
/// (`counts[e]` rows for expert `e`), returning the outputs in the same order.
///
/// # Shapes
/// `rows: [R, d]`, `counts: [E]` summing to `R` -> `[R, d]`.
pub(crate) fn forward(
    bank: &ExpertBank,
    ex: &dyn ExpertExchange,
    rows: &Tensor,
    counts: &[usize],
    train: bool,
) -> Result<Tensor> {
    let (p, me, e) = (ex.size(), ex.rank(), counts.len());
    if p == 0 || e % p != 0 {
        return Err(ExpertsError::Input(format!(
            "expert parallelism: {e} experts do not split over {p} ranks"
        )));
    }
    let el = e / p;
    // A bank that stores every expert runs its slice; a sharded bank runs all it stores.
    let narrowed;
    let local = match bank.num_experts() {
        n if n == e => {
            narrowed = bank.narrow(me * el, el)?;
            &narrowed
        }
        n if n == el => bank,
        n => {
            return Err(ExpertsError::Input(format!(
                "expert parallelism: the bank stores {n} experts, neither all {e} nor this \
                 rank's {el}"
            )))
        }
    };
    let device = rows.device();
    let mine: Vec<i64> = counts.iter().map(|&c| c as i64).collect();
    let all = ex
        .all_gather(&Tensor::from_slice(&mine))
        .map_err(|err| exchange_err("all_gather of the expert counts", err))?;
    let all: Vec<i64> = Vec::try_from(all.reshape([-1]))?;
    // Rows rank q holds for expert x.
    let count = |q: usize, x: usize| all[q * e + x];
    let send: Vec<i64> = (0..p)
        .map(|q| mine[q * el..(q + 1) * el].iter().sum())
        .collect();
    let recv: Vec<i64> = (0..p)
        .map(|q| (me * el..(me + 1) * el).map(|x| count(q, x)).sum())
        .collect();
    let received = ex
        .all_to_all(rows, &recv, &send)
        .map_err(|err| exchange_err("all_to_all of the rows", err))?;

    // Received rows are grouped by source rank, then local expert; the experts want them by
    // expert. `order[i]` is the received row that goes to grouped position `i`.
    let mut start = vec![vec![0i64; el]; p];
    let mut offset = 0;
    for (q, row) in start.iter_mut().enumerate() {
        for (j, s) in row.iter_mut().enumerate() {
            *s = offset;
            offset += count(q, me * el + j);
        }
    }
    let mut order = Vec::with_capacity(offset as usize);
    let mut local_counts = vec![0usize; el];
    for (j, local) in local_counts.iter_mut().enumerate() {
        for (q, row) in start.iter().enumerate() {
            let n = count(q, me * el + j);
            order.extend(row[j]..row[j] + n);
            *local += n as usize;
        }
    }
    let mut inverse = vec![0i64; order.len()];
    for (i, &o) in order.iter().enumerate() {
        inverse[o as usize] = i as i64;
    }
    let order = Tensor::from_slice(&order).to_device(device);
    let inverse = Tensor::from_slice(&inverse).to_device(device);
    let grouped = received.f_index_select(0, &order)?;
    let out = local.forward(&grouped, &local_counts, train)?;
    let back = out.f_index_select(0, &inverse)?;
    ex.all_to_all(&back, &send, &recv)
        .map_err(|err| exchange_err("all_to_all of the outputs", err))
}

/// This rank's share of a bank that stores all `E` experts: experts `r E/P .. (r+1) E/P` of
/// every parameter, as contiguous copies.
pub(crate) fn shard_of(bank: &ExpertBank, ex: &dyn ExpertExchange) -> Result<[Tensor; 4]> {
    let (p, me, e) = (ex.size(), ex.rank(), bank.num_experts());
    if p == 0 || e % p != 0 {
        return Err(ExpertsError::Input(format!(
            "expert parallelism: {e} experts do not split over {p} ranks"
        )));
    }
    let el = (e / p) as i64;
    let take = |t: &Tensor| -> Result<Tensor> {
        Ok(tch::no_grad(|| t.f_narrow(0, me as i64 * el, el))?.f_contiguous()?)
    };
    let [w1, b1, w2, b2] = bank.params();
    Ok([take(w1)?, take(b1)?, take(w2)?, take(b2)?])
}

/// Every rank's shard of a sharded bank, concatenated in rank order: all `E` experts of every
/// parameter (one all-gather per parameter; no autograd history).
pub(crate) fn gathered(bank: &ExpertBank, ex: &dyn ExpertExchange) -> Result<[Tensor; 4]> {
    let gather = |t: &Tensor| -> Result<Tensor> {
        let all = ex
            .all_gather(&t.detach())
            .map_err(|err| exchange_err("all_gather of the expert weights", err))?;
        let mut shape = t.size();
        shape[0] *= ex.size() as i64;
        Ok(all.f_reshape(shape.as_slice())?)
    };
    let [w1, b1, w2, b2] = bank.params();
    Ok([gather(w1)?, gather(b1)?, gather(w2)?, gather(b2)?])
}

/// This rank's aux losses with the load balance and the mutual information recomputed over
/// all the group's tokens, and the group's routing slots per expert (`[E]`, fp32: what bias
/// balancing updates from) (the z-loss, a mean over tokens, stays local: averaging it over
/// ranks, as the gradient average does, is already the group's mean).
///
/// With the group-wide statistics `f_e` (share of routing slots), `P_e` (mean probability) and
/// `P(t, e)` (the joint of task and expert), and per task its slots and tokens (for the load
/// balance over tasks, `balance`), the formulas are those of
/// `taskmoe_kernels::aux`. Every rank gets the same values; the all-reduce's backward sums the
/// ranks' gradients, and the data-parallel gradient average divides by the ranks again.
///
/// # Shapes
/// `probs: [T, E]`, `experts: [T, k]`, `task_ids: [T]`.
pub(crate) fn group_aux(
    ex: &dyn ExpertExchange,
    probs: &Tensor,
    experts: &Tensor,
    task_ids: &Tensor,
    num_tasks: usize,
    balance: BalanceOver,
    local: AuxLosses,
) -> Result<(AuxLosses, Tensor)> {
    let (t, e) = (probs.size()[0], probs.size()[1]);
    let (k, tasks) = (experts.size()[1], num_tasks as i64);
    let probs = probs.to_kind(Kind::Float);
    let device = probs.device();
    let counts = count_ids("load_balance_loss", experts, e as usize)?.to_kind(Kind::Float);
    let prob_sum = probs.sum_dim_intlist(0, false, Kind::Float);
    let one_hot = task_ids.f_one_hot(tasks)?.to_kind(Kind::Float);
    let joint_sum = one_hot.tr().matmul(&probs).reshape([-1]);
    // Per task: the slots it sent to each expert, and its tokens (the load balance over tasks).
    let slots = experts.f_one_hot(e)?.sum_dim_intlist(1, false, Kind::Float);
    let task_slots = one_hot.tr().matmul(&slots).reshape([-1]);
    let task_tokens = one_hot.sum_dim_intlist(0, false, Kind::Float);
    let tokens = Tensor::from_slice(&[t as f32]).to_device(device);
    let packed = Tensor::cat(
        &[tokens, counts, prob_sum, joint_sum, task_slots, task_tokens],
        0,
    );
    let summed = ex
        .all_reduce_sum(&packed)
        .map_err(|err| exchange_err("all_reduce of the routing statistics", err))?;
    let total = summed.narrow(0, 0, 1).detach().clamp_min(1.0);
    let joint_sums = summed.narrow(0, 1 + 2 * e, tasks * e).reshape([tasks, e]);
    let load_balance = match balance {
        BalanceOver::Tokens => {
            let fraction = summed.narrow(0, 1, e).detach() / (&total * k as f64);
            let mean_prob = summed.narrow(0, 1 + e, e) / &total;
            (fraction * mean_prob).sum(Kind::Float) * e as f64
        }
        BalanceOver::Tasks => task_load_balance_from_sums(
            &summed
                .narrow(0, 1 + 2 * e + tasks * e, tasks * e)
                .reshape([tasks, e]),
            &joint_sums,
            &summed.narrow(0, 1 + 2 * e + 2 * tasks * e, tasks).detach(),
            k,
        ),
    };
    let joint = joint_sums / &total;
    let p_task = joint.sum_dim_intlist(1, true, Kind::Float);
    let p_expert = joint.sum_dim_intlist(0, true, Kind::Float);
    let tiny = 1e-12;
    let ratio =
        joint.clamp_min(tiny).log() - p_task.clamp_min(tiny).log() - p_expert.clamp_min(tiny).log();
    let mutual_information = -(joint * ratio).sum(Kind::Float);
    let aux = AuxLosses {
        load_balance: load_balance.reshape([]),
        z_loss: local.z_loss,
        mutual_information: mutual_information.reshape([]),
        selection_entropy: local.selection_entropy,
    };
    Ok((aux, summed.narrow(0, 1, e).detach()))
}
