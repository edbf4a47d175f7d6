//! The counter-based dropout: rate, scale, reproducibility, gradient, evaluation mode.

use taskmoe_kernels::dropout::{dropout, effective_dropout, keep_mask};
use tch::{Device, Kind, Tensor};

#[test]
fn keeps_the_expected_share_and_rescales() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(1);
    let x = Tensor::ones([1000, 100], (Kind::Float, Device::Cpu));
    for p in [0.1, 0.25, 0.5] {
        let y = dropout(&x, p, true);
        let kept = y
            .ne(0.0)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[]);
        assert!((kept - (1.0 - p)).abs() < 0.005, "p = {p}: kept {kept}");
        // Every kept value is 1 / (1 - p_eff), so the mean stays 1.
        let scale = 1.0 / (1.0 - effective_dropout(p));
        let max = y.max().double_value(&[]);
        assert!((max - scale).abs() < 1e-6, "{max} vs {scale}");
        assert!((y.mean(Kind::Double).double_value(&[]) - 1.0).abs() < 0.01);
    }
}

#[test]
fn lanes_are_independent_of_each_other() {
    let _rng = taskmoe_device::lock_global_rng();
    // Neighbouring elements come from the same 64-bit word: their decisions must not correlate.
    let m = keep_mask(400_000, 0.5, 12345, Device::Cpu).to_kind(Kind::Double);
    let a = m.slice(0, 0, 399_999, 1);
    let b = m.slice(0, 1, 400_000, 1);
    let both = (&a * &b).mean(Kind::Double).double_value(&[]);
    assert!((both - 0.25).abs() < 0.005, "P(keep, keep) = {both}");
}

#[test]
fn reproducible_under_manual_seed_and_fresh_per_call() {
    let _rng = taskmoe_device::lock_global_rng();
    let x = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
    tch::manual_seed(7);
    let a = dropout(&x, 0.1, true);
    let b = dropout(&x, 0.1, true);
    tch::manual_seed(7);
    let a2 = dropout(&x, 0.1, true);
    assert!(a.equal(&a2));
    assert!(!a.equal(&b));
}

#[test]
fn identity_in_evaluation_and_gradient_is_the_mask() {
    let _rng = taskmoe_device::lock_global_rng();
    let x = Tensor::randn([32, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    assert!(dropout(&x, 0.3, false).equal(&x));
    assert!(dropout(&x, 0.0, true).equal(&x));
    let y = dropout(&x, 0.3, true);
    y.sum(Kind::Float).backward();
    let ratio = y.detach() / x.detach();
    assert!(x.grad().allclose(&ratio, 1e-5, 1e-6, false));
}
