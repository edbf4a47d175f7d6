//! One thing wrong with a run's data, where it is and how serious it is.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Whether a problem stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Training runs, but the data may not be what was meant (inputs cut at the sequence
    /// length, an input in two splits, rows skipped under `on_invalid = "skip"`).
    Warning,
    /// Training would stop, or could not mean anything (a bad row, a missing file, a training
    /// task without a training split).
    Error,
}

/// What kind of problem a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The registry file does not parse or declares an invalid task, or the run names a task
    /// it does not declare.
    Registry,
    /// A split's file cannot be read (most often: it does not exist).
    MissingFile,
    /// A split's file holds no usable example.
    EmptyFile,
    /// A row cannot be parsed (wrong number of columns, invalid JSON, not an object).
    Malformed,
    /// A field the task spec reads is absent (from the header, or from a JSON object).
    MissingField,
    /// A classification label outside the task's label set.
    UnknownLabel,
    /// A value of the wrong type (a regression target that is not a number...).
    BadValue,
    /// A split the run needs is not declared (a training task without `train`), or one it
    /// reads is absent (`validation`).
    MissingSplit,
    /// A declared split no command reads (runs read `train`, `validation` and `test`).
    UnusedSplit,
    /// A label of a classification task no training example carries.
    UnusedLabel,
    /// An input that is also in an earlier split of the same task.
    Duplicate,
    /// Inputs longer than the sequence length, cut by the tokenizer.
    Truncated,
    /// Inputs longer than the sequence length where nothing truncates them (the synthetic
    /// benchmark): batching refuses them.
    TooLong,
    /// The tokenizer failed on an input.
    Tokenizer,
}

/// One problem: how serious, what kind, and where (task, split, file, 1-based line, field;
/// each where there is one).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Whether it stops a run.
    pub severity: Severity,
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// The task, unless the problem is the registry's as a whole.
    pub task: Option<String>,
    /// The split.
    pub split: Option<String>,
    /// The file: the split's, or the registry's for a problem of the registry.
    pub path: Option<PathBuf>,
    /// The 1-based line of the file (the header of a TSV or CSV file is line 1).
    pub line: Option<usize>,
    /// The field (column or JSON key).
    pub field: Option<String>,
    /// What is wrong, without the place.
    pub message: String,
}

impl Problem {
    /// A problem of `task` (and `split`) with no place in a file yet.
    pub(crate) fn new(
        severity: Severity,
        kind: ProblemKind,
        task: Option<&str>,
        split: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            severity,
            kind,
            task: task.map(str::to_string),
            split: split.map(str::to_string),
            path: None,
            line: None,
            field: None,
            message: message.into(),
        }
    }

    /// The same problem placed in `path`.
    pub(crate) fn at(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }

    /// The same problem placed on `line` (of its file).
    pub(crate) fn line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// The same problem placed in `field`.
    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// A reader's or tokenizer's error as a problem of `task`'s `split` (read from `path`),
    /// with the file, line and field the error names.
    pub(crate) fn from_error(
        severity: Severity,
        error: &DataError,
        task: &str,
        split: &str,
        path: &Path,
    ) -> Self {
        let new = |kind, message: String| {
            Problem::new(severity, kind, Some(task), Some(split), message).at(path)
        };
        match error {
            DataError::Io { path, source } => {
                let kind = match source.kind() {
                    std::io::ErrorKind::NotFound => "the file does not exist".to_string(),
                    _ => format!("cannot read the file: {source}"),
                };
                new(ProblemKind::MissingFile, kind).at(path)
            }
            DataError::Empty { path } => {
                new(ProblemKind::EmptyFile, "the file holds no examples".into()).at(path)
            }
            DataError::Malformed {
                path,
                line,
                message,
            } => new(ProblemKind::Malformed, format!("malformed line: {message}"))
                .at(path)
                .line(*line),
            DataError::MissingField { path, line, field } => {
                new(ProblemKind::MissingField, "missing field".into())
                    .at(path)
                    .line(*line)
                    .field(field)
            }
            DataError::UnknownLabel {
                path,
                line,
                field,
                label,
                allowed,
            } => new(
                ProblemKind::UnknownLabel,
                format!("unknown label `{label}` (expected one of {allowed:?})"),
            )
            .at(path)
            .line(*line)
            .field(field),
            DataError::BadValue {
                path,
                line,
                field,
                message,
            } => new(ProblemKind::BadValue, message.clone())
                .at(path)
                .line(*line)
                .field(field),
            DataError::Tokenizer(message) => new(ProblemKind::Tokenizer, message.clone()),
            other => new(ProblemKind::Registry, other.to_string()),
        }
    }
}

/// `path:line: field `f`: message`, leaving out what the problem does not name; the task and
/// split are the report's headings.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}:", path.display())?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
            }
            write!(f, " ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}
