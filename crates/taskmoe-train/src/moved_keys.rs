//! Keys that moved when `[train]` was split into sections (taskmoe 0.2): a file or `--set`
//! that still uses an old key is refused with the new one named, never silently accepted;
//! `taskmoe config migrate FILE` rewrites such a file, and a checkpoint's own saved
//! `config.toml` (a record, not a user's file) is read through the same table.

use crate::error::{invalid, Result};

/// Old key (or key prefix) -> new key, in the order a migrated file lists them.
pub const MOVED_KEYS: &[(&str, &str)] = &[
    ("train.init_from", "init.from"),
    ("train.init_checkpoint", "init.checkpoint"),
    ("train.upcycle_noise", "init.upcycle_noise"),
    ("train.task_init_routing", "init.task_init_routing"),
    ("train.task_init", "init.task_init"),
    ("train.optimizer", "optim"),
    ("train.clip_grad_norm", "optim.clip_grad_norm"),
    ("train.schedule", "schedule"),
    ("train.checkpoint_every", "checkpoint.every"),
    ("train.keep_last", "checkpoint.keep_last"),
    ("train.keep_best", "checkpoint.keep_best"),
    ("train.save_optimizer", "checkpoint.save_optimizer"),
    ("train.eval_every", "eval.every"),
    ("train.eval_batch_size", "eval.batch_size"),
    ("train.test_checkpoint", "eval.test_checkpoint"),
    ("train.device", "runtime.device"),
    ("train.precision", "runtime.precision"),
    ("train.threads", "runtime.threads"),
    ("train.expert_parallel", "runtime.expert_parallel"),
];

/// The new name of `key` if it (or a table above it) moved: `train.schedule.peak_lr` ->
/// `schedule.peak_lr`.
pub(crate) fn moved_key(key: &str) -> Option<String> {
    MOVED_KEYS.iter().find_map(|(old, new)| {
        let rest = key.strip_prefix(old)?;
        (rest.is_empty() || rest.starts_with('.')).then(|| format!("{new}{rest}"))
    })
}

/// Moves every old key of `table` to its new place, returning `(old, new)` for each one moved.
/// A new key already present in the table keeps its value and the old one is dropped with it
/// reported as `(old, new)` too (the file named both; the new one wins).
pub fn migrate_table(table: &mut toml::Table) -> Vec<(String, String)> {
    let mut moved = Vec::new();
    for (old, new) in MOVED_KEYS {
        let Some(value) = take(table, old) else {
            continue;
        };
        moved.push((old.to_string(), new.to_string()));
        put(table, new, value);
    }
    moved
}

/// The error for a file that uses moved keys: each with its new name, and the command that
/// rewrites the file.
pub fn refuse_moved(origin: &str, moved: &[(String, String)]) -> crate::error::TrainError {
    let list: Vec<String> = moved
        .iter()
        .map(|(old, new)| format!("  `{old}` moved to `{new}`"))
        .collect();
    invalid(
        "config",
        format!(
            "{origin}: keys of the old `[train]` layout:\n{}\n`taskmoe config migrate {origin}` \
             prints the file in the new layout (`--write` rewrites it in place)",
            list.join("\n")
        ),
    )
}

/// Refuses a `--set` whose key moved, naming the new key.
pub fn check_override_keys(overrides: &[String]) -> Result<()> {
    for spec in overrides {
        let key = spec
            .split_once('=')
            .map_or(spec.as_str(), |(k, _)| k)
            .trim();
        if let Some(new) = moved_key(key) {
            return Err(invalid(
                "config",
                format!("--set {spec}: `{key}` moved to `{new}`"),
            ));
        }
    }
    Ok(())
}

/// Removes the value at dotted `path`, dropping tables it leaves empty.
fn take(table: &mut toml::Table, path: &str) -> Option<toml::Value> {
    match path.split_once('.') {
        None => table.remove(path),
        Some((head, rest)) => {
            let inner = table.get_mut(head)?.as_table_mut()?;
            let value = take(inner, rest);
            if inner.is_empty() {
                table.remove(head);
            }
            value
        }
    }
}

/// Puts `value` at dotted `path` unless a value is already there; tables merge key by key.
fn put(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        None => match (table.get_mut(path), value) {
            (Some(toml::Value::Table(have)), toml::Value::Table(new)) => {
                for (k, v) in new {
                    have.entry(k).or_insert(v);
                }
            }
            (Some(_), _) => {}
            (None, value) => {
                table.insert(path.to_string(), value);
            }
        },
        Some((head, rest)) => {
            let inner = table
                .entry(head)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(inner) = inner.as_table_mut() {
                put(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_keys_and_tables_move_to_their_sections() {
        assert_eq!(
            moved_key("train.schedule.peak_lr").as_deref(),
            Some("schedule.peak_lr")
        );
        assert_eq!(moved_key("train.eval_every").as_deref(), Some("eval.every"));
        assert_eq!(
            moved_key("train.task_init.new").as_deref(),
            Some("init.task_init.new")
        );
        assert_eq!(
            moved_key("train.task_init_routing").as_deref(),
            Some("init.task_init_routing")
        );
        assert_eq!(moved_key("train.steps"), None);
        assert_eq!(moved_key("train.scheduler"), None);

        let mut t: toml::Table = toml::from_str(
            "[train]\nsteps = 5\neval_every = 2\n[train.schedule]\npeak_lr = 0.1\n\
             [train.optimizer]\nbeta1 = 0.8\n[schedule]\nwarmup_steps = 3\n",
        )
        .unwrap();
        let moved = migrate_table(&mut t);
        assert_eq!(moved.len(), 3, "{moved:?}");
        assert_eq!(t["train"].as_table().unwrap().len(), 1);
        assert_eq!(t["eval"]["every"].as_integer(), Some(2));
        assert_eq!(t["schedule"]["peak_lr"].as_float(), Some(0.1));
        assert_eq!(t["schedule"]["warmup_steps"].as_integer(), Some(3));
        assert_eq!(t["optim"]["beta1"].as_float(), Some(0.8));
    }

    #[test]
    fn a_moved_set_key_is_named_with_its_new_name() {
        let err = check_override_keys(&["train.peak_lr=1".into(), "x=1".into()]);
        assert!(err.is_ok(), "train.peak_lr never existed: {err:?}");
        let err = check_override_keys(&["train.schedule.peak_lr=1".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`train.schedule.peak_lr` moved to `schedule.peak_lr`"),
            "{err}"
        );
    }
}
