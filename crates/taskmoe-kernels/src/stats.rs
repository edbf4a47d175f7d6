//! Routing statistics: what the router did, for logs and analysis.

use tch::{Kind, Tensor};

use crate::dispatch::DispatchPlan;
use crate::error::{dims2, KernelError, Result};

/// Summary of one dispatch, computed on the host from the plan's counts (no extra sync).
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingStats {
    /// Share of routing slots each expert was asked to take (sums to 1). `[E]`
    pub load: Vec<f64>,
    /// Share of slots dropped by the capacity limit.
    pub dropped_fraction: f64,
    /// Entropy of `load` in nats; `ln E` when balanced, 0 when one expert takes everything.
    pub load_entropy: f64,
}

impl RoutingStats {
    /// Statistics of a plan.
    pub fn from_plan(plan: &DispatchPlan) -> Self {
        let slots = (plan.num_tokens * plan.k).max(1) as f64;
        let load: Vec<f64> = plan.requested.iter().map(|&c| c as f64 / slots).collect();
        RoutingStats {
            load_entropy: entropy(&load),
            dropped_fraction: plan.num_dropped() as f64 / slots,
            load,
        }
    }
}

/// Shannon entropy in nats of a distribution given as shares (zeros allowed).
pub fn entropy(shares: &[f64]) -> f64 {
    shares
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| -p * p.ln())
        .sum()
}

/// Mean entropy of the router's per-token distributions, in nats (how confident it is).
///
/// # Shapes
/// `probs: [T, E]` -> scalar fp32.
pub fn router_entropy(probs: &Tensor) -> Result<Tensor> {
    dims2("router_entropy", "probs", probs)?;
    let p = probs.to_kind(Kind::Float);
    let per_token = -(&p * p.clamp_min(1e-12).log()).sum_dim_intlist(-1, false, Kind::Float);
    Ok(per_token.mean(Kind::Float))
}

/// How many routing slots of each task chose each expert (before capacity).
///
/// # Shapes
/// `experts: [T, k]`, `task_ids: [T]` -> `[num_tasks, E]` int64.
pub fn task_expert_counts(
    experts: &Tensor,
    task_ids: &Tensor,
    num_tasks: usize,
    num_experts: usize,
) -> Result<Tensor> {
    let (t, k) = dims2("task_expert_counts", "experts", experts)?;
    if task_ids.size() != [t] {
        return Err(KernelError::Shape {
            op: "task_expert_counts",
            arg: "task_ids",
            got: task_ids.size(),
            expected: format!("[{t}] (one task per token)"),
        });
    }
    let e = num_experts as i64;
    let cells = (task_ids.unsqueeze(1).expand([t, k], false) * e + experts).reshape([-1]);
    let n = num_tasks as i64 * e;
    // A device-side count: no host synchronisation (bincount would read back min and max).
    let counts = crate::count::count_ids("task_expert_counts", &cells, n as usize).ok();
    counts
        .map(|c| c.view([num_tasks as i64, e]))
        .ok_or_else(|| KernelError::Invalid {
            op: "task_expert_counts",
            message: format!("task ids must lie in 0..{num_tasks} and experts in 0..{e}"),
        })
}

/// Per task, the sums over its tokens of the router's gate entropy (nats) and top-1 margin
/// (first minus second probability; the first alone for one expert), and its token count:
/// `[num_tasks, 3]` fp32 on the device, from router probabilities `probs [T, E]` and
/// `task_ids [T]`. Dividing the first two columns by the third gives each task's mean: an
/// entropy near `ln E` and a margin near 0 mean undecided gates.
pub fn task_gate_sums(probs: &Tensor, task_ids: &Tensor, num_tasks: usize) -> Result<Tensor> {
    let (t, e) = dims2("task_gate_sums", "probs", probs)?;
    if task_ids.size() != [t] {
        return Err(KernelError::Shape {
            op: "task_gate_sums",
            arg: "task_ids",
            got: task_ids.size(),
            expected: format!("[{t}] (one task per token)"),
        });
    }
    let p = probs.to_kind(Kind::Float);
    let entropy = token_gate_entropy(&p);
    let top = p.topk(e.min(2), -1, true, true).0;
    let margin = match e >= 2 {
        true => top.select(1, 0) - top.select(1, 1),
        false => top.select(1, 0),
    };
    let columns = Tensor::stack(&[entropy, margin, p.ones_like().select(1, 0)], 1);
    let sums = Tensor::zeros([num_tasks as i64, 3], (Kind::Float, p.device()));
    Ok(sums.index_add(0, task_ids, &columns))
}

/// The router's gate entropy (nats) averaged over the tokens, from router probabilities
/// `probs [T, E]`: an fp32 scalar on the device, `ln E` for undecided (uniform) gates and 0 for
/// one-hot ones. What the training log records per MoE block each step.
pub fn mean_gate_entropy(probs: &Tensor) -> Result<Tensor> {
    dims2("mean_gate_entropy", "probs", probs)?;
    Ok(token_gate_entropy(&probs.to_kind(Kind::Float)).mean(Kind::Float))
}

/// Each token's gate entropy in nats, `[T]`, from fp32 probabilities `[T, E]`.
fn token_gate_entropy(p: &Tensor) -> Tensor {
    -(p * p.clamp_min(1e-30).log()).sum_dim_intlist([-1].as_slice(), false, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_sums_are_ln_e_and_0_for_uniform_gates_and_0_and_1_for_one_hot_ones() {
        let uniform = Tensor::full([3, 4], 0.25, (Kind::Float, tch::Device::Cpu));
        let one_hot = Tensor::from_slice(&[0f32, 1.0, 0.0, 0.0]).view([1, 4]);
        let probs = Tensor::cat(&[uniform, one_hot], 0);
        let tasks = Tensor::from_slice(&[0i64, 0, 2, 1]);
        let sums: Vec<f32> =
            Vec::try_from(task_gate_sums(&probs, &tasks, 3).unwrap().reshape([-1])).unwrap();
        let ln4 = 4f32.ln();
        let expected = [2.0 * ln4, 0.0, 2.0, 0.0, 1.0, 1.0, ln4, 0.0, 1.0];
        for (got, want) in sums.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{sums:?}");
        }
        assert!(task_gate_sums(&probs, &tasks.narrow(0, 0, 2), 3).is_err());
    }

    #[test]
    fn mean_gate_entropy_averages_ln_e_and_0_over_the_tokens() {
        let uniform = Tensor::full([3, 4], 0.25, (Kind::Float, tch::Device::Cpu));
        let one_hot = Tensor::from_slice(&[0f32, 1.0, 0.0, 0.0]).view([1, 4]);
        let mean = mean_gate_entropy(&Tensor::cat(&[uniform, one_hot], 0)).unwrap();
        assert!((mean.double_value(&[]) - 0.75 * 4f64.ln()).abs() < 1e-6);
        assert!(mean_gate_entropy(&Tensor::ones([4], (Kind::Float, tch::Device::Cpu))).is_err());
    }
}
