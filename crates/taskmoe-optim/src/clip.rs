//! Gradient clipping by global L2 norm, as `torch.nn.utils.clip_grad_norm_`.
//!
//! The norm is taken over all gradients together (the L2 norm of their concatenation),
//! accumulated in f64. When it exceeds `max_norm`, every gradient is scaled by
//! `max_norm / (norm + 1e-6)`. A NaN or infinite norm is returned to the caller and the
//! gradients are left as they are: scaling by a non-finite factor would only spread the damage,
//! and hiding it would let a diverged run continue silently. The caller decides through its
//! `NonFinitePolicy` (taskmoe-train).

use tch::{Kind, Tensor};

use crate::error::{invalid, Result};

/// Added to the norm before dividing, as PyTorch does, so a norm just above `max_norm` does not
/// produce a scale above 1.
const CLIP_EPS: f64 = 1e-6;

/// The global L2 norm of the defined gradients of `params` (0 when none is defined).
pub fn grad_norm<'a>(params: impl IntoIterator<Item = &'a Tensor>) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let mut squares = Vec::new();
    for p in params {
        let g = p.grad();
        if g.defined() {
            squares.push(g.f_to_kind(Kind::Double)?.f_square()?.f_sum(None)?);
        }
    }
    if squares.is_empty() {
        return Ok(0.0);
    }
    // One host synchronisation for all parameters.
    let total = Tensor::f_stack(&squares, 0)?.f_sum(None)?;
    Ok(total.f_double_value(&[])?.sqrt())
}

/// Scales the gradients of `params` in place so that their global L2 norm is at most
/// `max_norm`, and returns the norm **before** clipping.
///
/// A non-finite norm is returned as is and nothing is scaled (see the module docs). Fails if
/// `max_norm` is not a positive finite number.
pub fn clip_grad_norm<'a>(
    params: impl IntoIterator<Item = &'a Tensor>,
    max_norm: f64,
) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(invalid(
            "gradient clipping",
            format!("max_norm = {max_norm} must be > 0"),
        ));
    }
    let params: Vec<&Tensor> = params.into_iter().collect();
    let norm = grad_norm(params.iter().copied())?;
    if norm.is_finite() && norm > max_norm {
        let scale = max_norm / (norm + CLIP_EPS);
        let _guard = tch::no_grad_guard();
        for p in params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_mul_scalar_(scale)?;
            }
        }
    }
    Ok(norm)
}
