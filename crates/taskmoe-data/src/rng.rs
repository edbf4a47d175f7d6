//! Counter-based randomness: every random draw is a pure function of a key.
//!
//! There is no global or long-lived generator anywhere in the crate. A [`Rng`] is created from a
//! key such as `(seed, stream, step, slot)` by hashing the key words with the splitmix64 finalizer,
//! and then advanced a few times for the draws of one small job (one batch slot, one synthetic
//! example). So the batch at step `N` or the `i`-th synthetic example can be recomputed alone,
//! in any order, which is what makes a restart at step `N` see exactly the same data.

/// The golden-ratio increment of splitmix64.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 output function (Steele, Lea, Flood 2014): a bijective mix of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of words into one 64-bit key; order matters (`[a, b] != [b, a]`).
pub fn hash_key(words: &[u64]) -> u64 {
    words.iter().fold(GOLDEN, |h, &w| {
        mix64(h.rotate_left(23) ^ mix64(w.wrapping_add(GOLDEN)))
    })
}

/// Hashes a string (a task name, say) into a word usable in a key (FNV-1a, then mixed).
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    mix64(h)
}

/// A splitmix64 generator started from a hashed key. Small, `Copy`, and never shared.
#[derive(Debug, Clone, Copy)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output is determined by `key` (see [`hash_key`]).
    pub fn from_key(key: &[u64]) -> Self {
        Rng {
            state: hash_key(key),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (Lemire's multiply-shift with rejection, so unbiased).
    ///
    /// # Panics
    /// If `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniform integer in `lo..=hi`.
    pub fn range_inclusive(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// `true` with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A standard normal draw (Box-Muller; one of the pair is discarded to stay stateless).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // in (0, 1], so ln is finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// An index drawn with probability proportional to the (non-negative) `cumulative` sums'
    /// increments; `cumulative` is non-decreasing and its last value is positive.
    pub fn categorical(&mut self, cumulative: &[f64]) -> usize {
        let total = *cumulative.last().expect("categorical over no outcomes");
        let u = self.next_f64() * total;
        let i = cumulative.partition_point(|&c| c <= u);
        i.min(cumulative.len() - 1)
    }
}

/// A seeded permutation of `0..n`: the same `key` always gives the same order.
pub fn permutation(n: usize, key: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::from_key(key).shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut rng = Rng::from_key(&[7]);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[rng.below(5) as usize] += 1;
        }
        // Each bucket expects 1000; 6 standard deviations is about 170.
        assert!(seen.iter().all(|&c| (830..1170).contains(&c)), "{seen:?}");
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = Rng::from_key(&[1, 2, 3]);
        let xs: Vec<f64> = (0..20000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn categorical_skips_zero_mass() {
        let mut rng = Rng::from_key(&[9]);
        let cumulative = [0.0, 1.0, 1.0, 3.0];
        let mut seen = [0usize; 4];
        for _ in 0..3000 {
            seen[rng.categorical(&cumulative)] += 1;
        }
        assert_eq!(seen[0], 0);
        assert_eq!(seen[2], 0);
        assert!((800..1200).contains(&seen[1]), "{seen:?}");
    }

    #[test]
    fn keys_are_order_sensitive() {
        assert_ne!(hash_key(&[1, 2]), hash_key(&[2, 1]));
        assert_ne!(hash_key(&[0]), hash_key(&[0, 0]));
    }
}
