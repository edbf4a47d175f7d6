//! The benchmark's task registry, generated from the task table so the two cannot drift.

use super::tasks::TASKS;
use crate::realtext;

/// The registry TOML of the benchmark (committed as `configs/pydocs/tasks.toml`): one
/// `[[tasks]]` table per task of [`TASKS`], in order, whose split paths point at
/// `data/<task>/{train,dev,test}.tsv` next to it, where [`super::write_if_changed`] puts the
/// files of [`super::extract`]. [`crate::TaskRegistry::from_toml_file`] reads it.
pub fn registry_toml() -> String {
    realtext::registry_toml(
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
        "docstring",
        "id",
        TASKS,
        |task| {
            let classes: Vec<String> = task
                .classes
                .iter()
                .map(|c| format!("{} ({})", c.label, c.about))
                .collect();
            classes.join("; ")
        },
    )
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

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
}
