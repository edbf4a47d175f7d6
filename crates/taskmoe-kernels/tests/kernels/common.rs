//! Helpers shared by the kernel tests: seeded data and tensor <-> ndarray conversion.

use ndarray::{Array1, Array2, Array3, ArrayD, Ix1, Ix2, Ix3};
use tch::{Kind, Tensor};

/// Deterministic standard-normal-ish values (splitmix64 + Box-Muller), independent of any
/// global RNG, so a failing proptest case reproduces from its seed.
pub fn normal(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let u1 = next().max(1e-12);
            let u2 = next();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

pub fn tensor2(data: &[f32], rows: usize, cols: usize) -> Tensor {
    Tensor::from_slice(data).view([rows as i64, cols as i64])
}

pub fn tensor3(data: &[f32], a: usize, b: usize, c: usize) -> Tensor {
    Tensor::from_slice(data).view([a as i64, b as i64, c as i64])
}

pub fn array2(t: &Tensor) -> Array2<f32> {
    let a: ArrayD<f32> = (&t.to_kind(Kind::Float).contiguous()).try_into().unwrap();
    a.into_dimensionality::<Ix2>().unwrap()
}

pub fn array2_i64(t: &Tensor) -> Array2<i64> {
    let a: ArrayD<i64> = (&t.contiguous()).try_into().unwrap();
    a.into_dimensionality::<Ix2>().unwrap()
}

pub fn array1_i64(t: &Tensor) -> Array1<i64> {
    let a: ArrayD<i64> = (&t.contiguous()).try_into().unwrap();
    a.into_dimensionality::<Ix1>().unwrap()
}

pub fn array3(t: &Tensor) -> Array3<f32> {
    let a: ArrayD<f32> = (&t.to_kind(Kind::Float).contiguous()).try_into().unwrap();
    a.into_dimensionality::<Ix3>().unwrap()
}

pub fn scalar(t: &Tensor) -> f32 {
    t.double_value(&[]) as f32
}

/// Largest absolute difference, scaled by max(1, |reference|).
pub fn max_rel_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim(), "shapes differ");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}
