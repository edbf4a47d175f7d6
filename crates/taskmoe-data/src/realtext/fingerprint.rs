//! What the real-text builders hash alike: the split of an example by a 64-bit hash of its
//! key (buckets of 100: train `[0, 60)`, validation `[60, 72)`, test `[72, 100)`) and the
//! FNV-1a fingerprint of the written files. Each benchmark keeps its own key and order hash.

/// Hash buckets (of 100) of the training split: `[0, 60)`.
pub(crate) const TRAIN_BUCKETS: u64 = 60;
/// Hash buckets of the validation split: `[60, 72)`; the test split is `[72, 100)`.
pub(crate) const DEV_BUCKETS: u64 = 12;
/// FNV-1a's offset basis: the fingerprint of no bytes.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 0 = train, 1 = dev, 2 = test, by the bucket `hash % 100`.
pub(crate) fn split_by_bucket(hash: u64) -> usize {
    match hash % 100 {
        b if b < TRAIN_BUCKETS => 0,
        b if b < TRAIN_BUCKETS + DEV_BUCKETS => 1,
        _ => 2,
    }
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
    fn the_fingerprint_and_the_buckets_are_fixed() {
        // FNV-1a-64 of "a" as published; the bucket bounds every built split hangs on.
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            [59, 60, 71, 72, 99, 100].map(split_by_bucket),
            [0, 1, 1, 2, 2, 0]
        );
    }
}
