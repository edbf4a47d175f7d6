//! Counting ids on the device without a host synchronisation.

use tch::{Kind, Tensor};

use crate::error::{invalid, Result};

/// How many times each id in `0..n` occurs in `ids` (any shape), as an int64 `[n]` tensor on
/// the ids' device.
///
/// An index-add of ones into `n` zeros. Unlike `bincount`, which on CUDA reads the minimum and
/// maximum id back to the host to size its output (two synchronisations per call), this never
/// leaves the device; integer additions are exact, so the result does not depend on the order
/// in which CUDA's atomics land. On CPU an id outside `0..n` is an error naming `op`; on CUDA
/// it is a device-side assertion (ids come from `topk` and the model's checked task ids).
pub fn count_ids(op: &'static str, ids: &Tensor, n: usize) -> Result<Tensor> {
    let flat = ids.reshape([-1]);
    if flat.kind() != Kind::Int64 {
        return Err(invalid(
            op,
            format!("ids must be int64, got {:?}", flat.kind()),
        ));
    }
    Tensor::zeros([n as i64], (Kind::Int64, flat.device()))
        .f_index_add(0, &flat, &flat.ones_like())
        .map_err(|_| invalid(op, format!("ids must lie in 0..{n}")))
}
