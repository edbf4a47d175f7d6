//! The benchmark's task registry, generated from the task table so the two cannot drift.

use super::tasks::TASKS;
use crate::realtext;

/// The registry TOML of the benchmark (committed as `configs/wordnet/tasks.toml`): one
/// `[[tasks]]` table per task of [`TASKS`], in order, whose split paths point at
/// `data/<task>/{train,dev,test}.tsv` next to it, where [`super::write_if_changed`] puts the
/// files of [`super::extract`]. [`crate::TaskRegistry::from_toml_file`] reads it.
pub fn registry_toml() -> String {
    realtext::registry_toml(
        "# The WordNet gloss benchmark: real text (WordNet 3.0 definitions, Debian's wordnet-base\n\
         # 1:3.0-37), labelled with their supersense. GENERATED from the task table in\n\
         # crates/taskmoe-data/src/wordnet/tasks.rs (`cargo xtask fetch-data wordnet\n\
         # --write-registry`); a test checks this copy. The split files are written by\n\
         # `cargo xtask fetch-data wordnet` into data/ (git-ignored): run it once per checkout.\n\
         # docs/realtext.md describes the tasks.\n\
         #\n\
         # Every label of a task has the same number of examples in every split (majority\n\
         # baseline 1/labels). A synset (and its definition) is in one split for every task; a\n\
         # training synset is in one task only.\n",
        "gloss",
        "synset",
        TASKS,
        |task| {
            let classes: Vec<String> = task
                .classes
                .iter()
                .map(|c| format!("{} = {}", c.label, c.lexname))
                .collect();
            classes.join(", ")
        },
    )
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn committed() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/wordnet/tasks.toml")
    }

    #[test]
    fn the_committed_registry_is_the_generated_one() {
        let committed_text = std::fs::read_to_string(committed()).unwrap_or_default();
        assert!(
            committed_text == registry_toml(),
            "{} is stale: run `cargo xtask fetch-data wordnet --write-registry`",
            committed().display()
        );
    }
}
