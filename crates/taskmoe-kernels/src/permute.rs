//! Moving token rows into expert order and back.

use tch::{Kind, Tensor};

use crate::dispatch::DispatchPlan;
use crate::error::{dims2, KernelError, Result};

/// Gathers the rows of `x` into expert order: row `r` is the token of the plan's `r`-th kept
/// slot, so each expert's inputs form one contiguous slice (`plan.counts` long).
///
/// # Shapes
/// `x: [T, d]` -> `[R, d]`.
pub fn permute(x: &Tensor, plan: &DispatchPlan) -> Result<Tensor> {
    let (t, _) = dims2("permute", "x", x)?;
    if t as usize != plan.num_tokens {
        return Err(KernelError::Shape {
            op: "permute",
            arg: "x",
            got: x.size(),
            expected: format!("[{}, d] (tokens of the plan)", plan.num_tokens),
        });
    }
    if x.device().is_cuda() && plan.k > 1 {
        return permute_by_slots(x, plan);
    }
    Ok(x.f_index_select(0, &plan.token_order)?)
}

/// [`permute`] with a deterministic backward, the variant used on CUDA when `k > 1`.
///
/// `permute` gathers token rows by `token_order`, where a token appears up to `k` times; the
/// backward of that gather is an `index_add` over repeated ids, which CUDA implements with
/// floating-point atomics whose order (and so whose rounding) varies from run to run. Here
/// each token is first expanded to its `k` slots (`[T * k, d]`, one copy of the input per
/// choice) and the kept slots are gathered by `slot_order`, whose ids are distinct: the
/// backward scatters each row gradient to its own slot and sums a token's `k` slots with a
/// plain reduction, in a fixed order. The price is a `[T * k, d]` buffer.
///
/// # Shapes
/// `x: [T, d]` -> `[R, d]`.
pub fn permute_by_slots(x: &Tensor, plan: &DispatchPlan) -> Result<Tensor> {
    let (t, d) = dims2("permute_by_slots", "x", x)?;
    if t as usize != plan.num_tokens {
        return Err(KernelError::Shape {
            op: "permute_by_slots",
            arg: "x",
            got: x.size(),
            expected: format!("[{}, d] (tokens of the plan)", plan.num_tokens),
        });
    }
    let k = plan.k as i64;
    let slots = x.unsqueeze(1).expand([t, k, d], false).reshape([t * k, d]);
    Ok(slots.f_index_select(0, &plan.slot_order)?)
}

/// Scatters expert-ordered rows back to their slots: `[T, k, d]` with zeros for dropped slots.
///
/// It gathers (every slot reads one row, dropped slots read an appended zero row), so it is
/// deterministic and its backward is a plain index-add over distinct rows.
///
/// # Shapes
/// `rows: [R, d]` -> `[T, k, d]`.
pub fn unpermute(rows: &Tensor, plan: &DispatchPlan) -> Result<Tensor> {
    let (r, d) = dims2("unpermute", "rows", rows)?;
    if r as usize != plan.num_rows() {
        return Err(KernelError::Shape {
            op: "unpermute",
            arg: "rows",
            got: rows.size(),
            expected: format!("[{}, d] (kept rows of the plan)", plan.num_rows()),
        });
    }
    let padded = Tensor::f_cat(
        &[rows, &rows.new_zeros([1, d], (rows.kind(), rows.device()))],
        0,
    )?;
    Ok(padded
        .f_index_select(0, &plan.slot_row)?
        .view([plan.num_tokens as i64, plan.k as i64, d]))
}

/// The weighted sum of each token's expert outputs: `y_t = sum_j w_{t,j} * rows[row(t, j)]`,
/// dropped slots contributing zero.
///
/// Deterministic by construction (a `[T, k, d]` buffer reduced over `k` in a fixed order, never an `index_add`
/// with repeated indices), so results do not depend on thread scheduling on CPU or GPU.
/// Gradients reach `rows` and `weights`, and through `weights` the router logits. The result
/// has the promoted dtype of `rows` and `weights`.
///
/// # Shapes
/// `rows: [R, d]`, `weights: [T, k]` -> `[T, d]`.
pub fn combine(rows: &Tensor, weights: &Tensor, plan: &DispatchPlan) -> Result<Tensor> {
    plan.check_tk("combine", "weights", weights)?;
    let buffer = unpermute(rows, plan)?; // (tokens, k, d)
    let kind = promote(rows.kind(), weights.kind());
    let (buffer, weights) = (buffer.to_kind(kind), weights.to_kind(kind));
    // Sum over choices in a fixed order, one [T, d] multiply-add per choice: no weighted copy of
    // the whole buffer (a batched (1 x k) @ (k x d) matmul is slower still on CPU).
    let mut y = buffer.select(1, 0) * weights.select(1, 0).unsqueeze(-1);
    for j in 1..plan.k as i64 {
        y += buffer.select(1, j) * weights.select(1, j).unsqueeze(-1);
    }
    Ok(y)
}

fn promote(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (Kind::Double, _) | (_, Kind::Double) => Kind::Double,
        (Kind::Float, _) | (_, Kind::Float) => Kind::Float,
        (a, _) => a,
    }
}
