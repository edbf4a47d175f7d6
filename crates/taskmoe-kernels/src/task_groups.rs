//! Rows grouped by task: the dispatch of the `per-task` router and of the task heads.

use tch::{Kind, Tensor};

use crate::error::{invalid, Result};
use crate::layout::GroupLayout;

/// A stable grouping of rows (tokens or examples) by their task id: the `k = 1`, dropless
/// case of a [`crate::DispatchPlan`], where the "expert" of a row is its task.
///
/// With it, a per-task linear map (`x W_t` for each row's task `t`) costs exactly one
/// `[rows, d] x [d, out]` product: gather the rows into task order, run
/// [`crate::grouped_matmul`] (or [`crate::grouped_mm`]) over the per-task slices, and gather
/// the results back with [`TaskGroups::ungroup`]. Both gathers are by permutations, so their
/// backward passes add into distinct rows: deterministic, no atomics with repeated indices.
///
/// The host needs the per-task counts to slice; [`TaskGroups::new`] reads them back (one
/// `[tasks]` transfer), [`TaskGroups::with_counts`] takes them from a caller that already
/// knows them (the model derives them from the task ids and lengths it reads once per batch),
/// and then nothing crosses between host and device.
#[derive(Debug)]
pub struct TaskGroups {
    /// Rows of each task in task order, as the grouped matmuls take them.
    pub layout: GroupLayout,
    /// Row index of each grouped row: rows sorted stably by task. `[N]` int64
    pub order: Tensor,
    /// Grouped position of each row (the inverse permutation of `order`). `[N]` int64
    pub inverse: Tensor,
}

impl TaskGroups {
    /// Groups `task_ids` (`[N]` int64, each in `0..num_tasks`), reading the per-task counts
    /// back to the host once.
    pub fn new(task_ids: &Tensor, num_tasks: usize) -> Result<Self> {
        const OP: &str = "TaskGroups::new";
        let counts_t = crate::count::count_ids(OP, task_ids, num_tasks)?;
        let counts: Vec<i64> = Vec::try_from(&counts_t)?;
        Self::build(
            task_ids,
            counts.into_iter().map(|c| c as usize).collect(),
            counts_t,
        )
    }

    /// Groups `task_ids` whose per-task counts (`counts[t]` rows of task `t`, one entry per
    /// task) the caller already knows on the host: nothing is read back or copied up (the
    /// device counts the ids itself). `counts` must be the true counts; only their sum is
    /// checked, against the number of rows.
    pub fn with_counts(task_ids: &Tensor, counts: Vec<usize>) -> Result<Self> {
        let counts_t = crate::count::count_ids("TaskGroups::with_counts", task_ids, counts.len())?;
        Self::build(task_ids, counts, counts_t)
    }

    fn build(task_ids: &Tensor, counts: Vec<usize>, counts_t: Tensor) -> Result<Self> {
        const OP: &str = "TaskGroups";
        let size = task_ids.size();
        if size.len() != 1 || task_ids.kind() != Kind::Int64 {
            return Err(invalid(
                OP,
                format!(
                    "task_ids must be [N] int64, got {size:?} {:?}",
                    task_ids.kind()
                ),
            ));
        }
        let n = size[0];
        if counts.iter().sum::<usize>() as i64 != n {
            return Err(invalid(
                OP,
                format!(
                    "counts sum to {} but there are {n} rows",
                    counts.iter().sum::<usize>()
                ),
            ));
        }
        let device = task_ids.device();
        let (_, order) = task_ids.sort_stable(true, 0, false);
        let inverse = Tensor::zeros([n], (Kind::Int64, device)).index_copy(
            0,
            &order,
            &Tensor::arange(n, (Kind::Int64, device)),
        );
        let layout = GroupLayout::from_device(counts, &counts_t)?;
        Ok(TaskGroups {
            layout,
            order,
            inverse,
        })
    }

    /// Number of grouped rows `N`.
    pub fn num_rows(&self) -> usize {
        self.layout.num_rows()
    }

    /// Rows of `x` in task order.
    ///
    /// # Shapes
    /// `x: [N, ...]` -> `[N, ...]`.
    pub fn group(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_index_select(0, &self.order)?)
    }

    /// Task-ordered rows back in their original order (the inverse of [`TaskGroups::group`]).
    ///
    /// # Shapes
    /// `rows: [N, ...]` -> `[N, ...]`.
    pub fn ungroup(&self, rows: &Tensor) -> Result<Tensor> {
        Ok(rows.f_index_select(0, &self.inverse)?)
    }
}
