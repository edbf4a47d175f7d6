//! The balanced selection of a task's split files: per label and split, the first examples
//! of the label's pool in hash order, a training example serving one task only; and the
//! task's row of the size table in `SOURCE.txt`.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::task::{ClassDef, TaskDef};

/// The first `quota` examples of `pool` (one label's usable examples of split `split`, in hash
/// order). In the training split (`split == 0`) it skips the examples whose `key` is in
/// `used_for_training` and adds the keys of those it picks, so a training example serves one
/// task only; validation and test examples may serve several. `Err(found)` when the pool
/// holds fewer than `quota`.
pub(crate) fn pick<T: Copy>(
    pool: &[T],
    split: usize,
    quota: usize,
    used_for_training: &mut HashSet<u64>,
    key: impl Fn(&T) -> u64,
) -> Result<Vec<T>, usize> {
    let picked: Vec<T> = pool
        .iter()
        .filter(|x| split != 0 || !used_for_training.contains(&key(x)))
        .take(quota)
        .copied()
        .collect();
    if picked.len() < quota {
        return Err(picked.len());
    }
    if split == 0 {
        used_for_training.extend(picked.iter().map(key));
    }
    Ok(picked)
}

/// The header line of the size table of `SOURCE.txt` (no newline), its family column
/// `family_width` wide as in [`task_row`].
pub(crate) fn task_table_header(family_width: usize) -> String {
    format!(
        "{:<13} {:<family_width$} {:<14} {:>5} {:>4} {:>5}  {}  labels",
        "task", "family", "role", "train", "dev", "test", "majority"
    )
}

/// Appends the row of `task` to the size table of `SOURCE.txt`: name, family (padded to
/// `family_width`), role, the train / dev / test sizes, the majority baseline and the labels.
pub(crate) fn task_row<C: ClassDef>(
    table: &mut String,
    task: &TaskDef<C>,
    family_width: usize,
    sizes: [usize; 3],
) {
    let labels = task.labels();
    let _ = writeln!(
        table,
        "{:<13} {:<family_width$} {:<14} {:>5} {:>4} {:>5}  {:.3}  {}",
        task.name,
        task.family,
        task.role.name(),
        sizes[0],
        sizes[1],
        sizes[2],
        1.0 / labels.len() as f64,
        labels.join(" / ")
    );
}
