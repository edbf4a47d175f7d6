//! The AdamW update of a flat fp32 CPU group in one pass over memory.
//!
//! The ATen path of [`crate::AdamW`] updates a chunk of a flat group with eight libtorch ops
//! (weight decay, two `lerp_`, a square, `sqrt`, a scale, a shift, `addcdiv_`), each one a
//! full pass over the chunk's arrays. This kernel reads each element of the four buffers
//! (parameter, gradient, both moments) once and writes three of them once, in plain Rust over
//! the tensors' memory, split into contiguous pieces across `tch::get_num_threads()` threads.
//!
//! Per element it does what the ATen ops do, in their order and with their rounding:
//!
//! ```text
//! p <- p * f32(1 - lr * weight_decay)                      (decayed prefix only)
//! m <- lerp(m, g, f32(1 - beta1))
//! v <- lerp(v, f32(g * g), f32(1 - beta2))
//! p <- p + m / (sqrt(v) * f32(d_scale) + f32(d_shift))     (only when lr > 0)
//! ```
//!
//! with ATen's CPU `lerp`: `fma(w, end - start, start)` when `|w| < 0.5`, else
//! `fma(w - 1, end - start, end)` (`aten/src/ATen/native/cpu/LerpKernel.cpp`). ATen's vectorised
//! kernels fuse that multiply-add where the CPU has FMA; so does this kernel (detected at run
//! time on x86-64), and without FMA both round the product and the sum separately. So the
//! moments come out bit for bit as on the ATen path (tested). The parameters can differ by
//! an ulp or two of the step: ATen's fp32 `sqrt` on the CPU is not correctly rounded on the
//! machine tested (one ulp off the correctly rounded square root, which this kernel takes, in
//! about a fifth of the elements; the PyTorch 2.11 wheel's libtorch carries MKL's vector
//! math, `vsSqrt`, the likely source); the tests bound each step's difference by four
//! roundings of the step and of the values.
//!
//! Only contiguous fp32 buffers on the CPU take this path ([`applies`]); other kinds (bf16) and
//! devices (CUDA) keep the ATen ops.

use tch::{Device, Kind, Tensor};

use crate::error::{invalid, Result};

/// Fewest elements worth a thread of their own: below this a piece is done by fewer threads
/// (starting a thread costs tens of microseconds, about what 64 Ki elements of the update take).
const MIN_PER_THREAD: usize = 1 << 16;

/// The per-step constants of the update, as the ATen ops see them (fp32 scalars).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Coefficients {
    /// `1 - lr * weight_decay`, the factor of the decayed prefix (`1` when `weight_decay` is
    /// zero, which leaves every value as it is).
    pub decay: f32,
    /// `1 - beta1`, the weight of the first moment's `lerp`.
    pub w1: f32,
    /// `1 - beta2`, the weight of the second moment's `lerp`.
    pub w2: f32,
    /// Scale and shift of the denominator `D = sqrt(v) * d_scale + d_shift` of `p += m / D`.
    pub d_scale: f32,
    /// See `d_scale`.
    pub d_shift: f32,
    /// Whether the Adam step moves the parameters (`lr > 0`; the moments move regardless).
    pub step: bool,
}

/// Whether the fused kernel handles a group whose buffers look like `values`: fp32 and on
/// the CPU (the group's buffers are contiguous by construction; [`update`] checks it again).
pub(crate) fn applies(values: &Tensor) -> bool {
    values.device() == Device::Cpu && values.kind() == Kind::Float
}

/// The update of the elements in `ranges` (sorted, disjoint, within the buffers) of the flat
/// buffers `[values, grads, exp_avg, exp_avg_sq]`, whose first `decay_len` elements are the
/// decayed parameters, on up to `threads` threads.
///
/// Fails, changing nothing, when a buffer is not a contiguous 1-D fp32 CPU tensor, when their
/// lengths differ, when two of them share memory, or when a range is out of order or out of
/// bounds.
pub(crate) fn update(
    [values, grads, exp_avg, exp_avg_sq]: [&mut Tensor; 4],
    decay_len: i64,
    ranges: &[(i64, i64)],
    k: &Coefficients,
    threads: usize,
) -> Result<()> {
    let tensors = [&*values, &*grads, &*exp_avg, &*exp_avg_sq];
    let len = check_buffers(tensors)?;
    let mut last = 0;
    for &(begin, end) in ranges {
        if begin < last || end < begin || end > len as i64 {
            return Err(invalid(
                "adamw (fused update)",
                format!("range {begin}..{end} is out of order or outside 0..{len}"),
            ));
        }
        last = end;
    }
    if len == 0 {
        return Ok(());
    }
    // SAFETY: `check_buffers` established that each of the four tensors is a contiguous 1-D
    // fp32 CPU tensor of `len` elements with a non-null data pointer, so each pointer is
    // valid for `len` reads and writes of `f32` (and aligned for it: a Float tensor's data
    // starts a whole number of elements into its allocation), and that their byte ranges do
    // not overlap, so the one shared and three exclusive slices alias nothing among
    // themselves. The storages stay alive while the borrowed `Tensor` handles do, which
    // outlive the slices (same lifetime). Other tensors do view this memory: the parameters
    // and their gradients. The caller holds `&mut` to the buffers' handles, and, as for the
    // libtorch ops of the other path, the step must not overlap with ops on those views on
    // another thread (`AdamW::step` takes `&mut self`; a training loop runs forward,
    // backward and step in turn), so the slices are the only access for their lifetime.
    let (p, g, m, v) = unsafe {
        (
            std::slice::from_raw_parts_mut(values.data_ptr() as *mut f32, len),
            std::slice::from_raw_parts(grads.data_ptr() as *const f32, len),
            std::slice::from_raw_parts_mut(exp_avg.data_ptr() as *mut f32, len),
            std::slice::from_raw_parts_mut(exp_avg_sq.data_ptr() as *mut f32, len),
        )
    };
    let pieces = split(Slices { p, g, m, v }, decay_len as usize, ranges);
    let total: usize = pieces.iter().map(|s| s.0.p.len()).sum();
    let threads = threads.clamp(1, total.div_ceil(MIN_PER_THREAD).max(1));
    let mut buckets = share(pieces, total, threads);
    let first = buckets.remove(0);
    std::thread::scope(|scope| {
        for bucket in buckets {
            scope.spawn(move || run_all(bucket, k));
        }
        run_all(first, k);
    });
    Ok(())
}

/// Checks what [`update`]'s `unsafe` block relies on and returns the common length.
fn check_buffers(tensors: [&Tensor; 4]) -> Result<usize> {
    const NAMES: [&str; 4] = ["values", "grads", "exp_avg", "exp_avg_sq"];
    let len = tensors[0].numel();
    let mut spans = Vec::with_capacity(4);
    for (t, name) in tensors.iter().zip(NAMES) {
        let ok = t.device() == Device::Cpu
            && t.kind() == Kind::Float
            && t.dim() == 1
            && t.is_contiguous()
            && t.numel() == len;
        if !ok {
            return Err(invalid(
                "adamw (fused update)",
                format!(
                    "buffer `{name}` is {:?} {:?} on {:?} (contiguous: {}); expected a \
                     contiguous 1-D Float CPU tensor of {len} elements",
                    t.kind(),
                    t.size(),
                    t.device(),
                    t.is_contiguous()
                ),
            ));
        }
        if len > 0 {
            let start = t.data_ptr() as usize;
            if start == 0 {
                return Err(invalid(
                    "adamw (fused update)",
                    format!("buffer `{name}` has no data"),
                ));
            }
            spans.push((start, start + len * std::mem::size_of::<f32>(), name));
        }
    }
    spans.sort();
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(invalid(
                "adamw (fused update)",
                format!("buffers `{}` and `{}` overlap", pair[0].2, pair[1].2),
            ));
        }
    }
    Ok(len)
}

/// Matching slices of the four buffers.
struct Slices<'a> {
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl<'a> Slices<'a> {
    /// The first `n` elements and the rest.
    fn split_at(self, n: usize) -> (Slices<'a>, Slices<'a>) {
        let (p0, p1) = self.p.split_at_mut(n);
        let (g0, g1) = self.g.split_at(n);
        let (m0, m1) = self.m.split_at_mut(n);
        let (v0, v1) = self.v.split_at_mut(n);
        let head = Slices {
            p: p0,
            g: g0,
            m: m0,
            v: v0,
        };
        let tail = Slices {
            p: p1,
            g: g1,
            m: m1,
            v: v1,
        };
        (head, tail)
    }
}

/// The parts of `all` that `ranges` select, each cut where the decayed prefix of
/// `decay_len` elements ends, with whether it is decayed; in buffer order.
fn split<'a>(all: Slices<'a>, decay_len: usize, ranges: &[(i64, i64)]) -> Vec<(Slices<'a>, bool)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    let (mut rest, mut at) = (all, 0usize);
    for &(begin, end) in ranges {
        let (begin, end) = (begin as usize, end as usize);
        let (_, tail) = rest.split_at(begin - at);
        let (mut range, tail) = tail.split_at(end - begin);
        rest = tail;
        at = end;
        let decayed = decay_len.clamp(begin, end) - begin;
        if decayed > 0 {
            let (head, tail) = range.split_at(decayed);
            out.push((head, true));
            range = tail;
        }
        if !range.p.is_empty() {
            out.push((range, false));
        }
    }
    out
}

/// Deals `pieces` (of `total` elements) out to `threads` buckets of nearly equal size, cutting
/// pieces where needed, in buffer order.
fn share(
    pieces: Vec<(Slices<'_>, bool)>,
    total: usize,
    threads: usize,
) -> Vec<Vec<(Slices<'_>, bool)>> {
    let per = total.div_ceil(threads).max(1);
    let mut buckets: Vec<Vec<_>> = vec![Vec::new()];
    let mut room = per;
    for (mut piece, decayed) in pieces {
        while !piece.p.is_empty() {
            if room == 0 {
                buckets.push(Vec::new());
                room = per;
            }
            let n = piece.p.len().min(room);
            let (head, tail) = piece.split_at(n);
            buckets
                .last_mut()
                .expect("one bucket at least")
                .push((head, decayed));
            room -= n;
            piece = tail;
        }
    }
    buckets
}

/// Runs the kernel over one thread's pieces.
fn run_all(bucket: Vec<(Slices<'_>, bool)>, k: &Coefficients) {
    for (s, decayed) in bucket {
        let decay = if decayed { k.decay } else { 1.0 };
        run(s, decay, k);
    }
}

/// The kernel over one piece with the FMA of the CPU when it has one (what ATen's vectorised
/// kernels use), else with separate rounding.
fn run(s: Slices<'_>, decay: f32, k: &Coefficients) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the FMA instructions `kernel_fma` is compiled for.
            unsafe { kernel_fma(s, decay, k) };
        } else {
            kernel::<false>(s, decay, k);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    kernel::<true>(s, decay, k);
}

/// [`kernel`] compiled with FMA (and AVX2, for eight lanes at a time).
///
/// # Safety
/// The CPU must support FMA and AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_fma(s: Slices<'_>, decay: f32, k: &Coefficients) {
    kernel::<true>(s, decay, k);
}

/// `a * b + c`, in one rounding when `FUSED`.
#[inline(always)]
fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// ATen's CPU `lerp(start, end, w)` (module docs).
#[inline(always)]
fn lerp<const FUSED: bool>(start: f32, end: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        madd::<FUSED>(w, end - start, start)
    } else {
        madd::<FUSED>(w - 1.0, end - start, end)
    }
}

/// The update of one piece, every element multiplied by `decay` first.
#[inline(always)]
fn kernel<const FUSED: bool>(s: Slices<'_>, decay: f32, k: &Coefficients) {
    let n = s.p.len();
    let (p, g, m, v) = (s.p, &s.g[..n], &mut s.m[..n], &mut s.v[..n]);
    let Coefficients {
        w1,
        w2,
        d_scale,
        d_shift,
        ..
    } = *k;
    if k.step {
        for i in 0..n {
            let gi = g[i];
            let mi = lerp::<FUSED>(m[i], gi, w1);
            let vi = lerp::<FUSED>(v[i], gi * gi, w2);
            // `add_scalar_` is `fma(d_shift, 1, x)` in ATen: one rounding, as `+`.
            let denom = vi.sqrt() * d_scale + d_shift;
            p[i] = p[i] * decay + mi / denom;
            m[i] = mi;
            v[i] = vi;
        }
    } else {
        for i in 0..n {
            let gi = g[i];
            p[i] *= decay;
            m[i] = lerp::<FUSED>(m[i], gi, w1);
            v[i] = lerp::<FUSED>(v[i], gi * gi, w2);
        }
    }
}
