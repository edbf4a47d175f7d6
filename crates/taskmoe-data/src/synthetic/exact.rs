//! Generator v2's exact constructions: task weights whose realised correlations equal the
//! declared relatedness at every seed, and label thresholds that balance every task.

/// Centres every vector (subtracts its mean) and orthonormalises them in order by modified
/// Gram-Schmidt, run twice for accuracy: the result's vectors have mean 0, norm 1 and pairwise
/// dot products 0 (to about 1e-15). Panics when a vector lies in the span of the earlier ones
/// (Gaussian draws in more dimensions than vectors never do; the config checks the count).
pub(crate) fn centred_orthonormal(vectors: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(vectors.len());
    for v in vectors {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let mut u: Vec<f64> = v.iter().map(|x| x - mean).collect();
        for _ in 0..2 {
            for b in &basis {
                let dot: f64 = u.iter().zip(b).map(|(x, y)| x * y).sum();
                u.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
            }
            // Keep the mean at exactly 0 after the projections' rounding.
            let mean = u.iter().sum::<f64>() / n;
            u.iter_mut().for_each(|x| *x -= mean);
        }
        let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(
            norm > 1e-9,
            "a Gaussian draw fell into the span of the others"
        );
        u.iter_mut().for_each(|x| *x /= norm);
        basis.push(u);
    }
    basis
}

/// The weights of the tasks of one family from its basis `[u_family, u_1, u_2, ...]`:
/// task `i` gets `sqrt(d) * (sqrt(rho) u_family + sqrt(1 - rho) u_i)`, so every pair has
/// correlation exactly `rho` and every task has the family direction in common. `sqrt(d)`
/// keeps the components at unit variance, the scale of generator v1.
pub(crate) fn family_weights(basis: &[Vec<f64>], rho: f64) -> Vec<Vec<f64>> {
    let (family, own) = basis.split_first().expect("a family direction");
    let scale = (family.len() as f64).sqrt();
    let (a, b) = (rho.sqrt(), (1.0 - rho).sqrt());
    own.iter()
        .map(|u| {
            family
                .iter()
                .zip(u)
                .map(|(f, o)| scale * (a * f + b * o))
                .collect()
        })
        .collect()
}

/// The median of `values` (the mean of the middle two for an even count).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "the median of nothing");
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// Pearson correlation of two vectors of equal length.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    ab / (aa * bb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "span of the others")]
    fn a_dependent_vector_is_refused() {
        // sin(x + c) = a sin x + b cos x: the third lies in the span of the first two.
        let v: Vec<Vec<f64>> = (0..3)
            .map(|i| {
                (0..64)
                    .map(|j| (j as f64 * 0.37 + i as f64).sin())
                    .collect()
            })
            .collect();
        centred_orthonormal(&v);
    }

    #[test]
    fn basis_is_centred_and_orthonormal_and_weights_exact() {
        let vectors: Vec<Vec<f64>> = (0..5)
            .map(|i| {
                let mut rng = crate::rng::Rng::from_key(&[17, i]);
                (0..64).map(|_| rng.normal()).collect()
            })
            .collect();
        let basis = centred_orthonormal(&vectors);
        for (i, u) in basis.iter().enumerate() {
            assert!(u.iter().sum::<f64>().abs() < 1e-12);
            for (j, v) in basis.iter().enumerate() {
                let dot: f64 = u.iter().zip(v).map(|(x, y)| x * y).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-12, "{i} {j} {dot}");
            }
        }
        for rho in [0.0, 0.3, 0.9, 1.0] {
            let w = family_weights(&basis, rho);
            assert_eq!(w.len(), 4);
            for i in 0..4 {
                for j in 0..i {
                    assert!((correlation(&w[i], &w[j]) - rho).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
