//! Weight gradients of grouped linears accumulated in place, only for the groups with rows.
//!
//! Under plain autograd a grouped linear over stacked weights `w: [G, d_in, d_out]` hands its
//! backward one new `[G, d_in, d_out]` gradient per call, zero for every group without rows,
//! which the parameter's accumulator then adds to `w.grad`: a full-size buffer and two full
//! passes over it however few groups (experts) received rows. [`grouped_linear_with`] with
//! [`WeightGrads::InPlace`] runs the matmul on the detached weights (autograd then computes
//! only the input's gradient) and adds `x_g^T dy_g` and the column sums of `dy_g` straight into
//! `w.grad[g]` and `bias.grad[g]` for the groups with rows, one in-place GEMM each
//! (`csrc/weight_grads.cpp`, a libtorch autograd function): an expert without tokens costs
//! nothing in the backward. Megatron-LM fuses gradient accumulation into its linear layers'
//! backward the same way.
//!
//! What it changes for a caller: the gradients land in `.grad` during `backward()`, as
//! autograd's would (the first backward on a parameter without a gradient allocates a zero
//! one), equal to autograd's up to the rounding of the accumulation (`grad += x^T dy` in one
//! GEMM instead of a GEMM then an add; on the per-group loop bit for bit into a zero `.grad`,
//! tested). They are
//! not returned by a functional gradient call (`Tensor::run_backward` with the weights as
//! inputs) and are not differentiable again (no double backward).

use std::ffi::{c_char, c_int, c_void, CStr};

use tch::{Device, Tensor};

use crate::error::{invalid, Result};
use crate::grouped::{grouped_linear, GemmPath};
use crate::layout::GroupLayout;

extern "C" {
    fn tmk_free_error(e: *mut c_char);
    fn tmk_is_leaf(t: *const c_void) -> c_int;
    fn tmk_grad_enabled() -> c_int;
    fn tmk_weight_grad_tap(
        y: *const c_void,
        x: *const c_void,
        w: *const c_void,
        b: *const c_void,
        row_group: *const c_void,
        counts: *const i64,
        num_groups: i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
}

/// How the weight and bias gradients of a grouped linear reach the parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightGrads {
    /// libtorch's autograd: one full-size gradient per call, zero for the groups without rows,
    /// added to `.grad` by the parameter's accumulator.
    Autograd,
    /// Added into `.grad` in place for the groups with rows only (module docs), where that
    /// applies: the weight (and bias) are leaves that require a gradient, on the CPU, of the
    /// rows' dtype, and gradients are being recorded. Elsewhere (CUDA, whose grouped GEMM
    /// computes the weight gradients of all groups in one kernel; views such as the expert
    /// shards of expert parallelism; autocast's casts) it is [`WeightGrads::Autograd`]. The
    /// default.
    #[default]
    InPlace,
}

/// Whether `t` is a leaf of the autograd graph (a parameter, or a tensor without history).
pub fn is_leaf(t: &Tensor) -> bool {
    // SAFETY: a live tensor.
    unsafe { tmk_is_leaf(t.as_ptr().cast()) != 0 }
}

/// Whether autograd records operations on this thread (false inside `tch::no_grad`).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { tmk_grad_enabled() != 0 }
}

/// Whether [`WeightGrads::InPlace`] applies to `x` times `w` (plus `bias`): see its docs.
pub fn in_place_applies(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> bool {
    let leaf = |t: &Tensor| t.requires_grad() && is_leaf(t);
    w.device() == Device::Cpu
        && x.device() == Device::Cpu
        && x.kind() == w.kind()
        && leaf(w)
        && bias.is_none_or(|b| leaf(b) && b.kind() == w.kind())
        && grad_enabled()
}

/// [`grouped_linear`] whose weight and bias gradients reach the parameters as `grads` says.
///
/// # Shapes
/// `x: [R, d_in]`, `w: [G, d_in, d_out]`, `bias: [G, d_out]` -> `[R, d_out]`.
pub fn grouped_linear_with(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: &GroupLayout,
    path: GemmPath,
    grads: WeightGrads,
) -> Result<Tensor> {
    if grads == WeightGrads::Autograd || !in_place_applies(x, w, bias) {
        return grouped_linear(x, w, bias, layout, path);
    }
    let y = grouped_linear(x, &w.detach(), None, layout, path)?;
    let counts: Vec<i64> = layout.counts.iter().map(|&c| c as i64).collect();
    let null = std::ptr::null::<c_void>();
    let row_group = match layout.row_group.defined() {
        true => layout.row_group.as_ptr().cast(),
        false => null,
    };
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: live tensors; the shim reads `counts.len()` counts and writes a fresh
    // `torch::Tensor*` into `out` on success.
    let error = unsafe {
        tmk_weight_grad_tap(
            y.as_ptr().cast(),
            x.as_ptr().cast(),
            w.as_ptr().cast(),
            bias.map_or(null, |b| b.as_ptr().cast()),
            row_group,
            counts.as_ptr(),
            counts.len() as i64,
            &mut out,
        )
    };
    if !error.is_null() {
        // SAFETY: a NUL-terminated message from the shim, freed once.
        let text = unsafe { CStr::from_ptr(error) }
            .to_string_lossy()
            .into_owned();
        unsafe { tmk_free_error(error) };
        return Err(invalid("grouped_linear_with", text));
    }
    // SAFETY: `out` is a fresh torch::Tensor* owned by us from here.
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}
