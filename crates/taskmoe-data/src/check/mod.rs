//! Checking a run's data before training on it (`taskmoe data check`).
//!
//! [`DataCheck::registry`] reads every split a task registry names with the same readers and
//! tokenizer a run uses, but does not stop at the first bad row: each one becomes a
//! [`Problem`] naming file, 1-based line and field. Per task and split it counts the usable
//! examples, the examples per label, the token lengths before truncation and how many inputs
//! are longer than the sequence length, and the inputs that are also in an earlier split of
//! the task. [`DataCheck::synthetic`] reports the same numbers for the generated benchmark,
//! which has no files.
//!
//! What is an error (a run would stop, or train on something else than meant) and what a
//! warning (the run goes on):
//!
//! | problem | severity |
//! |---|---|
//! | registry file that does not parse or declares an invalid task; a trained task it lacks | error |
//! | split file missing or unreadable, empty, or without a field the task reads in its header | error |
//! | malformed row, missing field, unknown label, bad value, tokenizer failure | error (a warning under `on_invalid = "skip"`, which training skips; then a file of bad rows only is an error) |
//! | trained task without a `train` split | error |
//! | trained task without a `validation` split | warning |
//! | split other than `train`, `validation`, `test` (no command reads it) | warning |
//! | label no training example carries | warning |
//! | input (every text field, exactly) also in an earlier split of the task | warning |
//! | inputs longer than the sequence length: registry data (cut by the tokenizer) | warning |
//! | inputs longer than the sequence length: synthetic data (batching refuses them) | error |
//!
//! Splits are compared in the order `train`, `validation`, `test`, then the others by name;
//! a split that reads the same file as an earlier one (GLUE's `dev.tsv` as validation and
//! test) is not compared again.

mod problem;
mod render;
mod repeated;
mod split;

use std::path::{Path, PathBuf};

pub use problem::{Problem, ProblemKind, Severity};
pub use split::{LabelStats, LengthStats, SplitCheck};

use split::{ReadSplit, SplitRows};

use crate::error::DataError;
use crate::readers::{read_file_collecting, LabelMode};
use crate::registry::TaskRegistry;
use crate::spec::{OnInvalid, TaskKind, TaskSpec};
use crate::synthetic::{SyntheticBenchmark, SPLITS};
use crate::tokenize::{LengthCounter, TextTokenizer};

/// What the check found in one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCheck {
    /// The task's name.
    pub name: String,
    /// Its family.
    pub family: String,
    /// Classification or regression.
    pub kind: TaskKind,
    /// Its label names (classification), in index order.
    pub labels: Vec<String>,
    /// Whether it is held out (kept out of training mixtures).
    pub held_out: bool,
    /// Whether the run trains on it.
    pub trained: bool,
    /// Its splits, in the order they are compared (`train`, `validation`, `test`, the
    /// others by name).
    pub splits: Vec<SplitCheck>,
}

/// The outcome of checking a run's data: per task and split the numbers, and every problem
/// found.
#[derive(Debug, Clone, PartialEq)]
pub struct DataCheck {
    /// The registry file; `None` for the synthetic benchmark.
    pub registry: Option<PathBuf>,
    /// The sequence length inputs are measured against: the tokenizer's maximum length for
    /// registry data, the batch length for the synthetic benchmark.
    pub seq_len: usize,
    /// Whether longer inputs are cut to `seq_len` (registry data, a warning) rather than
    /// refused (the synthetic benchmark, an error).
    pub truncates: bool,
    /// Every task, in registry order (empty when the registry cannot be read).
    pub tasks: Vec<TaskCheck>,
    /// Every problem, in the order found (task by task, split by split).
    pub problems: Vec<Problem>,
}

impl DataCheck {
    /// Checks the registry at `path` and every split it names, reading files as a run does
    /// (`train` with required labels, other splits labeled or not) and counting tokens with
    /// `tokenizer`, whose maximum length is the sequence length. `train_tasks` names the
    /// tasks the run trains on; empty means every task not held out.
    pub fn registry(path: &Path, tokenizer: &TextTokenizer, train_tasks: &[String]) -> Self {
        let mut check = DataCheck {
            registry: Some(path.to_path_buf()),
            seq_len: tokenizer.max_len(),
            truncates: true,
            tasks: Vec::new(),
            problems: Vec::new(),
        };
        let registry = match TaskRegistry::from_toml_file(path) {
            Ok(r) => r,
            Err(e) => {
                check.problems.push(registry_problem(path, &e));
                return check;
            }
        };
        let counter = match tokenizer.length_counter() {
            Ok(c) => Some(c),
            Err(e) => {
                let message = format!("cannot count tokens: {e}");
                let problem =
                    Problem::new(Severity::Error, ProblemKind::Tokenizer, None, None, message);
                check.problems.push(problem);
                None
            }
        };
        let trained = check.trained(registry.tasks(), train_tasks, Some(path));
        for (spec, trained) in registry.tasks().iter().zip(trained) {
            check.declared_splits(spec, trained, path);
            let mut names: Vec<&String> = spec.splits.keys().collect();
            names.sort_by_key(|s| (split_rank(s), s.as_str()));
            let splits = names
                .into_iter()
                .map(|split| check.read_split(spec, split, &spec.splits[split], counter.as_ref()))
                .collect();
            check.finish_task(spec, trained, splits);
        }
        check
    }

    /// Reports the generated benchmark's tasks (no files to check): every split's numbers,
    /// measured against the batch length `seq_len`, and the inputs repeated across splits.
    /// `train_tasks` as for [`DataCheck::registry`].
    pub fn synthetic(bench: &SyntheticBenchmark, seq_len: usize, train_tasks: &[String]) -> Self {
        let mut check = DataCheck {
            registry: None,
            seq_len,
            truncates: false,
            tasks: Vec::new(),
            problems: Vec::new(),
        };
        let specs: Vec<TaskSpec> = bench.tasks().iter().map(|t| t.spec.clone()).collect();
        let trained = check.trained(&specs, train_tasks, None);
        for (task, trained) in bench.tasks().iter().zip(trained) {
            let splits = SPLITS
                .iter()
                .zip(&task.splits)
                .map(|(split, examples)| {
                    let rows = SplitRows {
                        split: split.to_string(),
                        path: None,
                        examples: examples.iter().map(|e| e.render(bench.vocab())).collect(),
                        lengths: (examples.iter().enumerate())
                            .map(|(i, e)| Some(e.encode(bench.vocab(), i as u64).input_ids.len()))
                            .collect(),
                        bad_rows: 0,
                    };
                    ReadSplit::Read(rows)
                })
                .collect();
            check.finish_task(&task.spec, trained, splits);
        }
        check
    }

    /// The number of problems of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == severity)
            .count()
    }

    /// Whether any problem is an error (a run on this data would stop, or mean something
    /// else than intended).
    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    /// Whether each task is trained; a trained name the tasks lack is a problem.
    fn trained(
        &mut self,
        specs: &[TaskSpec],
        train_tasks: &[String],
        registry: Option<&Path>,
    ) -> Vec<bool> {
        if train_tasks.is_empty() {
            return specs.iter().map(|s| !s.held_out).collect();
        }
        for name in train_tasks {
            if !specs.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                let message = format!(
                    "the run trains on task `{name}`, which is not declared (tasks: {})",
                    known.join(", ")
                );
                let mut problem =
                    Problem::new(Severity::Error, ProblemKind::Registry, None, None, message);
                problem.path = registry.map(Path::to_path_buf);
                self.problems.push(problem);
            }
        }
        specs
            .iter()
            .map(|s| train_tasks.contains(&s.name))
            .collect()
    }

    /// The problems of a task's declared splits: a trained task needs `train` and should have
    /// `validation`; no command reads other splits.
    fn declared_splits(&mut self, spec: &TaskSpec, trained: bool, registry: &Path) {
        let task = Some(spec.name.as_str());
        let mut missing = |severity, split: &str, message: &str| {
            let problem = Problem::new(
                severity,
                ProblemKind::MissingSplit,
                task,
                Some(split),
                message,
            );
            self.problems
                .push(problem.at(registry).field(format!("splits.{split}")));
        };
        if trained && !spec.splits.contains_key("train") {
            missing(
                Severity::Error,
                "train",
                "the run trains on this task, which declares no `train` split",
            );
        }
        if trained && !spec.splits.contains_key("validation") {
            missing(
                Severity::Warning,
                "validation",
                "no `validation` split: the run never scores this task before its test",
            );
        }
        for split in spec
            .splits
            .keys()
            .filter(|s| split_rank(s) == RUN_SPLITS.len())
        {
            let message = "runs read only the `train`, `validation` and `test` splits; this \
                           one is checked but never used";
            let problem = Problem::new(
                Severity::Warning,
                ProblemKind::UnusedSplit,
                task,
                Some(split),
                message,
            );
            self.problems
                .push(problem.at(registry).field(format!("splits.{split}")));
        }
    }

    /// Reads one split of `spec` from `path` in full, turning each bad row into a problem and
    /// counting the tokens of every usable example.
    fn read_split(
        &mut self,
        spec: &TaskSpec,
        split: &str,
        path: &Path,
        counter: Option<&LengthCounter>,
    ) -> ReadSplit {
        let labels = match split {
            "train" => LabelMode::Required,
            _ => LabelMode::IfPresent,
        };
        let task = &spec.name;
        let report = match read_file_collecting(spec, path, labels) {
            Ok(report) => report,
            Err(e) => {
                let problem = Problem::from_error(Severity::Error, &e, task, split, path);
                self.problems.push(problem);
                return ReadSplit::Unread {
                    split: split.to_string(),
                    path: path.to_path_buf(),
                };
            }
        };
        let row_severity = match spec.on_invalid {
            OnInvalid::Error => Severity::Error,
            OnInvalid::Skip => Severity::Warning,
        };
        for e in &report.skipped {
            let problem = Problem::from_error(row_severity, e, task, split, path);
            self.problems.push(problem);
        }
        if report.examples.is_empty() && row_severity == Severity::Warning {
            let message = format!(
                "no usable example: all {} rows are bad (training skips them and stops)",
                report.skipped.len()
            );
            let problem = Problem::new(
                Severity::Error,
                ProblemKind::EmptyFile,
                Some(task),
                Some(split),
                message,
            );
            self.problems.push(problem.at(path));
        }
        let mut lengths = Vec::with_capacity(report.examples.len());
        for e in &report.examples {
            let Some(counter) = counter else {
                lengths.push(None);
                continue;
            };
            match counter.count(&e.text_a, e.text_b.as_deref()) {
                Ok(n) => lengths.push(Some(n)),
                Err(error) => {
                    lengths.push(None);
                    let problem = Problem::from_error(Severity::Error, &error, task, split, path);
                    self.problems.push(problem.line(e.line));
                }
            }
        }
        ReadSplit::Read(SplitRows {
            split: split.to_string(),
            path: Some(path.to_path_buf()),
            bad_rows: report.skipped.len(),
            examples: report.examples,
            lengths,
        })
    }

    /// Measures the splits of a task (read or not), compares them for repeated inputs, and
    /// adds the task.
    fn finish_task(&mut self, spec: &TaskSpec, trained: bool, splits: Vec<ReadSplit>) {
        let mut checks = Vec::with_capacity(splits.len());
        for split in &splits {
            checks.push(match split {
                ReadSplit::Read(rows) => {
                    let check =
                        SplitCheck::measure(rows, spec.kind, spec.labels.len(), self.seq_len);
                    self.length_problems(spec, rows, &check);
                    check
                }
                ReadSplit::Unread { split, path } => SplitCheck::unread(split, Some(path.clone())),
            });
        }
        if let Some((ReadSplit::Read(rows), check)) = splits.first().zip(checks.first()) {
            self.unused_labels(spec, rows, check);
        }
        self.repeated_inputs(spec, &splits, &mut checks);
        self.tasks.push(TaskCheck {
            name: spec.name.clone(),
            family: spec.family.clone(),
            kind: spec.kind,
            labels: spec.labels.clone(),
            held_out: spec.held_out,
            trained,
            splits: checks,
        });
    }

    /// One problem per split with inputs longer than the sequence length, placed at the
    /// longest.
    fn length_problems(&mut self, spec: &TaskSpec, rows: &SplitRows, check: &SplitCheck) {
        if check.over_seq_len == 0 {
            return;
        }
        let (longest, max) = (rows.lengths.iter().enumerate())
            .filter_map(|(i, n)| n.map(|n| (i, n)))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .expect("an input is over the sequence length");
        let share = match 100.0 * check.over_seq_len as f64 / check.examples as f64 {
            s if s < 0.1 => "<0.1%".to_string(),
            s => format!("{s:.1}%"),
        };
        let (severity, kind, consequence) = match self.truncates {
            true => (Severity::Warning, ProblemKind::Truncated, "are cut to it"),
            false => (
                Severity::Error,
                ProblemKind::TooLong,
                "are refused by batching (generated data is not truncated)",
            ),
        };
        // A file's problem is placed on the longest's line; generated data names the example.
        let line = rows.examples[longest].line;
        let longest = match line {
            0 => format!("the longest ({max} tokens) is {}", rows.place(longest)),
            _ => format!("the longest, on this line, has {max} tokens"),
        };
        let message = format!(
            "{} of {} examples ({share}) are longer than {} tokens and {consequence}; {longest}",
            check.over_seq_len, check.examples, self.seq_len,
        );
        let mut problem =
            Problem::new(severity, kind, Some(&spec.name), Some(&rows.split), message);
        problem.path = rows.path.clone();
        problem.line = (line > 0).then_some(line);
        self.problems.push(problem);
    }

    /// A warning per label of a classification task that no example of its (labeled)
    /// `train` split carries.
    fn unused_labels(&mut self, spec: &TaskSpec, rows: &SplitRows, check: &SplitCheck) {
        let LabelStats::Classes(counts) = &check.labels else {
            return;
        };
        if rows.split != "train" || rows.examples.is_empty() {
            return;
        }
        for (label, _) in spec.labels.iter().zip(counts).filter(|(_, &n)| n == 0) {
            let message = format!("no training example has label `{label}`");
            let mut problem = Problem::new(
                Severity::Warning,
                ProblemKind::UnusedLabel,
                Some(&spec.name),
                Some("train"),
                message,
            )
            .field(&spec.label_field);
            problem.path = rows.path.clone();
            self.problems.push(problem);
        }
    }
}

/// The splits runs read, in the order the check compares them.
const RUN_SPLITS: [&str; 3] = ["train", "validation", "test"];

/// A split's place in the comparison order: its index in [`RUN_SPLITS`], or after them.
fn split_rank(split: &str) -> usize {
    RUN_SPLITS
        .iter()
        .position(|s| *s == split)
        .unwrap_or(RUN_SPLITS.len())
}

/// The registry's own error as a problem, with the line of a TOML error.
fn registry_problem(path: &Path, error: &DataError) -> Problem {
    let mut problem = Problem::new(
        Severity::Error,
        ProblemKind::Registry,
        None,
        None,
        error.to_string(),
    );
    match error {
        DataError::Io { source, .. } => {
            problem.message = format!("cannot read the registry: {source}");
        }
        DataError::Toml { source, .. } => {
            problem.message = source.message().to_string();
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if let Some(span) = source.span() {
                let end = span.start.min(text.len());
                problem.line = Some(
                    1 + text.as_bytes()[..end]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count(),
                );
            }
        }
        _ => {}
    }
    problem.at(path)
}
