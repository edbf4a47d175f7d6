//! The benchmark's task registry, generated from the task table so the two cannot drift.

use std::fmt::Write as _;

use super::tasks::{Role, TASKS};

/// The registry TOML of the benchmark (committed as `configs/pydocs/tasks.toml`): one
/// `[[tasks]]` table per task of [`TASKS`], in order, whose split paths point at
/// `data/<task>/{train,dev,test}.tsv` next to it, where [`super::write_if_changed`] puts the
/// files of [`super::extract`]. [`crate::TaskRegistry::from_toml_file`] reads it.
pub fn registry_toml() -> String {
    let mut t = String::from(
        "# The Python docstring benchmark: real text (the first paragraph of the docstrings of\n\
         # Python 3.11's standard library, Debian bookworm's libpython3.11-minimal and\n\
         # libpython3.11-stdlib 3.11.2-6+deb12u7), labelled with the area of their package or\n\
         # their form. GENERATED from the task table in crates/taskmoe-data/src/pydocs/tasks.rs\n\
         # (`cargo xtask fetch-data pydocs --write-registry`); a test checks this copy. The\n\
         # split files are written by `cargo xtask fetch-data pydocs` into data/ (git-ignored):\n\
         # run it once per checkout. docs/pydocs.md describes the tasks.\n\
         #\n\
         # Every label of a task has the same number of examples in every split (majority\n\
         # baseline 1/labels). A text is in one split for every task; a training text is in one\n\
         # task only.\n",
    );
    for task in TASKS {
        let classes: Vec<String> = task
            .classes
            .iter()
            .map(|c| format!("{} ({})", c.label, c.about))
            .collect();
        let n = task.classes.len();
        let _ = write!(
            t,
            "\n# {}: {}; train / dev / test {} / {} / {}.\n[[tasks]]\nname = \"{}\"\n\
             family = \"{}\"\nkind = \"classification\"\nlabels = [{}]\n\
             text_fields = [\"docstring\"]\nid_field = \"id\"\nmetrics = [\"accuracy\"]\n",
            task.role.name(),
            classes.join("; "),
            task.per_class[0] * n,
            task.per_class[1] * n,
            task.per_class[2] * n,
            task.name,
            task.family,
            task.classes
                .iter()
                .map(|c| format!("\"{}\"", c.label))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if task.role == Role::HeldOut {
            t.push_str("held_out = true\n");
        }
        let _ = write!(
            t,
            "[tasks.splits]\ntrain = \"data/{0}/train.tsv\"\nvalidation = \"data/{0}/dev.tsv\"\n\
             test = \"data/{0}/test.tsv\"\n",
            task.name
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::TaskRegistry;

    fn committed() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/pydocs/tasks.toml")
    }

    #[test]
    fn the_committed_registry_is_the_generated_one() {
        let committed_text = std::fs::read_to_string(committed()).unwrap_or_default();
        assert!(
            committed_text == registry_toml(),
            "{} is stale: run `cargo xtask fetch-data pydocs --write-registry`",
            committed().display()
        );
    }

    #[test]
    fn the_registry_reads_back_as_the_task_table() {
        let registry = TaskRegistry::from_toml_str(&registry_toml()).unwrap();
        assert_eq!(registry.len(), TASKS.len());
        for (spec, task) in registry.tasks().iter().zip(TASKS) {
            assert_eq!(spec.name, task.name);
            assert_eq!(spec.family, task.family);
            assert_eq!(spec.held_out, task.role == Role::HeldOut, "{}", task.name);
            let labels: Vec<&str> = task.classes.iter().map(|c| c.label).collect();
            assert_eq!(spec.labels, labels, "{}", task.name);
            assert_eq!(spec.text_fields, ["docstring"], "{}", task.name);
            for (split, file) in [("train", "train"), ("validation", "dev"), ("test", "test")] {
                let want = PathBuf::from(format!("data/{}/{file}.tsv", task.name));
                assert_eq!(spec.splits.get(split), Some(&want), "{} {split}", task.name);
            }
        }
    }
}
