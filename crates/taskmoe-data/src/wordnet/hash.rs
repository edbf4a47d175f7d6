//! The fixed hashes of the benchmark: SplitMix64 puts every synset into a split and orders the
//! synsets within it (not a random draw, so every run of the builder agrees), FNV-1a
//! fingerprints the written files.

use super::parse::Synset;

/// Hash buckets (of 100) of the training split: `[0, 60)`.
pub(crate) const TRAIN_BUCKETS: u64 = 60;
/// Hash buckets of the validation split: `[60, 72)`; the test split is `[72, 100)`.
pub(crate) const DEV_BUCKETS: u64 = 12;
/// Salt of the hash that orders synsets within a split (independent of the split hash).
const ORDER_SALT: u64 = 0x005e_ed0f_0a11_7a5c;
/// FNV-1a's offset basis: the fingerprint of no bytes.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl Synset {
    /// 0 = train, 1 = dev, 2 = test, by the hash of [`Synset::key`].
    pub(crate) fn split(&self) -> usize {
        match splitmix64(self.key()) % 100 {
            b if b < TRAIN_BUCKETS => 0,
            b if b < TRAIN_BUCKETS + DEV_BUCKETS => 1,
            _ => 2,
        }
    }

    /// The order of synsets within a split.
    pub(crate) fn order(&self) -> (u64, u64) {
        (splitmix64(self.key() ^ ORDER_SALT), self.key())
    }
}

/// SplitMix64's output function: a fixed, well-mixed 64-bit hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bits: the fingerprint of the written files.
pub(crate) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed() {
        // SplitMix64's first output for seed 0 and FNV-1a-64 of "a", as published: the split
        // of every synset hangs on these functions.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
