//! Data-parallel gradient averaging in a few large all-reduces.

use tch::Tensor;

use crate::error::{DistError, Result};
use crate::group::ProcessGroup;

/// Averages flat gradient buffers over a group in buckets of at most `bucket_bytes`.
///
/// The optimizer keeps the gradients of all parameters of one dtype in one contiguous buffer
/// (`taskmoe-train`'s AdamW), so a bucket is a slice of that buffer and is reduced in place:
/// no packing copies, and a handful of collectives per step instead of one per parameter (the
/// idea of PyTorch DDP's gradient buckets). Buckets bound the size of one message, so a slow
/// link is not handed one huge buffer, and keep the collective's scratch memory small.
#[derive(Debug, Clone, Copy)]
pub struct GradBuckets {
    bucket_bytes: usize,
}

/// DDP's default bucket size, 25 MiB.
const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

impl Default for GradBuckets {
    fn default() -> Self {
        GradBuckets {
            bucket_bytes: DEFAULT_BUCKET_BYTES,
        }
    }
}

impl GradBuckets {
    /// Buckets of at most `bucket_bytes` (at least one element).
    pub fn new(bucket_bytes: usize) -> Self {
        GradBuckets {
            bucket_bytes: bucket_bytes.max(1),
        }
    }

    /// Sums `numel` elements of the contiguous 1-D `flat` from element `offset` over `group`,
    /// then divides them by `divisor`, bucket by bucket, in place. Returns the number of
    /// all-reduces run.
    pub fn reduce(
        &self,
        group: &ProcessGroup,
        flat: &Tensor,
        offset: i64,
        numel: i64,
        divisor: f64,
    ) -> Result<usize> {
        let op = "gradient all_reduce";
        if flat.dim() != 1
            || !flat.is_contiguous()
            || offset < 0
            || offset + numel > flat.numel() as i64
        {
            return Err(DistError::Input {
                rank: group.rank(),
                op,
                reason: format!(
                    "needs a contiguous 1-D buffer holding elements {offset}..{}, got {:?}",
                    offset + numel,
                    flat.size()
                ),
            });
        }
        let elem = flat.kind().elt_size_in_bytes().max(1);
        let per_bucket = ((self.bucket_bytes / elem).max(1)) as i64;
        let mut start = offset;
        let mut calls = 0;
        while start < offset + numel {
            let n = per_bucket.min(offset + numel - start);
            let mut bucket = flat.narrow(0, start, n);
            group.all_reduce_sum(&mut bucket)?;
            if divisor != 1.0 {
                tch::no_grad(|| {
                    let _ = bucket.g_div_scalar_(divisor);
                });
            }
            start += n;
            calls += 1;
        }
        Ok(calls)
    }
}
