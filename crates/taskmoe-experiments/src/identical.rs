//! Whether two runs made the same computation, bit for bit (`taskmoe compare --identical A B`).
//!
//! A change that should not move any number (a refactor, a new configuration key with a
//! default that keeps the old behaviour, another build profile, another machine of the same
//! kind) is shown not to by training the same configuration with both builds and comparing the
//! run folders: every checkpoint's tensors (model and optimizer state: the files' bytes, or
//! where those differ each tensor's raw bytes), its trainer state and task list, the logged
//! training steps and evaluations, and the final test results and predictions. The
//! wall-clock fields the trainer writes ([`WALL_CLOCK_KEYS`], at the top level of each JSON
//! line or document) are left out; every other JSON number is compared as the exact `f64` its
//! text denotes (the workspace builds `serde_json` with `float_roundtrip`). The resolved
//! configurations are compared key by key (without `output.*`, which names the folder) and
//! reported beside the outputs, not counted among them, since a newer build resolves keys an
//! older one did not have. A `single-task` run (one run folder per task under a folder of
//! combined results) is compared sub-run by sub-run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use taskmoe_train::{list_checkpoints, EVAL_FILE, MANIFEST_FILE, METRICS_FILE};
use taskmoe_train::{MODEL_CARD_FILE, RUN_CONFIG_FILE};
use tch::{Kind, Tensor};

use crate::error::{bail, Context, Result};
use crate::report::{header, md_table};

/// The top-level JSON keys of the run's logs and trainer state that hold wall-clock
/// measurements (timestamps, durations, throughput): left out of the comparison. Only at the
/// top level of a line or document, where the trainer writes them: deeper, keys are data (a
/// task or label may be called `time`).
pub const WALL_CLOCK_KEYS: &[&str] = &["time", "elapsed_s", "elapsed_secs", "tokens_per_s"];

/// Checkpoint files not compared as outputs: the configuration and the model card made from it
/// (the run's configuration is compared key by key instead) and the manifest, which holds
/// their hashes.
const CHECKPOINT_FILES_SKIPPED: &[&str] = &[MANIFEST_FILE, MODEL_CARD_FILE, RUN_CONFIG_FILE];

/// One output file of both runs, compared.
#[derive(Clone, Debug, Serialize)]
pub struct FileCheck {
    /// The path relative to the run folder.
    pub file: String,
    /// Whether both runs hold it with the same content (wall-clock keys left out).
    pub identical: bool,
    /// How it was compared, or where it first differs.
    pub detail: String,
}

/// Two run folders compared file by file.
#[derive(Clone, Debug, Serialize)]
pub struct RunIdentity {
    /// Run a.
    pub a: PathBuf,
    /// Run b.
    pub b: PathBuf,
    /// Whether every output file is identical in both runs.
    pub identical: bool,
    /// Every output file either run holds, in path order.
    pub files: Vec<FileCheck>,
    /// The resolved configurations' differences, one line per key (`output.*` left out).
    pub config_differences: Vec<String>,
}

impl RunIdentity {
    /// How many output files differ.
    pub fn differing(&self) -> usize {
        self.files.iter().filter(|f| !f.identical).count()
    }

    /// The comparison as markdown: one row per file, the configuration, the verdict.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Are two runs the same computation?\n");
        let _ = writeln!(md, "- a: `{}`", self.a.display());
        let _ = writeln!(md, "- b: `{}`\n", self.b.display());
        let rows: Vec<Vec<String>> = self
            .files
            .iter()
            .map(|f| {
                let result = if f.identical {
                    "identical"
                } else {
                    "**differs**"
                };
                vec![f.file.clone(), format!("{result}: {}", f.detail)]
            })
            .collect();
        md.push_str(&md_table(&header(&["file", "result"]), &rows));
        let _ = writeln!(
            md,
            "\nWall-clock keys left out of the JSON files (top level): {}.\n",
            WALL_CLOCK_KEYS.join(", ")
        );
        match self.config_differences.is_empty() {
            true => md.push_str("Resolved configurations: identical (`output.*` left out).\n"),
            false => {
                let _ = writeln!(
                    md,
                    "Resolved configurations differ in {} key(s) (`output.*` left out; not counted \
                     among the outputs):",
                    self.config_differences.len()
                );
                for line in &self.config_differences {
                    let _ = writeln!(md, "- {line}");
                }
            }
        }
        let _ = match self.identical {
            true => writeln!(
                md,
                "\n**Outputs identical**: {} of {} files.",
                self.files.len(),
                self.files.len()
            ),
            false => writeln!(
                md,
                "\n**Outputs differ** in {} of {} files.",
                self.differing(),
                self.files.len()
            ),
        };
        md
    }
}

/// Compares the run folders `a` and `b` (each with its saved configuration, or a
/// `single-task` run's folder of per-task run folders): every output file either holds, and
/// their resolved configurations. An error when a folder is not a run or neither holds any
/// output.
pub fn identical(a: &Path, b: &Path) -> Result<RunIdentity> {
    let (runs_a, runs_b) = (runs_in(a)?, runs_in(b)?);
    let names: BTreeSet<String> = output_files(a, &runs_a)?
        .into_iter()
        .chain(output_files(b, &runs_b)?)
        .collect();
    if names.is_empty() {
        bail!(
            "neither {} nor {} holds an output to compare (no logs, results or checkpoints)",
            a.display(),
            b.display()
        );
    }
    let mut files = Vec::new();
    for name in names {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let check = match (pa.is_file(), pb.is_file()) {
            (true, true) => compare_file(&pa, &pb)?,
            (true, false) => Err("only in a".to_string()),
            (false, true) => Err("only in b".to_string()),
            (false, false) => Err("a file in neither run".to_string()),
        };
        files.push(FileCheck {
            file: name,
            identical: check.is_ok(),
            detail: check.unwrap_or_else(|why| why),
        });
    }
    let mut config_differences = Vec::new();
    for run in runs_a.union(&runs_b) {
        let prefix = match run.is_empty() {
            true => String::new(),
            false => format!("{run}: "),
        };
        let (ca, cb) = (
            a.join(run).join(RUN_CONFIG_FILE),
            b.join(run).join(RUN_CONFIG_FILE),
        );
        match (ca.is_file(), cb.is_file()) {
            (true, true) => config_differences.extend(
                differences(&ca, &cb)?
                    .into_iter()
                    .map(|line| format!("{prefix}{line}")),
            ),
            (only_a, _) => config_differences.push(format!(
                "{prefix}a run only in {}",
                if only_a { "a" } else { "b" }
            )),
        }
    }
    Ok(RunIdentity {
        a: a.to_path_buf(),
        b: b.to_path_buf(),
        identical: files.iter().all(|f| f.identical),
        files,
        config_differences,
    })
}

/// The runs of folder `dir`, as paths relative to it: `""` when it holds a saved
/// configuration, else each subfolder that does (a `single-task` run's per-task runs; a run's
/// own checkpoint folders, which hold a copy of its configuration, are not runs). An error
/// when there is none.
fn runs_in(dir: &Path) -> Result<BTreeSet<String>> {
    let mut runs = BTreeSet::new();
    if dir.join(RUN_CONFIG_FILE).is_file() {
        runs.insert(String::new());
    } else if dir.is_dir() {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.join(RUN_CONFIG_FILE).is_file() {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                runs.insert(name.unwrap_or_default());
            }
        }
    }
    if runs.is_empty() {
        bail!(
            "{} is not a run folder (it has no {RUN_CONFIG_FILE}, nor a subfolder with one)",
            dir.display()
        );
    }
    Ok(runs)
}

/// The output files of folder `dir` and of its `runs` (see [`runs_in`]), relative to `dir`:
/// the training and evaluation logs, the final (and `taskmoe eval`) results, and every
/// checkpoint's files but its configuration, model card and manifest. Plots and event files
/// are renderings of these and are not listed.
fn output_files(dir: &Path, runs: &BTreeSet<String>) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let folders = std::iter::once(String::new()).chain(runs.iter().cloned());
    for run in folders.collect::<BTreeSet<String>>() {
        let run_dir = dir.join(&run);
        let at = |name: &str| match run.is_empty() {
            true => name.to_string(),
            false => format!("{run}/{name}"),
        };
        let entries = std::fs::read_dir(&run_dir)
            .with_context(|| format!("reading {}", run_dir.display()))?;
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let logged = name == METRICS_FILE || name == EVAL_FILE;
            let results = (name.starts_with("final-") || name.starts_with("eval-"))
                && (name.ends_with(".json") || name.ends_with(".jsonl"));
            if logged || results {
                names.push(at(&name));
            }
        }
        for (_, checkpoint) in list_checkpoints(&run_dir)? {
            let folder = checkpoint
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let folder = folder.unwrap_or_default();
            let entries = std::fs::read_dir(&checkpoint)
                .with_context(|| format!("reading {}", checkpoint.display()))?;
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if !CHECKPOINT_FILES_SKIPPED.contains(&name.as_str()) {
                    names.push(at(&format!("{folder}/{name}")));
                }
            }
        }
    }
    Ok(names)
}

/// `Ok(how it was compared)` when the two files hold the same content, `Err(where they first
/// differ)` when not; an error when one cannot be read.
fn compare_file(a: &Path, b: &Path) -> Result<std::result::Result<String, String>> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (bytes_a, bytes_b) = (read(a)?, read(b)?);
    let name = a.to_string_lossy();
    if name.ends_with(".safetensors") {
        return match bytes_a == bytes_b {
            true => Ok(Ok(format!("the same bytes ({} B)", bytes_a.len()))),
            false => compare_tensors(a, b),
        };
    }
    let jsonl = name.ends_with(".jsonl");
    if !(jsonl || name.ends_with(".json")) || bytes_a == bytes_b {
        return Ok(match bytes_a == bytes_b {
            true => Ok(format!("the same bytes ({} B)", bytes_a.len())),
            false => Err(format!("{} B against {} B", bytes_a.len(), bytes_b.len())),
        });
    }
    // A line that does not parse (a run killed while writing it) is a difference, not an error.
    let parse = |bytes: &[u8], side: &str| -> std::result::Result<Vec<Value>, String> {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = match jsonl {
            true => text.lines().filter(|l| !l.trim().is_empty()).collect(),
            false => vec![&text],
        };
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map(without_wall_clock)
                    .map_err(|e| match jsonl {
                        true => format!("line {} of {side} does not parse: {e}", i + 1),
                        false => format!("{side} does not parse: {e}"),
                    })
            })
            .collect()
    };
    let (values_a, values_b) = match (parse(&bytes_a, "a"), parse(&bytes_b, "b")) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(why), _) | (_, Err(why)) => return Ok(Err(why)),
    };
    for (i, (va, vb)) in values_a.iter().zip(&values_b).enumerate() {
        if let Some(at) = first_difference(va, vb, "") {
            return Ok(Err(match jsonl {
                true => format!("line {}: {at}", i + 1),
                false => at,
            }));
        }
    }
    if values_a.len() != values_b.len() {
        return Ok(Err(format!(
            "{} lines against {}",
            values_a.len(),
            values_b.len()
        )));
    }
    Ok(Ok(match jsonl {
        true => format!("{} lines equal but for wall-clock keys", values_a.len()),
        false => "equal but for wall-clock keys".to_string(),
    }))
}

/// The tensors of two safetensors files whose bytes differ, compared by name, kind, shape and
/// raw bytes (so -0.0 is not 0.0, and a NaN equals only the same NaN): `Ok` when only the
/// files' metadata or tensor order differ.
fn compare_tensors(a: &Path, b: &Path) -> Result<std::result::Result<String, String>> {
    let load = |p: &Path| -> Result<BTreeMap<String, Tensor>> {
        Ok(Tensor::read_safetensors(p)
            .with_context(|| format!("reading {}", p.display()))?
            .into_iter()
            .collect())
    };
    let (ta, tb) = (load(a)?, load(b)?);
    let mut problems = Vec::new();
    let only = |x: &BTreeMap<String, Tensor>, y: &BTreeMap<String, Tensor>| -> Vec<String> {
        x.keys().filter(|k| !y.contains_key(*k)).cloned().collect()
    };
    for (side, names) in [("a", only(&ta, &tb)), ("b", only(&tb, &ta))] {
        if !names.is_empty() {
            problems.push(format!("only in {side}: {}", names.join(", ")));
        }
    }
    let mut differing = 0;
    let mut largest: Option<(f64, String)> = None;
    for (name, x) in &ta {
        let Some(y) = tb.get(name) else { continue };
        if x.kind() != y.kind() || x.size() != y.size() {
            problems.push(format!(
                "{name}: {:?} {:?} against {:?} {:?}",
                x.kind(),
                x.size(),
                y.kind(),
                y.size()
            ));
            continue;
        }
        // Each tensor's raw bytes (flattened first: a 0-d tensor cannot change its dtype).
        let bytes = |t: &Tensor| t.contiguous().reshape([-1]).f_view_dtype(Kind::Uint8);
        if !bytes(x)?.equal(&bytes(y)?) {
            differing += 1;
            // NaN against anything (or another NaN's bits) counts as an infinite gap.
            let gap = (x.to_kind(Kind::Double) - y.to_kind(Kind::Double))
                .abs()
                .nan_to_num(f64::INFINITY, None, None)
                .max()
                .double_value(&[]);
            if largest.as_ref().is_none_or(|(g, _)| gap > *g) {
                largest = Some((gap, name.clone()));
            }
        }
    }
    if let Some((gap, name)) = largest {
        problems.push(format!(
            "{differing} of {} tensors differ, the largest absolute difference {gap:.3e} in {name}",
            ta.len()
        ));
    }
    Ok(match problems.is_empty() {
        true => Ok(format!(
            "{} tensors equal (the files' metadata differ)",
            ta.len()
        )),
        false => Err(problems.join("; ")),
    })
}

/// `value` without [`WALL_CLOCK_KEYS`] at its top level.
fn without_wall_clock(value: Value) -> Value {
    match value {
        Value::Object(mut map) => {
            map.retain(|k, _| !WALL_CLOCK_KEYS.contains(&k.as_str()));
            Value::Object(map)
        }
        other => other,
    }
}

/// Where `a` and `b` first differ (a key path such as `task_losses.lexicon_hi0`, with both
/// values), or `None` when they are equal.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    let at = |key: &str| match path.is_empty() {
        true => key.to_string(),
        false => format!("{path}.{key}"),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => first_difference(u, v, &at(k)),
                (u, _) => Some(format!(
                    "{} only in {}",
                    at(k),
                    if u.is_some() { "a" } else { "b" }
                )),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &at(&i.to_string()))),
        _ if a == b => None,
        _ => Some(format!(
            "{}: {} against {}",
            if path.is_empty() { "(the value)" } else { path },
            shorten(a),
            shorten(b)
        )),
    }
}

/// A JSON value as at most 60 characters.
fn shorten(v: &Value) -> String {
    let text = v.to_string();
    match text.chars().count() > 60 {
        true => format!("{}...", text.chars().take(57).collect::<String>()),
        false => text,
    }
}

/// The keys (dotted paths) whose values differ between two saved configurations, without
/// `output.*`: `key: a against b`, or `key only in a` / `b`.
fn differences(a: &Path, b: &Path) -> Result<Vec<String>> {
    let load = |p: &Path| -> Result<BTreeMap<String, String>> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let value: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        let mut flat = BTreeMap::new();
        flatten(&value, "", &mut flat);
        flat.retain(|k, _| !k.starts_with("output."));
        Ok(flat)
    };
    let (x, y) = (load(a)?, load(b)?);
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    Ok(keys
        .into_iter()
        .filter_map(|k| match (x.get(k), y.get(k)) {
            (Some(u), Some(v)) if u == v => None,
            (Some(u), Some(v)) => Some(format!("`{k}`: {u} against {v}")),
            (Some(u), None) => Some(format!("`{k}` = {u} only in a")),
            (None, v) => Some(format!(
                "`{k}` = {} only in b",
                v.cloned().unwrap_or_default()
            )),
        })
        .collect())
}

/// Every leaf of a TOML table as `dotted.key -> value` (arrays as one value).
fn flatten(value: &toml::Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = match prefix.is_empty() {
                    true => k.clone(),
                    false => format!("{prefix}.{k}"),
                };
                flatten(v, &key, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.to_string());
        }
    }
}
