//! Expert-choice routing with per-task capacity ([Zhou et al. 2022](https://arxiv.org/abs/2202.09368)).
//!
//! Experts choose tokens instead of tokens choosing experts: with `p = softmax(x W)` the
//! token-to-expert affinities (`[T, E]`), every expert takes, **within each task**, the
//! `C_t = min(n_t, ceil(k * n_t / E))` tokens of task `t` (`n_t` of them in the batch) with the
//! largest affinity to it. So every expert does the same work, every task gets `k` expert
//! slots per token on average whatever its share of the batch, and a token may be taken by
//! several experts or by none; a token no expert takes keeps only the residual path of its
//! block (its MoE output is 0), it is never dropped from the sequence.
//!
//! Causal use: the choice ranks a token against the other tokens of its task in the batch, so a
//! token's routing depends on tokens after it. Fine for the encoders taskmoe trains; a decoder
//! would need a per-position router at generation time.

use tch::{Kind, Tensor};

use taskmoe_kernels::TaskGroups;

use crate::error::Result;

/// The experts' choice for a batch: for each expert its tokens (expert-major) and their
/// combine weights.
#[derive(Debug)]
pub struct ExpertChoice {
    /// The token of each slot, expert-major: expert `e`'s slots are `e * C .. (e + 1) * C`.
    /// `[E * C]` int64
    pub tokens: Tensor,
    /// The combine weight of each slot, fp32. `[E * C]`
    pub weights: Tensor,
    /// Slots each expert takes, `C = sum_t C_t` (the same for every expert).
    pub per_expert: usize,
}

/// Every expert's tokens task by task from the affinities `probs [T, E]` and the tokens grouped
/// by task, `k` expert slots per token on average.
///
/// Weights: with `renormalize` each token's weights are divided by their sum over the experts
/// that took it, held constant in the backward pass (`w / stop_gradient(sum w)`): the token's
/// expert outputs at full scale in the forward pass, and the router still learns from the
/// task loss (the straight-through gate of top-1 routing, `taskmoe_kernels::top_k`). Without,
/// the raw affinities (the paper).
pub(crate) fn choose(
    probs: &Tensor,
    groups: &TaskGroups,
    k: usize,
    renormalize: bool,
) -> Result<ExpertChoice> {
    let (t, e) = (probs.size()[0], probs.size()[1]);
    let grouped = groups.group(probs)?;
    let (mut tokens, mut weights) = (Vec::new(), Vec::new());
    let (mut start, mut per_expert) = (0i64, 0usize);
    for &n in &groups.layout.counts {
        if n == 0 {
            continue;
        }
        let c = (k * n).div_ceil(e as usize).min(n);
        let rows = grouped.f_narrow(0, start, n as i64)?;
        let (values, index) = rows.f_topk(c as i64, 0, true, true)?; // [c, E]
        let order = groups.order.f_narrow(0, start, n as i64)?;
        let chosen = order
            .f_index_select(0, &index.reshape([-1]))?
            .reshape([c as i64, e]);
        tokens.push(chosen.tr());
        weights.push(values.tr());
        start += n as i64;
        per_expert += c;
    }
    let tokens = Tensor::f_cat(&tokens, 1)?.reshape([-1]); // [E, C] -> expert-major
    let mut weights = Tensor::f_cat(&weights, 1)?.reshape([-1]);
    if renormalize {
        let sums = Tensor::zeros([t], (Kind::Float, probs.device())).f_index_add(
            0,
            &tokens,
            &weights.detach(),
        )?;
        weights = &weights / sums.f_index_select(0, &tokens)?;
    }
    Ok(ExpertChoice {
        tokens,
        weights,
        per_expert,
    })
}
