//! Gradient clipping by global norm.

use taskmoe_optim::{clip_grad_norm, grad_norm};
use tch::{Kind, Tensor};

fn with_grad(values: &[f32]) -> Tensor {
    let t = Tensor::from_slice(values).set_requires_grad(true);
    // d/dt sum(t * values) = values.
    (&t * Tensor::from_slice(values))
        .sum(Kind::Float)
        .backward();
    t
}

fn grad(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.grad()).unwrap()
}

#[test]
fn clips_to_the_global_norm_and_returns_the_norm_before() {
    let a = with_grad(&[3.0]);
    let b = with_grad(&[0.0, 4.0]);
    let unused = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    assert_eq!(grad_norm([&a, &b, &unused]).unwrap(), 5.0);
    let norm = clip_grad_norm([&a, &b, &unused], 1.0).unwrap();
    assert_eq!(norm, 5.0);
    let scale = 1.0 / (5.0 + 1e-6);
    assert!((grad(&a)[0] - 3.0 * scale as f32).abs() < 1e-7);
    assert!((grad(&b)[1] - 4.0 * scale as f32).abs() < 1e-7);
    assert!((grad_norm([&a, &b]).unwrap() - 1.0).abs() < 1e-6);
    assert!(!unused.grad().defined());
}

#[test]
fn leaves_small_gradients_bit_identical() {
    let a = with_grad(&[0.3, -0.4]);
    let before = a.grad().copy();
    let norm = clip_grad_norm([&a], 1.0).unwrap();
    assert!((norm - 0.5).abs() < 1e-7);
    assert!(a.grad().equal(&before));
}

#[test]
fn reports_a_non_finite_norm_and_leaves_gradients_alone() {
    let a = with_grad(&[1.0, 2.0]);
    let b = with_grad(&[f32::NAN]);
    let norm = clip_grad_norm([&a, &b], 1.0).unwrap();
    assert!(norm.is_nan());
    assert_eq!(grad(&a), vec![1.0, 2.0]);
    let c = with_grad(&[f32::INFINITY]);
    assert_eq!(clip_grad_norm([&c], 1.0).unwrap(), f64::INFINITY);
    assert!(clip_grad_norm([&a], 0.0).is_err());
    assert!(clip_grad_norm([&a], f64::NAN).is_err());
    assert_eq!(grad_norm(std::iter::empty::<&Tensor>()).unwrap(), 0.0);
}
