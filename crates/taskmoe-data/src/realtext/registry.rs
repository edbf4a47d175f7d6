//! The registry TOML of a real-text benchmark, generated from its task table so the two
//! cannot drift.

use std::fmt::Write as _;

use super::task::{ClassDef, Role, TaskDef};

/// The registry TOML: `header` (the comment block on top), then one `[[tasks]]` table per
/// task of `tasks`, in order, headed by a comment of its role, `classes` (its labels
/// described) and sizes, with the one text field `text_field` and the id field `id_field`,
/// whose split paths point at `data/<task>/{train,dev,test}.tsv` next to it.
pub(crate) fn registry_toml<C: ClassDef>(
    header: &str,
    text_field: &str,
    id_field: &str,
    tasks: &[TaskDef<C>],
    classes: impl Fn(&TaskDef<C>) -> String,
) -> String {
    let mut t = String::from(header);
    for task in tasks {
        let n = task.classes.len();
        let labels: Vec<String> = task.labels().iter().map(|l| format!("\"{l}\"")).collect();
        let _ = write!(
            t,
            "\n# {}: {}; train / dev / test {} / {} / {}.\n[[tasks]]\nname = \"{}\"\n\
             family = \"{}\"\nkind = \"classification\"\nlabels = [{}]\n\
             text_fields = [\"{text_field}\"]\nid_field = \"{id_field}\"\n\
             metrics = [\"accuracy\"]\n",
            task.role.name(),
            classes(task),
            task.per_class[0] * n,
            task.per_class[1] * n,
            task.per_class[2] * n,
            task.name,
            task.family,
            labels.join(", "),
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
    use std::path::PathBuf;

    use super::*;
    use crate::{pydocs, wordnet, TaskRegistry};

    fn reads_back_as<C: ClassDef>(toml: &str, tasks: &[TaskDef<C>], text_field: &str) {
        let registry = TaskRegistry::from_toml_str(toml).unwrap();
        assert_eq!(registry.len(), tasks.len());
        for (spec, task) in registry.tasks().iter().zip(tasks) {
            assert_eq!(spec.name, task.name);
            assert_eq!(spec.family, task.family);
            assert_eq!(spec.held_out, task.role == Role::HeldOut, "{}", task.name);
            assert_eq!(spec.labels, task.labels(), "{}", task.name);
            assert_eq!(spec.text_fields, [text_field], "{}", task.name);
            for (split, file) in [("train", "train"), ("validation", "dev"), ("test", "test")] {
                let want = PathBuf::from(format!("data/{}/{file}.tsv", task.name));
                assert_eq!(spec.splits.get(split), Some(&want), "{} {split}", task.name);
            }
        }
    }

    #[test]
    fn the_registries_read_back_as_their_task_tables() {
        reads_back_as(&wordnet::registry_toml(), wordnet::TASKS, "gloss");
        reads_back_as(&pydocs::registry_toml(), pydocs::TASKS, "docstring");
    }
}
