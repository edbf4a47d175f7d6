//! Task specifications: what a task is, independent of where its data comes from.
//!
//! A [`TaskSpec`] is declared in TOML (see [`crate::TaskRegistry`] for the file layout) and names
//! the task, its family, its kind, its label set, the text fields of its input (one sentence or
//! a pair), its metrics and its splits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// Whether a task predicts a class or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// One of the task's `labels`; the label is stored as its index.
    Classification,
    /// A real-valued target.
    Regression,
}

/// A metric a task is scored with; `taskmoe-eval` computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of exact label matches (classification).
    Accuracy,
    /// F1 of the positive class, the second label (binary classification).
    F1,
    /// Matthews correlation coefficient (binary classification, e.g. CoLA).
    Matthews,
    /// Pearson correlation (regression, e.g. STS-B).
    Pearson,
    /// Spearman rank correlation (regression).
    Spearman,
    /// Mean squared error (regression).
    Mse,
}

impl Metric {
    /// Whether the metric applies to tasks of `kind`.
    pub fn applies_to(self, kind: TaskKind) -> bool {
        match self {
            Metric::Accuracy | Metric::F1 | Metric::Matthews => kind == TaskKind::Classification,
            Metric::Pearson | Metric::Spearman | Metric::Mse => kind == TaskKind::Regression,
        }
    }
}

/// The file format of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Tab-separated with a header row and no quoting (GLUE / SuperGLUE `.tsv`).
    Tsv,
    /// One JSON object per line (`Dataset.to_json` of HF `datasets`).
    Jsonl,
    /// Comma-separated with a header row and RFC 4180 quoting.
    Csv,
}

impl Format {
    /// The format implied by a file extension: `.tsv`, `.jsonl` / `.json`, `.csv`.
    pub fn from_extension(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "tsv" => Some(Format::Tsv),
            "jsonl" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// What a reader does with a row it cannot use (malformed, missing field, unknown label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Stop with an error naming file, line and field (default).
    #[default]
    Error,
    /// Skip the row and report it in [`crate::ReadReport::skipped`].
    Skip,
}

/// One task, as declared in a registry TOML file.
///
/// ```toml
/// [[tasks]]
/// name = "rte"
/// family = "nli"
/// kind = "classification"
/// labels = ["entailment", "not_entailment"]
/// text_fields = ["sentence1", "sentence2"]
/// label_field = "label"
/// metrics = ["accuracy"]
/// [tasks.splits]
/// train = "rte/train.tsv"
/// validation = "rte/dev.tsv"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique task name.
    pub name: String,
    /// The family the task belongs to; related tasks share one. Unseen tasks are initialised from
    /// a seen task of their family.
    pub family: String,
    /// Classification or regression.
    pub kind: TaskKind,
    /// The label names of a classification task, in index order; empty for regression.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The input's text fields: one (a sentence) or two (a sentence pair).
    pub text_fields: Vec<String>,
    /// The field holding the label or regression target. Default `label`.
    #[serde(default = "default_label_field")]
    pub label_field: String,
    /// An optional field holding an example id (kept in [`crate::TextExample::source_id`]).
    #[serde(default)]
    pub id_field: Option<String>,
    /// The metrics the task is scored with; at least one, each valid for `kind`.
    pub metrics: Vec<Metric>,
    /// The file format of every split; by default inferred from each file's extension.
    #[serde(default)]
    pub format: Option<Format>,
    /// What to do with an unusable row. Default `error`.
    #[serde(default)]
    pub on_invalid: OnInvalid,
    /// A held-out (unseen) task: kept out of training mixtures, used for few-shot transfer.
    /// Default `false`.
    #[serde(default)]
    pub held_out: bool,
    /// Split name (`train`, `validation`, `test`...) to data file. Relative paths are relative
    /// to the registry file. May be empty for generated tasks.
    #[serde(default)]
    pub splits: BTreeMap<String, PathBuf>,
}

fn default_label_field() -> String {
    "label".into()
}

impl TaskSpec {
    /// Whether the input is a sentence pair.
    pub fn is_pair(&self) -> bool {
        self.text_fields.len() == 2
    }

    /// The number of output units a head needs: the label count, or 1 for regression.
    pub fn num_outputs(&self) -> usize {
        match self.kind {
            TaskKind::Classification => self.labels.len(),
            TaskKind::Regression => 1,
        }
    }

    /// Checks the spec's internal consistency.
    pub fn validate(&self) -> Result<()> {
        let what = format!("task `{}`", self.name);
        if self.name.trim().is_empty() {
            return Err(invalid("task", "empty task name"));
        }
        if self.family.trim().is_empty() {
            return Err(invalid(what, "empty family"));
        }
        if !(1..=2).contains(&self.text_fields.len()) {
            return Err(invalid(
                what,
                format!(
                    "text_fields must name 1 or 2 fields, got {}",
                    self.text_fields.len()
                ),
            ));
        }
        match self.kind {
            TaskKind::Classification if self.labels.len() < 2 => {
                return Err(invalid(
                    what,
                    "a classification task needs at least 2 labels",
                ));
            }
            TaskKind::Regression if !self.labels.is_empty() => {
                return Err(invalid(what, "a regression task has no labels"));
            }
            _ => {}
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.labels.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(invalid(what, format!("label `{dup}` appears twice")));
        }
        if self.metrics.is_empty() {
            return Err(invalid(what, "no metrics"));
        }
        if let Some(m) = self.metrics.iter().find(|m| !m.applies_to(self.kind)) {
            return Err(invalid(
                what,
                format!("metric {m:?} does not apply to a {:?} task", self.kind),
            ));
        }
        Ok(())
    }
}
