//! Where each group's rows lie, in the forms the grouped matmuls take.

use tch::{Device, Kind, Tensor};

use crate::error::{invalid, Result};

/// Rows grouped into consecutive slices (by expert, or by task): group `g` owns the
/// `counts[g]` rows after those of groups `0..g`.
///
/// The per-group loop of [`crate::grouped_matmul`] slices with the host `counts`; the one
/// `_grouped_mm` call of [`crate::grouped_mm`] takes the device `ends` instead, and adds
/// biases by the device `row_group`.
#[derive(Debug)]
pub struct GroupLayout {
    /// Rows of each group. `[G]` on the host
    pub counts: Vec<usize>,
    /// Cumulative ends of the groups, int32 on the rows' device (libtorch's `offs`). `[G]`
    pub ends: Tensor,
    /// Group of each row. `[R]` int64 on the rows' device
    pub row_group: Tensor,
}

impl GroupLayout {
    /// A layout from host counts (copied up to `device`: on CUDA that copy synchronises;
    /// the dispatch plan and the task groups derive theirs on the device instead).
    pub fn from_counts(counts: &[usize], device: Device) -> Self {
        let counts_t = Tensor::from_slice(&counts.iter().map(|&c| c as i64).collect::<Vec<_>>())
            .to_device(device);
        Self::from_device(counts.to_vec(), &counts_t).expect("host counts agree with themselves")
    }

    /// A layout whose counts the device already holds (`counts_t`, int64 `[G]`, equal to
    /// `counts`): nothing is copied between host and device.
    pub fn from_device(counts: Vec<usize>, counts_t: &Tensor) -> Result<Self> {
        if counts_t.size() != [counts.len() as i64] {
            return Err(invalid(
                "GroupLayout",
                format!(
                    "{} host counts but a device tensor of shape {:?}",
                    counts.len(),
                    counts_t.size()
                ),
            ));
        }
        let rows: usize = counts.iter().sum();
        let device = counts_t.device();
        let groups = Tensor::arange(counts.len() as i64, (Kind::Int64, device));
        let row_group = Tensor::f_repeat_interleave_self_tensor(&groups, counts_t, 0, rows as i64)?;
        Ok(GroupLayout {
            counts,
            ends: counts_t.cumsum(0, Kind::Int),
            row_group,
        })
    }

    /// A layout from host counts for a grouped matmul that runs on `path`: the grouped GEMM
    /// takes the device form ([`GroupLayout::from_counts`]), the per-group loop only the host
    /// counts (nothing is copied to the device).
    pub fn for_path(counts: &[usize], device: Device, path: crate::GemmPath) -> Self {
        match path {
            crate::GemmPath::Grouped => Self::from_counts(counts, device),
            crate::GemmPath::Loop => GroupLayout {
                counts: counts.to_vec(),
                ends: Tensor::new(),
                row_group: Tensor::new(),
            },
        }
    }

    /// Rows `R` in all groups.
    pub fn num_rows(&self) -> usize {
        self.counts.iter().sum()
    }
}
