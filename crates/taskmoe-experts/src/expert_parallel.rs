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

use std::fmt::Debug;

use tch::Tensor;

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
    let (p, me, e) = (ex.size(), ex.rank(), bank.num_experts());
    if p == 0 || e % p != 0 || counts.len() != e {
        return Err(ExpertsError::Input(format!(
            "expert parallelism: {e} experts do not split over {p} ranks (or {} counts)",
            counts.len()
        )));
    }
    let el = e / p;
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
    let local = bank.narrow(me * el, el)?;
    let out = local.forward(&grouped, &local_counts, train)?;
    let back = out.f_index_select(0, &inverse)?;
    ex.all_to_all(&back, &send, &recv)
        .map_err(|err| exchange_err("all_to_all of the outputs", err))
}
