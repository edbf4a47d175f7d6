//! Expert matmuls over rows grouped by expert.

use tch::{Kind, Tensor};

use crate::dispatch::{exclusive_cumsum, host_tensor, to_i64};
use crate::error::{dims2, invalid, KernelError, Result};
use crate::layout::GroupLayout;

/// Checks `x: [R, d_in]`, `w: [E, d_in, d_out]`, `bias: [E, d_out]` against `counts`.
fn check(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    counts: &[usize],
) -> Result<(i64, i64, i64)> {
    let (r, d_in) = dims2(op, "x", x)?;
    let ws = w.size();
    if ws.len() != 3 || ws[1] != d_in || ws[0] as usize != counts.len() {
        return Err(KernelError::Shape {
            op,
            arg: "w",
            got: ws,
            expected: format!("[{}, {d_in}, d_out] (experts, d_in, d_out)", counts.len()),
        });
    }
    if let Some(b) = bias {
        if b.size() != [ws[0], ws[2]] {
            return Err(KernelError::Shape {
                op,
                arg: "bias",
                got: b.size(),
                expected: format!("[{}, {}] (experts, d_out)", ws[0], ws[2]),
            });
        }
    }
    let total: usize = counts.iter().sum();
    if total as i64 != r {
        return Err(invalid(
            op,
            format!("counts sum to {total} but x has {r} rows"),
        ));
    }
    Ok((r, ws[0], ws[2]))
}

/// `y[rows of e] = x[rows of e] @ w[e] + bias[e]` for every expert, where expert `e` owns the
/// `counts[e]` rows after those of experts `0..e` (the layout [`crate::permute`] produces).
///
/// One matmul per non-empty expert over a contiguous slice: no padding, no copies of `x`;
/// the backward is as cheap (one concatenation of the slice gradients).
///
/// # Shapes
/// `x: [R, d_in]`, `w: [E, d_in, d_out]`, `bias: [E, d_out]`, `counts: [E]` -> `[R, d_out]`.
pub fn grouped_matmul(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    counts: &[usize],
) -> Result<Tensor> {
    let (_, _, d_out) = check("grouped_matmul", x, w, bias, counts)?;
    // split / unbind rather than narrow / get: their backward is one cat / stack, where the
    // backward of each narrow or get would allocate a zero tensor as large as the whole input.
    let slices = x.f_split_with_sizes(to_i64(counts), 0)?;
    let weights = w.f_unbind(0)?;
    let biases = bias.map(|b| b.unbind(0));
    let mut outputs = Vec::with_capacity(counts.len());
    for (e, slice) in slices.iter().enumerate() {
        if counts[e] == 0 {
            continue;
        }
        let y = slice.matmul(&weights[e]);
        outputs.push(match &biases {
            Some(b) => y + &b[e],
            None => y,
        });
    }
    if outputs.is_empty() {
        return Ok(x.new_zeros([0, d_out], (x.kind(), x.device())));
    }
    Ok(Tensor::f_cat(&outputs, 0)?)
}

/// The same result as [`grouped_matmul`] through one batched matmul: rows are copied into an
/// `[E, max(counts), d_in]` zero-padded buffer, multiplied with `bmm`, and gathered back.
/// Costs `E * max(counts)` rows of compute, so it pays off only when experts are balanced and
/// the per-expert matmuls are small.
///
/// # Shapes
/// `x: [R, d_in]`, `w: [E, d_in, d_out]`, `bias: [E, d_out]`, `counts: [E]` -> `[R, d_out]`.
pub fn padded_bmm(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    counts: &[usize],
) -> Result<Tensor> {
    let (r, e, d_out) = check("padded_bmm", x, w, bias, counts)?;
    let d_in = x.size()[1];
    let device = x.device();
    let max_count = counts.iter().copied().max().unwrap_or(0) as i64;
    // Row r of expert j sits at j * max_count + (r - start_j) in the padded buffer.
    let shift: Vec<i64> = exclusive_cumsum(counts)
        .iter()
        .enumerate()
        .map(|(j, start)| j as i64 * max_count - start)
        .collect();
    let padded_index = Tensor::arange(r, (Kind::Int64, device))
        + Tensor::f_repeat_interleave_self_tensor(
            &host_tensor(&shift, device),
            &host_tensor(&to_i64(counts), device),
            0,
            r,
        )?;
    let padded = x
        .new_zeros([e * max_count, d_in], (x.kind(), device))
        .f_index_copy(0, &padded_index, x)?
        .view([e, max_count, d_in]);
    let mut y = padded.f_bmm(w)?; // (experts, max_count, d_out)
    if let Some(b) = bias {
        y += b.unsqueeze(1);
    }
    Ok(y.view([e * max_count, d_out])
        .f_index_select(0, &padded_index)?)
}

/// Which implementation runs a grouped matmul.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmPath {
    /// One matmul per non-empty group ([`grouped_matmul`]).
    Loop,
    /// One libtorch `_grouped_mm` call ([`grouped_mm`]) where it is the faster of the two:
    /// always on CUDA (the CUTLASS grouped GEMM); on CPU while the groups average at most
    /// [`CPU_GROUPED_MM_MAX_ROWS_PER_GROUP`] rows, else the loop; and the loop wherever the
    /// grouped GEMM's layout rule refuses. The default.
    #[default]
    Grouped,
}

/// On CPU, the grouped GEMM runs while the groups average at most this many rows. Measured
/// forward + backward with bias (`docs/benchmarks.md`, "Grouped GEMM against the loop"): at
/// 32 and 128 rows per group it took 0.89-0.98 of the loop's time, at 512 and 2048 rows
/// 1.10-1.16 (libtorch's CPU `_grouped_mm` is a composite over the groups, so it saves the
/// per-group dispatch and autograd nodes, which matter only for small groups, and its bias
/// gather costs a pass over the output).
pub const CPU_GROUPED_MM_MAX_ROWS_PER_GROUP: usize = 256;

/// Whether libtorch's `_grouped_mm` takes `x: [R, d_in]` and `w: [G, d_in, d_out]`: equal
/// float dtypes (fp32 or bf16), and every row of either (`d_in`, `d_out`) a multiple of 16
/// bytes long (its stride rule). Transposed weights (`w.transpose(1, 2)` of a contiguous
/// `[G, d_out, d_in]`) are accepted.
pub fn grouped_mm_supported(x: &Tensor, w: &Tensor) -> bool {
    let (xs, ws) = (x.size(), w.size());
    let bytes = match x.kind() {
        Kind::Float => 4,
        Kind::BFloat16 => 2,
        _ => return false,
    };
    xs.len() == 2
        && ws.len() == 3
        && w.kind() == x.kind()
        && x.is_contiguous()
        && (xs[1] * bytes) % 16 == 0
        && (ws[2] * bytes) % 16 == 0
        && (w.is_contiguous() || w.transpose(1, 2).is_contiguous())
}

/// [`grouped_matmul`] as one call of libtorch's grouped GEMM (`at::_grouped_mm`, tch's
/// `internal_grouped_mm`): a CUTLASS kernel on Hopper GPUs, a composite over the groups
/// elsewhere. The groups come from `layout.ends` on the device, so no count is read back; the
/// bias is gathered per row by `layout.row_group` (libtorch's grouped GEMM takes no bias).
/// Falls back to [`grouped_matmul`] when [`grouped_mm_supported`] says no. Outputs and
/// gradients equal the loop's (tested; bit for bit on CPU).
///
/// Its backward needs the gradient of its output to be an ordinary strided tensor (a
/// broadcast gradient, as `y.sum().backward()` makes, is refused by libtorch): every layer
/// here applies an activation, a bias or a combine first.
///
/// # Shapes
/// `x: [R, d_in]`, `w: [G, d_in, d_out]`, `bias: [G, d_out]` -> `[R, d_out]`.
pub fn grouped_mm(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: &GroupLayout,
) -> Result<Tensor> {
    check("grouped_mm", x, w, bias, &layout.counts)?;
    if !grouped_mm_supported(x, w) {
        return grouped_matmul(x, w, bias, &layout.counts);
    }
    let y = x.f_internal_grouped_mm(w, Some(&layout.ends), None::<&Tensor>, None)?;
    Ok(match bias {
        Some(b) => y + b.f_index_select(0, &layout.row_group)?,
        None => y,
    })
}

/// [`grouped_mm`] or [`grouped_matmul`], as `path` says ([`GemmPath::Grouped`] picks the
/// faster one for the device and the group sizes).
///
/// # Shapes
/// `x: [R, d_in]`, `w: [G, d_in, d_out]`, `bias: [G, d_out]` -> `[R, d_out]`.
pub fn grouped_linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    layout: &GroupLayout,
    path: GemmPath,
) -> Result<Tensor> {
    let groups = layout.counts.len().max(1);
    let small_groups = layout.num_rows() <= CPU_GROUPED_MM_MAX_ROWS_PER_GROUP * groups;
    match path {
        GemmPath::Grouped if x.device().is_cuda() || small_groups => grouped_mm(x, w, bias, layout),
        _ => grouped_matmul(x, w, bias, &layout.counts),
    }
}
