//! The split files of every task of a real-text benchmark ([`split_files`]): per label and
//! split the first examples of the label's pool in hash order, a training example serving one
//! task only, the files' fingerprint, and each task's row of the size table in `SOURCE.txt`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use super::fingerprint::{fnv1a, FNV_OFFSET};
use super::task::{ClassDef, TaskDef};
use crate::error::DataError;

/// The split file names (`<task>/<name>.tsv`) of the train, validation and test splits.
pub const SPLIT_FILES: [&str; 3] = ["train", "dev", "test"];

/// The first `quota` examples of `pool` (one label's usable examples of split `split`, in hash
/// order). In the training split (`split == 0`) it skips the examples whose `key` is in
/// `used_for_training` and adds the keys of those it picks, so a training example serves one
/// task only; validation and test examples may serve several. `Err(found)` when the pool
/// holds fewer than `quota`.
fn pick<T: Copy>(
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

/// What a benchmark's builder gives [`split_files`]: its pools of usable examples per label
/// and split, how an example is keyed, ordered and written, and the error for a short pool.
pub(crate) trait SplitSource<C> {
    /// One usable example (a reference or a small copyable tuple).
    type Item: Copy;
    /// The header line of every split file (column names, tab-separated, no newline).
    const HEADER: &'static str;
    /// The usable examples of `class` in split `split` (0 train, 1 dev, 2 test), in hash
    /// order; empty where the class has none.
    fn pool(&self, class: &C, split: usize) -> &[Self::Item];
    /// The example's key: a training example serves one task only, by key.
    fn key(item: &Self::Item) -> u64;
    /// Where the example stands in a split file (its hash order).
    fn order(item: &Self::Item) -> (u64, u64);
    /// Appends the example's line (with its newline) under label `label`.
    fn write_row(text: &mut String, item: &Self::Item, label: &str);
    /// The error for a pool of `found` examples where `task`'s `class` needs `wanted` in
    /// split file `split`.
    fn too_few(task: &str, class: &C, split: &str, found: usize, wanted: usize) -> DataError;
}

/// The split files of every task of a benchmark, their fingerprint and the size table.
pub(crate) struct SplitFiles {
    /// `<task>/{train,dev,test}.tsv` -> content.
    pub files: BTreeMap<String, String>,
    /// FNV-1a over every file's path and content, in task and split order.
    pub fingerprint: u64,
    /// The size table's rows ([`task_row`]), one per task.
    pub table: String,
}

/// Writes every task's split files from `source`'s pools: per label and split the first
/// examples in hash order ([`pick`]), the rows of a file in hash order, the fingerprint over
/// paths and contents, and the size table with its family column `family_width` wide.
pub(crate) fn split_files<C: ClassDef, S: SplitSource<C>>(
    tasks: &[TaskDef<C>],
    family_width: usize,
    source: &S,
) -> crate::error::Result<SplitFiles> {
    let mut out = SplitFiles {
        files: BTreeMap::new(),
        fingerprint: FNV_OFFSET,
        table: String::new(),
    };
    let mut used_for_training: HashSet<u64> = HashSet::new();
    for task in tasks {
        let mut sizes = [0usize; 3];
        for (split, file) in SPLIT_FILES.iter().enumerate() {
            let quota = task.per_class[split];
            let mut rows: Vec<(S::Item, &str)> = Vec::new();
            for c in task.classes {
                let pool = source.pool(c, split);
                let picked = pick(pool, split, quota, &mut used_for_training, S::key)
                    .map_err(|found| S::too_few(task.name, c, file, found, quota))?;
                rows.extend(picked.into_iter().map(|x| (x, c.label())));
            }
            rows.sort_by_key(|(x, _)| S::order(x));
            let mut text = format!("{}\n", S::HEADER);
            for (x, label) in &rows {
                S::write_row(&mut text, x, label);
            }
            let path = format!("{}/{file}.tsv", task.name);
            out.fingerprint = fnv1a(fnv1a(out.fingerprint, path.as_bytes()), text.as_bytes());
            sizes[split] = rows.len();
            out.files.insert(path, text);
        }
        task_row(&mut out.table, task, family_width, sizes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtext::Role;

    /// A label of the toy benchmark: its pool is the numbers `base..base + 10` in every split.
    struct Toy {
        label: &'static str,
        base: u64,
    }

    impl ClassDef for Toy {
        fn label(&self) -> &'static str {
            self.label
        }
    }

    /// Pools in hash order (descending numbers: the order key is the number reversed); a
    /// file's rows, gathered label by label, must be re-sorted into that order across labels.
    struct ToyPools(Vec<Vec<u64>>);

    impl SplitSource<Toy> for ToyPools {
        type Item = u64;
        const HEADER: &'static str = "n\tlabel";

        fn pool(&self, c: &Toy, _split: usize) -> &[u64] {
            &self.0[(c.base / 10) as usize]
        }
        fn key(n: &u64) -> u64 {
            *n
        }
        fn order(n: &u64) -> (u64, u64) {
            (u64::MAX - n, *n)
        }
        fn write_row(text: &mut String, n: &u64, label: &str) {
            let _ = writeln!(text, "{n}\t{label}");
        }
        fn too_few(task: &str, c: &Toy, split: &str, found: usize, wanted: usize) -> DataError {
            let (task, label, split) = (task.into(), c.label.into(), split.into());
            DataError::TooFewDocstrings {
                task,
                label,
                split,
                found,
                wanted,
            }
        }
    }

    const CLASSES: [Toy; 2] = [
        Toy {
            label: "a",
            base: 0,
        },
        Toy {
            label: "b",
            base: 10,
        },
    ];

    fn task(name: &'static str, per_class: [usize; 3]) -> TaskDef<Toy> {
        TaskDef {
            name,
            family: "toy",
            role: Role::High,
            classes: &CLASSES,
            per_class,
        }
    }

    fn pools() -> ToyPools {
        // In hash order: descending numbers.
        ToyPools(vec![(0..10).rev().collect(), (10..20).rev().collect()])
    }

    #[test]
    fn a_training_example_serves_one_task_and_files_are_in_hash_order() {
        let tasks = [task("one", [3, 2, 2]), task("two", [3, 2, 2])];
        let out = split_files(&tasks, 4, &pools()).unwrap();
        // Task one takes each label's first three in hash order; task two the next three in
        // training, the same dev and test rows (they may serve several tasks).
        assert_eq!(
            out.files["one/train.tsv"],
            "n\tlabel\n19\tb\n18\tb\n17\tb\n9\ta\n8\ta\n7\ta\n"
        );
        assert_eq!(
            out.files["two/train.tsv"],
            "n\tlabel\n16\tb\n15\tb\n14\tb\n6\ta\n5\ta\n4\ta\n"
        );
        assert_eq!(out.files["one/dev.tsv"], out.files["two/dev.tsv"]);
        assert_eq!(
            out.files["one/test.tsv"],
            "n\tlabel\n19\tb\n18\tb\n9\ta\n8\ta\n"
        );
        assert_eq!(out.files.len(), 6);
        assert_eq!(out.table.lines().count(), 2);
        assert!(out
            .table
            .starts_with("one           toy  high-resource      6    4     4"));
        // The fingerprint covers every file: one row of task two's training file changes it.
        let mut other = pools();
        other.0[0][5] = 99;
        let changed = split_files(&tasks, 4, &other).unwrap();
        assert_eq!(changed.files["one/train.tsv"], out.files["one/train.tsv"]);
        assert_ne!(changed.files["two/train.tsv"], out.files["two/train.tsv"]);
        assert_ne!(changed.fingerprint, out.fingerprint);
        // An example past every quota changes nothing.
        let mut unused = pools();
        unused.0[0][9] = 99;
        assert_eq!(
            split_files(&tasks, 4, &unused).unwrap().fingerprint,
            out.fingerprint
        );
    }

    #[test]
    fn a_short_pool_names_task_label_split_and_counts() {
        let tasks = [task("one", [4, 1, 1]), task("two", [7, 1, 1])];
        let err = split_files(&tasks, 4, &pools()).err().unwrap();
        assert!(
            matches!(&err, DataError::TooFewDocstrings { task, label, split, found: 6, wanted: 7 }
                if task == "two" && label == "a" && split == "train"),
            "{err}"
        );
    }
}
