//! DSelect-k's static per-task gate ([Hazimeh et al. 2021](https://arxiv.org/abs/2106.03760)).
//!
//! Each task has `k` selectors. Selector `i` holds a code `z_i` of `m = log2 E` reals; the
//! smooth step `S` turns each into a soft bit, and expert `e` (binary digits `b_j(e)`) gets
//! `r_i(e) = prod_j (b_j(e) ? S(z_ij) : 1 - S(z_ij))`, a distribution over the `E` experts that
//! is one-hot once every `|z_ij| >= gamma / 2`. The task's gate mixes the selectors by a
//! softmax over its selector logits `a`: `g = sum_i softmax(a)_i r_i`, which sums to 1 and has
//! at most `k` non-zero weights once the codes saturate.

use tch::{Device, Kind, Tensor};

use taskmoe_kernels::TopK;

use crate::error::Result;
use crate::router::RouterOutput;

/// `S(z)`: 0 for `z <= -gamma/2`, 1 for `z >= gamma/2`, and the cubic
/// `-2 z^3 / gamma^3 + 3 z / (2 gamma) + 1/2` between (continuous with a continuous first
/// derivative, which is 0 outside the interval).
pub(crate) fn smooth_step(z: &Tensor, gamma: f64) -> Tensor {
    let z = z.clamp(-gamma / 2.0, gamma / 2.0);
    z.pow_tensor_scalar(3) * (-2.0 / gamma.powi(3)) + &z * (1.5 / gamma) + 0.5
}

/// The binary digits of the expert ids, `bits[j][e] = (e >> j) & 1`, in fp32. `[m, E]`
pub(crate) fn code_bits(num_experts: usize, device: Device) -> Tensor {
    let m = num_experts.trailing_zeros() as usize;
    let bits: Vec<f32> = (0..m)
        .flat_map(|j| (0..num_experts).map(move |e| ((e >> j) & 1) as f32))
        .collect();
    Tensor::from_slice(&bits)
        .view([m as i64, num_experts as i64])
        .to_device(device)
}

/// Every selector's distribution over the experts, `r [tasks, k, E]`, from the codes
/// `z [tasks, k, m]` and `bits [m, E]`.
pub(crate) fn selector_distributions(codes: &Tensor, bits: &Tensor, gamma: f64) -> Tensor {
    let s = smooth_step(&codes.to_kind(Kind::Float), gamma).unsqueeze(-1); // [t, k, m, 1]
                                                                           // b ? s : 1 - s, as (1 - b) + s (2b - 1), for every expert: [t, k, m, E]
    let factors = (bits.ones_like() - bits) + s * (bits * 2.0 - 1.0);
    factors.prod_dim_int(2, false, Kind::Float)
}

/// The gate of every task, `g [tasks, E]`, from its selectors' distributions `r [tasks, k, E]`
/// and its selector logits `a [tasks, k]`.
pub(crate) fn gate(selectors: &Tensor, selector_logits: &Tensor) -> Tensor {
    let mix = selector_logits
        .to_kind(Kind::Float)
        .softmax(-1, Kind::Float);
    (mix.unsqueeze(-1) * selectors).sum_dim_intlist([1].as_slice(), false, Kind::Float)
}

/// The mean entropy (nats) of the selectors' distributions `r [tasks, k, E]`: 0 when every
/// selector has settled on one expert.
pub(crate) fn selection_entropy(selectors: &Tensor) -> Tensor {
    let h = -(selectors * selectors.clamp_min(1e-30).log()).sum_dim_intlist(
        [-1].as_slice(),
        false,
        Kind::Float,
    );
    h.mean(Kind::Float)
}

/// The routing decision: every task's gate from its selectors (codes `[tasks, k, m]`, selector
/// logits `[tasks, k]`), each token (of task `task_ids`) sent to every expert its task weighs
/// above zero with the gate's weights, which sum to 1. Reads back one count (how many experts
/// the busiest task uses). The logits are `log g`, whose log-sum-exp is `log 1 = 0`, so the
/// z-loss is 0.
pub(crate) fn route(
    codes: &Tensor,
    selector_logits: &Tensor,
    bits: &Tensor,
    gamma: f64,
    task_ids: &Tensor,
) -> Result<RouterOutput> {
    let selectors = selector_distributions(codes, bits, gamma);
    let gate = gate(&selectors, selector_logits); // [tasks, E]
    let probs = gate.f_index_select(0, task_ids)?; // [T, E]
    let used = tch::no_grad(|| {
        probs
            .gt(0.0)
            .sum_dim_intlist([-1].as_slice(), false, Kind::Int64)
            .max()
    });
    let used = used.int64_value(&[]).max(1);
    let (weights, experts) = probs.f_topk(used, -1, true, true)?;
    Ok(RouterOutput {
        logits: probs.clamp_min(1e-30).log(),
        routed: TopK {
            probs,
            weights,
            experts,
        },
        selection_entropy: Some(selection_entropy(&selectors)),
        expert_choice: None,
    })
}
