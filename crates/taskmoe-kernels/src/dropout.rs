//! Dropout whose random mask is a counter-based hash, fast on CPU.
//!
//! libtorch's CPU dropout draws one Bernoulli sample per element from the global Mersenne
//! twister in a serial loop (its vectorised MKL path is taken only on Intel CPUs): about 7 ns
//! per element on the project's AMD machine, a fifth of a small model's training step, while
//! the other thread waits. This dropout draws **one** 64-bit seed per call from the same global
//! generator (so `tch::manual_seed` makes it reproducible, as before) and derives the mask from
//! the SplitMix64 output for counter `seed + i * golden` (Steele et al. 2014), computed with
//! vectorised, multi-threaded int64 tensor ops; each 64-bit output gives the keep decisions of
//! four elements (16 bits each).
//!
//! The drop probability is therefore rounded to a multiple of `2^-16` (`0.1` becomes
//! `6554 / 65536 = 0.100006`) and kept values are scaled by `1 / (1 - p_rounded)`, so the
//! expectation is exact. Off the CPU, libtorch's own fused dropout is used.

use tch::{Device, Kind, Tensor};

/// SplitMix64 increment (the golden ratio in 64-bit fixed point).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// SplitMix64 finaliser multipliers.
const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX2: u64 = 0x94D0_49BB_1331_11EB;

/// `z ^ (z >>> shift)` with a logical shift, in place (libtorch shifts int64 arithmetically, so
/// the sign-extended bits are masked off).
fn xor_shift(z: &mut Tensor, shift: i64) {
    let shifted = z
        .bitwise_right_shift_tensor_scalar(shift)
        .bitwise_and((1i64 << (64 - shift)) - 1);
    let _ = z.bitwise_xor_tensor_(&shifted);
}

/// The drop probability actually applied for `p`: `round(p * 2^16) / 2^16`.
pub fn effective_dropout(p: f64) -> f64 {
    (p * 65536.0).round() / 65536.0
}

/// The keep mask for `n` elements: `true` with probability `1 - effective_dropout(p)`, from
/// the hash of counter `i` under `seed`. `[n]` bool on `device`.
pub fn keep_mask(n: i64, p: f64, seed: i64, device: Device) -> Tensor {
    let words = (n + 3) / 4;
    let mut z = Tensor::arange(words, (Kind::Int64, device));
    let _ = z.f_add_scalar_(1).expect("int64 add");
    let _ = z.f_mul_scalar_(GOLDEN as i64).expect("int64 mul");
    let _ = z.f_add_scalar_(seed).expect("int64 add");
    xor_shift(&mut z, 30);
    let _ = z.f_mul_scalar_(MIX1 as i64).expect("int64 mul");
    xor_shift(&mut z, 27);
    let _ = z.f_mul_scalar_(MIX2 as i64).expect("int64 mul");
    xor_shift(&mut z, 31);
    // Four signed 16-bit lanes per word, uniform in [-32768, 32767]; keep the top 1 - p.
    let threshold = (p * 65536.0).round() as i64 - 32768;
    z.view_dtype(Kind::Int16).narrow(0, 0, n).ge(threshold)
}

/// `x * mask / (1 - p)` in training (a fresh mask per call), `x` itself otherwise; see the
/// module docs for the mask and the rounding of `p`. Differentiable in `x`.
///
/// # Shapes
/// `x: [..]` -> same.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    if x.device() != Device::Cpu || p >= 1.0 {
        return x.dropout(p, train);
    }
    let p_eff = effective_dropout(p);
    if p_eff <= 0.0 {
        return x.shallow_clone();
    }
    if p_eff >= 1.0 {
        return x * 0.0;
    }
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
    let scale = tch::no_grad(|| {
        keep_mask(x.numel() as i64, p, seed, x.device())
            .to_kind(x.kind())
            .f_mul_scalar_(1.0 / (1.0 - p_eff))
            .expect("float mul")
            .view(x.size().as_slice())
    });
    x * scale
}
