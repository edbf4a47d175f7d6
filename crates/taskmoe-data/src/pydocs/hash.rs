//! The fixed hashes of the benchmark: every docstring goes to a split by a hash of its text
//! (so the same text is in the same split wherever it would be used), and is ordered within
//! it by a second hash (not a random draw, so every run of the builder agrees); FNV-1a
//! fingerprints the written files.

use crate::rng::{hash_str, mix64};

/// Hash buckets (of 100) of the training split: `[0, 60)`, as the WordNet benchmark's.
pub(crate) const TRAIN_BUCKETS: u64 = 60;
/// Hash buckets of the validation split: `[60, 72)`; the test split is `[72, 100)`.
pub(crate) const DEV_BUCKETS: u64 = 12;
/// Salt of the hash that orders docstrings within a split (independent of the split hash).
const ORDER_SALT: u64 = 0x0d0c_5717_0a11_7a5c;
/// FNV-1a's offset basis: the fingerprint of no bytes.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash key of a summary: FNV-1a of its lower-cased text, mixed ([`hash_str`]). Texts
/// that differ only in case get one key, so they can never be in two splits.
pub(crate) fn text_key(summary: &str) -> u64 {
    hash_str(&summary.to_lowercase())
}

/// 0 = train, 1 = dev, 2 = test, by the text's key.
pub(crate) fn split_of(key: u64) -> usize {
    match key % 100 {
        b if b < TRAIN_BUCKETS => 0,
        b if b < TRAIN_BUCKETS + DEV_BUCKETS => 1,
        _ => 2,
    }
}

/// The order of docstrings within a split.
pub(crate) fn order_of(key: u64) -> (u64, u64) {
    (mix64(key ^ ORDER_SALT), key)
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
    fn the_hashes_are_fixed() {
        // The split of every docstring hangs on these values: FNV-1a-64 of "a" as published,
        // and the key of one summary as this benchmark's first release computed it.
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(text_key("Return A."), text_key("return a."));
        assert_eq!(text_key("Return a."), 0xe3e5_723d_8ede_8e57);
        assert_eq!(split_of(59), 0);
        assert_eq!(split_of(160), 1);
        assert_eq!(split_of(99), 2);
    }
}
