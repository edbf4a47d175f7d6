//! Gradients through the routing pipeline: router logits get them through the combine
//! weights, experts and tokens only through the slots that were kept.

use crate::common::*;
use taskmoe_kernels::{combine, grouped_matmul, permute, top_k, Capacity, DispatchPlan};
use tch::{Kind, Tensor};

const T: usize = 12;
const E: usize = 4;
const D: usize = 3;

/// `sum(g * moe(x))` for the given logits, top-2, renormalised.
fn pipeline(logits: &Tensor, x: &Tensor, w: &Tensor, g: &Tensor, capacity: Capacity) -> Tensor {
    let routed = top_k(logits, 2, true).unwrap();
    let plan = DispatchPlan::new(&routed.experts, E, capacity).unwrap();
    let rows = grouped_matmul(&permute(x, &plan).unwrap(), w, None, &plan.counts).unwrap();
    (combine(&rows, &routed.weights, &plan).unwrap() * g).sum(Kind::Float)
}

#[test]
fn router_logits_gradient_matches_finite_differences() {
    let logits = tensor2(&normal(1, T * E), T, E).set_requires_grad(true);
    let x = tensor2(&normal(2, T * D), T, D);
    let w = tensor3(&normal(3, E * D * D), E, D, D);
    let g = tensor2(&normal(4, T * D), T, D);
    pipeline(&logits, &x, &w, &g, Capacity::Dropless).backward();
    let analytic: Vec<f32> = Vec::try_from(&logits.grad().reshape([-1])).unwrap();
    assert!(
        analytic.iter().any(|v| v.abs() > 1e-3),
        "router gets a gradient"
    );

    let base: Vec<f32> = normal(1, T * E);
    let eps = 1e-2f32;
    for (i, &a) in analytic.iter().enumerate() {
        let mut plus = base.clone();
        let mut minus = base.clone();
        plus[i] += eps;
        minus[i] -= eps;
        let f = |v: &[f32]| {
            let l = tensor2(v, T, E);
            pipeline(&l, &x, &w, &g, Capacity::Dropless).double_value(&[]) as f32
        };
        let numeric = (f(&plus) - f(&minus)) / (2.0 * eps);
        assert!(
            (numeric - a).abs() < 2e-2 * numeric.abs().max(1.0),
            "logit {i}: analytic {a}, numeric {numeric}"
        );
    }
}

#[test]
fn dropped_slots_send_no_gradient() {
    // All tokens prefer expert 0 first; capacity 0.25 * 12 * 2 / 4 = 2 slots per expert.
    let mut raw = normal(5, T * E);
    for t in 0..T {
        raw[t * E] += 10.0;
    }
    let logits = tensor2(&raw, T, E);
    let x = tensor2(&normal(6, T * D), T, D).set_requires_grad(true);
    let w = tensor3(&normal(7, E * D * D), E, D, D).set_requires_grad(true);
    let g = tensor2(&normal(8, T * D), T, D);
    let capacity = Capacity::Factor(0.25);
    pipeline(&logits, &x, &w, &g, capacity).backward();

    let routed = top_k(&logits, 2, true).unwrap();
    let plan = DispatchPlan::new(&routed.experts, E, capacity).unwrap();
    assert!(plan.num_dropped() > 0);
    let kept = array2(&plan.kept.to_kind(Kind::Float));
    let x_grad = array2(&x.grad());
    for t in 0..T {
        let any_kept = kept.row(t).sum() > 0.0;
        let grad_norm: f32 = x_grad.row(t).iter().map(|v| v.abs()).sum();
        assert_eq!(
            any_kept,
            grad_norm > 0.0,
            "token {t}: kept {any_kept}, grad {grad_norm}"
        );
    }
    let w_grad = array3(&w.grad());
    for (e, &count) in plan.counts.iter().enumerate() {
        let norm: f32 = w_grad
            .index_axis(ndarray::Axis(0), e)
            .iter()
            .map(|v| v.abs())
            .sum();
        assert_eq!(
            count > 0,
            norm > 0.0,
            "expert {e}: {count} rows, grad {norm}"
        );
    }
}

#[test]
fn combine_weight_gradient_is_the_expert_output() {
    let logits = tensor2(&normal(9, T * E), T, E);
    let routed = top_k(&logits, 2, true).unwrap();
    let plan = DispatchPlan::new(&routed.experts, E, Capacity::Factor(0.5)).unwrap();
    let rows = tensor2(&normal(10, plan.num_rows() * D), plan.num_rows(), D);
    let weights = routed.weights.detach().set_requires_grad(true);
    let g = tensor2(&normal(11, T * D), T, D);
    (combine(&rows, &weights, &plan).unwrap() * &g)
        .sum(Kind::Float)
        .backward();
    // d/dw[t,j] = <g_t, expert output of slot (t, j)>, zero for dropped slots.
    let buffer = taskmoe_kernels::unpermute(&rows, &plan).unwrap();
    let expected = (buffer * g.unsqueeze(1)).sum_dim_intlist(-1, false, Kind::Float);
    assert!(weights.grad().allclose(&expected, 1e-5, 1e-6, false));
    let dropped = plan.kept.logical_not();
    assert!(
        weights
            .grad()
            .masked_select(&dropped)
            .abs()
            .sum(Kind::Float)
            .double_value(&[])
            == 0.0
    );
}
