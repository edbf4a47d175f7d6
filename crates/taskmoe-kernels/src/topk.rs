//! Top-k gating in fp32.

use tch::{Kind, Tensor};

use crate::error::{dims2, invalid, Result};

/// The routing decision for a batch of tokens.
#[derive(Debug)]
pub struct TopK {
    /// Router probabilities, softmax over experts in fp32. `[T, E]`
    pub probs: Tensor,
    /// Combine weight of each choice, fp32, best first. `[T, k]`
    pub weights: Tensor,
    /// Expert id of each choice (int64), best first. `[T, k]`
    pub experts: Tensor,
}

/// Softmax over router logits in fp32 and the `k` most probable experts per token.
///
/// The logits are cast to fp32 first, whatever their dtype, so routing decisions do not depend
/// on bf16 rounding. With `renormalize`, the `k` weights of a token are divided by their sum
/// (`w_j = p_j / sum_{i<k} p_i`, Mixtral/GShard style); without, they are the raw softmax
/// probabilities (Switch style). With `k = 1` renormalising would make every weight the
/// constant 1 and cut the router off from the task loss, so `k = 1` with `renormalize` is the
/// straight-through gate `p / stop_gradient(p)`: exactly 1 in the forward pass (the expert's
/// output at full scale, as the dense FFN it replaces), `∂ log p` in the backward pass, so the
/// router learns which expert lowers the loss.
///
/// # Shapes
/// `logits: [T, E]` -> probs `[T, E]`, weights `[T, k]`, experts `[T, k]`.
pub fn top_k(logits: &Tensor, k: usize, renormalize: bool) -> Result<TopK> {
    let (_, e) = dims2("top_k", "logits", logits)?;
    if k == 0 || k as i64 > e {
        return Err(invalid(
            "top_k",
            format!("k = {k} must be in 1..={e} (the number of experts)"),
        ));
    }
    let probs = logits.to_kind(Kind::Float).f_softmax(-1, Kind::Float)?;
    let (weights, experts) = probs.f_topk(k as i64, -1, true, true)?;
    Ok(combine_weights(probs, weights, experts, k, renormalize))
}

/// [`top_k`] with the experts chosen by `logits + bias` (a per-expert bias, not trained by
/// gradient) and weighted by the unbiased probabilities `softmax(logits)`: the selection of
/// auxiliary-loss-free load balancing (DeepSeek-V3), where a bias raised for under-used experts
/// steers tokens to them without entering the combine weights or the gradient.
///
/// # Shapes
/// `logits: [T, E]`, `bias: [E]` -> probs `[T, E]`, weights `[T, k]`, experts `[T, k]`.
pub fn top_k_biased(logits: &Tensor, bias: &Tensor, k: usize, renormalize: bool) -> Result<TopK> {
    let (_, e) = dims2("top_k_biased", "logits", logits)?;
    if k == 0 || k as i64 > e {
        return Err(invalid(
            "top_k_biased",
            format!("k = {k} must be in 1..={e} (the number of experts)"),
        ));
    }
    if bias.size() != [e] {
        return Err(invalid(
            "top_k_biased",
            format!("bias has shape {:?}, expected [{e}]", bias.size()),
        ));
    }
    let logits = logits.to_kind(Kind::Float);
    let probs = logits.f_softmax(-1, Kind::Float)?;
    let biased = tch::no_grad(|| &logits + bias.to_kind(Kind::Float).unsqueeze(0));
    let (_, experts) = biased.f_topk(k as i64, -1, true, true)?;
    let weights = probs.f_gather(-1, &experts, false)?;
    Ok(combine_weights(probs, weights, experts, k, renormalize))
}

/// The combine weights from the chosen experts' probabilities `weights` (see [`top_k`]).
fn combine_weights(
    probs: Tensor,
    mut weights: Tensor,
    experts: Tensor,
    k: usize,
    renormalize: bool,
) -> TopK {
    if renormalize && k == 1 {
        // p / p would be a constant 1: no gradient reaches the router. Straight-through
        // instead: 1 in the forward pass, the gradient of log p in the backward.
        weights = &weights / weights.detach();
    } else if renormalize {
        weights = &weights / weights.sum_dim_intlist(-1, true, Kind::Float);
    }
    TopK {
        probs,
        weights,
        experts,
    }
}
