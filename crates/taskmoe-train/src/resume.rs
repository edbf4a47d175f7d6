//! Whether, and from where, a run may continue: the decisions `taskmoe train` makes about a run
//! folder before it writes anything into it.
//!
//! - `--resume` needs a usable checkpoint. When there is none it is an error that says what was
//!   found (no folder, no checkpoint, or each checkpoint with the reason it was rejected) and
//!   changes no file: a resume never falls back to a fresh run.
//! - A fresh run refuses a folder that holds an earlier run's checkpoints or logs, so it never
//!   empties `metrics.jsonl` or `eval.jsonl`.
//! - A resume continues exactly only when the configuration that shapes the computation is the
//!   saved one: [`config_changes`] compares the two resolved trees key by key, and every key
//!   outside [`RESUMABLE_KEYS`] that differs is named with both values.
//! - A resume rewinds the logs to its checkpoint's step without deleting a line: the lines of
//!   the steps it will take again move to `<log>.superseded.jsonl` ([`rewind_log`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::{list_checkpoints, Latest};
use crate::error::{io_err, Result, TrainError};
use crate::run_config::RunConfig;
use crate::run_folder::{EVAL_FILE, METRICS_FILE};

/// The keys of the resolved configuration that may differ between a run's saved configuration
/// and the one it resumes with: where it runs and how often it evaluates or checkpoints, none of
/// which changes the numbers a step computes. A key ending in `.*` covers its whole section.
/// `train.steps` may change too, but with `schedule.total_steps = 0` the schedule follows
/// it, and that change is refused.
pub const RESUMABLE_KEYS: &[&str] = &[
    "output.*",
    "train.steps",
    "train.max_skipped_steps",
    "train.train_only",
    "checkpoint.*",
    "eval.*",
    "runtime.device",
    "runtime.precision",
    "runtime.expert_parallel",
    "runtime.frozen_state_cache",
    "runtime.cache_dir",
];

/// One key whose value differs between two configurations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyChange {
    /// The dotted key (`train.seed`, `model.moe.num_experts`).
    pub key: String,
    /// Its value in the saved configuration (`(absent)` when it has none).
    pub saved: String,
    /// Its value now (`(absent)` when it has none).
    pub now: String,
}

impl std::fmt::Display for KeyChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` was {}, is now {}", self.key, self.saved, self.now)
    }
}

/// Every key that differs between the saved and the current configuration and may not change on
/// resume (outside [`RESUMABLE_KEYS`]), in key order. The learning-rate schedule is compared
/// resolved, so a changed `train.steps` appears as `schedule.total_steps` when the
/// schedule follows the run's length.
pub(crate) fn config_changes(saved: &RunConfig, now: &RunConfig) -> Vec<KeyChange> {
    let flat = |cfg: &RunConfig| {
        let mut cfg = cfg.clone();
        cfg.schedule = cfg.optimizer_schedule();
        let table = toml::Table::try_from(&cfg).expect("the run config serializes to TOML");
        let mut out = std::collections::BTreeMap::new();
        flatten("", &toml::Value::Table(table), &mut out);
        out
    };
    let (a, b) = (flat(saved), flat(now));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let absent = || "(absent)".to_string();
    keys.into_iter()
        .filter(|key| !resumable(key) && a.get(*key) != b.get(*key))
        .map(|key| KeyChange {
            key: key.clone(),
            saved: a.get(key).map_or_else(absent, ToString::to_string),
            now: b.get(key).map_or_else(absent, ToString::to_string),
        })
        .collect()
}

/// Whether `key` is one of [`RESUMABLE_KEYS`] (or inside a section listed there).
fn resumable(key: &str) -> bool {
    RESUMABLE_KEYS.iter().any(|r| match r.strip_suffix(".*") {
        Some(section) => key.starts_with(&format!("{section}.")),
        None => key == *r || key.starts_with(&format!("{r}.")),
    })
}

/// Flattens tables into dotted keys; values (arrays included) stay whole.
fn flatten(
    prefix: &str,
    value: &toml::Value,
    out: &mut std::collections::BTreeMap<String, toml::Value>,
) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The refusal of a resume whose configuration changed: every differing key with both values.
pub(crate) fn refuse_changes(
    checkpoint: &Path,
    saved_config: &Path,
    changes: &[KeyChange],
) -> TrainError {
    let list: Vec<String> = changes.iter().map(|c| format!("  {c}")).collect();
    TrainError::ConfigChanged {
        checkpoint: checkpoint.to_path_buf(),
        changes: format!(
            "{}\nonly these may change on resume: {}; resume with the run's own configuration \
             ({}), or `taskmoe train --run DIR --resume`",
            list.join("\n"),
            RESUMABLE_KEYS.join(", "),
            saved_config.display()
        ),
    }
}

/// The error of a `--resume` that found nothing to resume from in `run_dir`: what is there and
/// why each checkpoint was rejected.
pub(crate) fn nothing_to_resume(run_dir: &Path, latest: &Latest) -> TrainError {
    let found = if !run_dir.exists() {
        "the folder does not exist (a run folder that was moved resumes where it now is with \
         `taskmoe train --run DIR --resume`)"
            .to_string()
    } else if latest.skipped.is_empty() {
        let logged = logged_steps(&run_dir.join(METRICS_FILE));
        format!(
            "it holds no checkpoint-* folder{}",
            match logged {
                0 => String::new(),
                n => format!(
                    " ({METRICS_FILE} logs {n} steps: the run stopped before its first \
                     checkpoint; start it again without --resume once its logs are moved away)"
                ),
            }
        )
    } else {
        let rejected: Vec<String> = latest
            .skipped
            .iter()
            .map(|(dir, why)| format!("  {}: {why}", dir.display()))
            .collect();
        format!(
            "no checkpoint is usable, each was rejected:\n{}",
            rejected.join("\n")
        )
    };
    TrainError::NothingToResume {
        run_dir: run_dir.to_path_buf(),
        found,
    }
}

/// Refuses a fresh run in a folder that holds an earlier run: checkpoints (usable or not) or a
/// non-empty training log, either of which a fresh start would overwrite.
pub(crate) fn check_fresh_folder(run_dir: &Path) -> Result<()> {
    let checkpoints = list_checkpoints(run_dir)?;
    let logs: Vec<String> = [METRICS_FILE, EVAL_FILE]
        .iter()
        .filter(|f| fs::metadata(run_dir.join(f)).is_ok_and(|m| m.len() > 0))
        .map(|f| f.to_string())
        .collect();
    if checkpoints.is_empty() && logs.is_empty() {
        return Ok(());
    }
    let held = if checkpoints.is_empty() {
        format!("the logs of an earlier run ({})", logs.join(", "))
    } else {
        "checkpoints".to_string()
    };
    Err(TrainError::RunExists {
        run_dir: run_dir.to_path_buf(),
        held,
    })
}

/// The number of lines of a JSONL log that carry a step (0 when the file is absent).
fn logged_steps(path: &Path) -> usize {
    fs::read_to_string(path)
        .map(|t| t.lines().filter(|l| l.contains("\"step\"")).count())
        .unwrap_or(0)
}

/// The file that keeps the lines a resume took out of `log`: `metrics.jsonl` ->
/// `metrics.superseded.jsonl`.
pub(crate) fn superseded_path(log: &Path) -> PathBuf {
    let stem = log
        .file_stem()
        .map_or_else(Default::default, |s| s.to_string_lossy().into_owned());
    log.with_file_name(format!("{stem}.superseded.jsonl"))
}

/// Rewinds a JSONL log to `step` for a resume from that step's checkpoint: the lines with a
/// `step` of at most `step` stay; the others (the steps the resumed run takes again, and a line
/// cut short by a kill) are appended to [`superseded_path`] before the log is replaced
/// atomically, so no line is ever deleted. Returns how many lines moved.
pub(crate) fn rewind_log(path: &Path, step: u64) -> Result<usize> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(path)(e)),
    };
    let text = String::from_utf8_lossy(&bytes);
    let (mut kept, mut moved) = (String::new(), String::new());
    let mut count = 0;
    for line in text.lines() {
        let keep = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("step").and_then(serde_json::Value::as_u64))
            .is_some_and(|s| s <= step);
        let to = if keep { &mut kept } else { &mut moved };
        to.push_str(line);
        to.push('\n');
        count += usize::from(!keep);
    }
    if count == 0 {
        return Ok(0);
    }
    let aside = superseded_path(path);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&aside)
        .map_err(io_err(&aside))?;
    file.write_all(moved.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(io_err(&aside))?;
    let tmp = path.with_extension("jsonl.tmp");
    fs::write(&tmp, kept).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_named_with_both_values_and_resumable_ones_pass() {
        let saved = RunConfig::default();
        let mut now = saved.clone();
        now.eval.every = 7;
        now.checkpoint.keep_last = 5;
        now.output.name = "elsewhere".into();
        assert!(config_changes(&saved, &now).is_empty());
        now.train.seed = 3;
        now.model.num_layers += 1;
        let changes = config_changes(&saved, &now);
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["model.num_layers", "train.seed"], "{changes:?}");
        assert_eq!(changes[1].saved, "0");
        assert_eq!(changes[1].now, "3");
    }

    #[test]
    fn more_steps_are_refused_only_when_the_schedule_follows_them() {
        let saved = RunConfig::default();
        let mut now = saved.clone();
        now.train.steps += 100;
        let changes = config_changes(&saved, &now);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].key, "schedule.total_steps");
        let mut fixed = saved.clone();
        fixed.schedule.total_steps = 4000;
        let mut longer = fixed.clone();
        longer.train.steps = 5000;
        assert!(config_changes(&fixed, &longer).is_empty());
    }

    #[test]
    fn a_rewound_log_keeps_every_line_somewhere() {
        let dir = std::env::temp_dir().join(format!("taskmoe-rewind-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("metrics.jsonl");
        fs::write(&log, "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"st").unwrap();
        assert_eq!(rewind_log(&log, 2).unwrap(), 2);
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "{\"step\":1}\n{\"step\":2}\n"
        );
        let aside = dir.join("metrics.superseded.jsonl");
        assert_eq!(fs::read_to_string(&aside).unwrap(), "{\"step\":3}\n{\"st\n");
        assert_eq!(rewind_log(&log, 2).unwrap(), 0, "nothing left to move");
        fs::remove_dir_all(&dir).unwrap();
    }
}
