//! Readers for the file formats users have: GLUE/SuperGLUE TSV, HF `datasets` JSONL, CSV.
//!
//! Every reader turns a file into [`TextExample`]s according to a [`TaskSpec`]: the spec's
//! `text_fields` become `text_a` (and `text_b`), its `label_field` the [`Label`], its optional
//! `id_field` the `source_id`. The rules are the same for the three formats:
//!
//! - a file with no header (TSV, CSV) or no examples is [`DataError::Empty`];
//! - a field of the spec that the header lacks is [`DataError::MissingField`] at line 1 (a
//!   file-level error, never skipped);
//! - a row with the wrong number of columns or a line that is not a JSON object is
//!   [`DataError::Malformed`]; a JSON object without a field is [`DataError::MissingField`]; a
//!   label outside the label set is [`DataError::UnknownLabel`]; a value of the wrong type is
//!   [`DataError::BadValue`]. Each names file, 1-based line and field. With
//!   `on_invalid = "skip"` in the spec, such rows are skipped and listed in
//!   [`ReadReport::skipped`] instead;
//! - empty lines hold no record and are passed over (as the CSV RFC and JSON Lines tools do);
//!   every other line is either an example or an error.
//!
//! Labels are required by default ([`read_file`], training splits). [`read_file_with`] with
//! [`LabelMode::IfPresent`] reads an unlabeled split (a test set without answers): a file whose
//! header (TSV, CSV) or first record (JSONL) lacks the label field gives examples with
//! [`Label::Missing`]. [`read_inputs`] reads new text to predict on: no labels, the task fixed
//! or named per row by a field, the `id_field` optional, and every bad row an error (never
//! skipped, so predictions line up with the input).
//!
//! `taskmoe data check` ([`crate::check`]) reads through a collecting mode of the same readers
//! that keeps every row error, whatever `on_invalid` says, instead of stopping at the first.
//!
//! Labels: a string is looked up by name in the spec's `labels`. In JSONL, an integer is taken
//! as a label index (HF `ClassLabel` exports `0`, `1`, ...); write `labels = ["0", "1"]` in the
//! spec for TSV/CSV files whose labels are digits. Regression targets are numbers, or strings
//! that parse as numbers.

mod csv;
mod jsonl;
mod tsv;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::example::{Label, TextExample};
use crate::spec::{Format, OnInvalid, TaskKind, TaskSpec};

/// The outcome of reading one file.
#[derive(Debug)]
pub struct ReadReport {
    /// The examples, in file order.
    pub examples: Vec<TextExample>,
    /// The rows skipped under `on_invalid = "skip"`, each with its error (file, line, field).
    /// Always empty under `on_invalid = "error"`.
    pub skipped: Vec<DataError>,
    /// The task of each example, as an index into the specs given to [`read_inputs`]; for
    /// [`read_file`] and [`read_file_with`], 0 for every example.
    pub tasks: Vec<usize>,
}

impl ReadReport {
    /// Whether the file carried labels ([`LabelMode::IfPresent`] can find none).
    pub fn is_labeled(&self) -> bool {
        self.examples.iter().any(|e| e.label.is_present())
    }
}

/// How a reader treats the spec's label field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LabelMode {
    /// Every row must carry a valid label (training splits). The default.
    #[default]
    Required,
    /// A file whose header (TSV, CSV) or first record (JSONL) lacks the label field is an
    /// unlabeled split and its examples get [`Label::Missing`]; otherwise as `Required`.
    IfPresent,
    /// Labels are not read: every example gets [`Label::Missing`].
    Ignored,
}

/// Options of [`read_file_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// The format; `None` means the spec's, else the one the file extension implies.
    pub format: Option<Format>,
    /// How labels are read.
    pub labels: LabelMode,
}

/// Where [`read_inputs`] takes each row's task from.
#[derive(Debug, Clone, Copy)]
pub enum InputTask<'a> {
    /// Every row belongs to this task (an index into the specs).
    Fixed(usize),
    /// Each row names its task (a spec's `name`) in this field.
    Field(&'a str),
}

/// Reads `path` as a split of the task `spec`, in `format` or, when `None`, the spec's format
/// or the one the file extension implies. Every row must be labeled.
pub fn read_file(spec: &TaskSpec, path: &Path, format: Option<Format>) -> Result<ReadReport> {
    read_file_with(
        spec,
        path,
        ReadOptions {
            format,
            labels: LabelMode::Required,
        },
    )
}

/// Reads `path` as a split of the task `spec` with `options` (see [`LabelMode`]).
pub fn read_file_with(spec: &TaskSpec, path: &Path, options: ReadOptions) -> Result<ReadReport> {
    spec.validate()?;
    let format = resolve_format(options.format.or(spec.format), path, &spec.name)?;
    let sink = Sink::new(std::slice::from_ref(spec), 0, path, options.labels, None);
    read_into(sink, format)
}

/// Reads new inputs to predict on from `path` (TSV, CSV or JSONL, by `format` or extension):
/// text fields by each row's task spec, labels ignored, `id_field` kept where present. Every
/// unusable row is an error naming file, line and field, whatever the specs' `on_invalid`;
/// an unknown task name in the task field is [`DataError::BadValue`].
pub fn read_inputs(
    specs: &[TaskSpec],
    path: &Path,
    format: Option<Format>,
    task: InputTask<'_>,
) -> Result<ReadReport> {
    let (fixed, spec_format) = match task {
        InputTask::Fixed(t) => {
            let spec = specs.get(t).ok_or_else(|| {
                crate::error::invalid("inputs", format!("task index {t} out of range"))
            })?;
            (t, spec.format)
        }
        InputTask::Field(_) => (0, None),
    };
    let format = resolve_format(format.or(spec_format), path, "inputs")?;
    let by_row = match task {
        InputTask::Field(f) => Some(f),
        InputTask::Fixed(_) => None,
    };
    let sink = Sink::new(specs, fixed, path, LabelMode::Ignored, by_row);
    read_into(sink, format)
}

/// Reads `path` as a split of `spec` like [`read_file_with`], but never stops at a bad row,
/// whatever the spec's `on_invalid`: every row error is collected in [`ReadReport::skipped`]
/// (`taskmoe data check` lists them all). File-level errors (unreadable, not UTF-8, a header
/// without a field the spec reads, no rows at all) still end the read. Unlike the other
/// readers, a file whose rows are all bad is returned (no examples, every error) instead of
/// [`DataError::Empty`].
pub(crate) fn read_file_collecting(
    spec: &TaskSpec,
    path: &Path,
    labels: LabelMode,
) -> Result<ReadReport> {
    spec.validate()?;
    let format = resolve_format(spec.format, path, &spec.name)?;
    let mut sink = Sink::new(std::slice::from_ref(spec), 0, path, labels, None);
    sink.collect_all = true;
    read_into(sink, format)
}

fn resolve_format(format: Option<Format>, path: &Path, what: &str) -> Result<Format> {
    format
        .or_else(|| Format::from_extension(path))
        .ok_or_else(|| {
            crate::error::invalid(
                if what == "inputs" {
                    what.to_string()
                } else {
                    format!("task `{what}`")
                },
                format!(
                    "cannot tell the format of {} (use .tsv, .jsonl or .csv, or set `format`)",
                    path.display()
                ),
            )
        })
}

fn read_into(mut sink: Sink<'_>, format: Format) -> Result<ReadReport> {
    let path = sink.path;
    let text = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match format {
        Format::Tsv => tsv::read(&text, &mut sink)?,
        Format::Jsonl => jsonl::read(&text, &mut sink)?,
        Format::Csv => csv::read(&text, &mut sink)?,
    }
    let all_rows_bad = sink.collect_all && !sink.report.skipped.is_empty();
    if sink.report.examples.is_empty() && !all_rows_bad {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(sink.report)
}

/// A field value as a format provides it.
#[derive(Clone, Copy)]
pub(crate) enum Value<'a> {
    /// A TSV or CSV cell.
    Text(&'a str),
    /// A JSON value.
    Json(&'a serde_json::Value),
}

/// One row read: the example and its task (an index into the sink's specs).
pub(crate) type Row = (usize, TextExample);

/// Collects examples, or row errors under `on_invalid = "skip"`.
pub(crate) struct Sink<'a> {
    /// The specs rows can belong to; without a task field, only `specs[fixed]` is used.
    specs: &'a [TaskSpec],
    /// The task of every row when there is no task field.
    fixed: usize,
    pub(crate) path: &'a Path,
    pub(crate) report: ReadReport,
    labels: LabelMode,
    /// The field naming each row's task, if rows name it.
    task_field: Option<&'a str>,
    /// Under [`LabelMode::IfPresent`]: whether the file has labels, decided at the first row.
    labeled: OnceCell<bool>,
    /// Collect every row error instead of stopping at the first ([`read_file_collecting`]).
    collect_all: bool,
}

impl<'a> Sink<'a> {
    fn new(
        specs: &'a [TaskSpec],
        fixed: usize,
        path: &'a Path,
        labels: LabelMode,
        task_field: Option<&'a str>,
    ) -> Self {
        Sink {
            specs,
            fixed,
            path,
            report: ReadReport {
                examples: Vec::new(),
                skipped: Vec::new(),
                tasks: Vec::new(),
            },
            labels,
            task_field,
            labeled: OnceCell::new(),
            collect_all: false,
        }
    }
}

impl Sink<'_> {
    /// The file's path, owned, for an error.
    pub(crate) fn path_buf(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    /// Records the outcome of one row: keeps an example, skips or returns an error. Inputs
    /// to predict on (labels ignored) are never skipped; when collecting, every row error is.
    pub(crate) fn push(&mut self, row: Result<Row>) -> Result<()> {
        let skip = self.collect_all
            || (self.labels != LabelMode::Ignored
                && self.specs[self.fixed].on_invalid == OnInvalid::Skip);
        match row {
            Ok((task, example)) => {
                self.report.examples.push(example);
                self.report.tasks.push(task);
            }
            Err(e) if skip => self.report.skipped.push(e),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Builds an example from one delimited row (`cells`) under its header (`columns`); a row
    /// with another number of cells than the header is malformed. `kind` names the delimiter
    /// in the message ("tab-separated").
    pub(crate) fn delimited_example(
        &self,
        line: usize,
        kind: &str,
        columns: &[&str],
        cells: &[&str],
    ) -> Result<Row> {
        if cells.len() != columns.len() {
            return Err(self.malformed(
                line,
                format!(
                    "{} {kind} columns, the header has {}",
                    cells.len(),
                    columns.len()
                ),
            ));
        }
        self.example(line, |field| {
            columns
                .iter()
                .position(|c| *c == field)
                .map(|i| Value::Text(cells[i]))
        })
    }

    /// Builds an example from a row whose fields `get` returns (`None` = missing).
    pub(crate) fn example<'v>(
        &self,
        line: usize,
        get: impl Fn(&str) -> Option<Value<'v>>,
    ) -> Result<Row> {
        let field = |name: &str| {
            get(name).ok_or_else(|| DataError::MissingField {
                path: self.path_buf(),
                line,
                field: name.to_string(),
            })
        };
        let text = |name: &str| -> Result<String> {
            match field(name)? {
                Value::Text(s) => Ok(s.to_string()),
                Value::Json(serde_json::Value::String(s)) => Ok(s.clone()),
                Value::Json(other) => {
                    Err(self.bad(line, name, format!("expected a string, found {other}")))
                }
            }
        };
        let task = match self.task_field {
            None => self.fixed,
            Some(name) => {
                let value = text(name)?;
                self.specs
                    .iter()
                    .position(|s| s.name == value)
                    .ok_or_else(|| {
                        let known: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
                        self.bad(
                            line,
                            name,
                            format!("unknown task `{value}` (known: {})", known.join(", ")),
                        )
                    })?
            }
        };
        let spec = &self.specs[task];
        let text_a = text(&spec.text_fields[0])?;
        let text_b = spec.text_fields.get(1).map(|f| text(f)).transpose()?;
        let labeled = match self.labels {
            LabelMode::Required => true,
            LabelMode::Ignored => false,
            LabelMode::IfPresent => *self
                .labeled
                .get_or_init(|| get(&spec.label_field).is_some()),
        };
        let label = if labeled {
            self.label(spec, line, field(&spec.label_field)?)?
        } else {
            Label::Missing
        };
        let id_value = match &spec.id_field {
            None => None,
            // Inputs to predict on may lack the id field: the line number identifies them.
            Some(name) if self.labels == LabelMode::Ignored => get(name),
            Some(name) => Some(field(name)?),
        };
        let source_id = id_value.map(|v| match v {
            Value::Text(s) => s.to_string(),
            Value::Json(serde_json::Value::String(s)) => s.clone(),
            Value::Json(other) => other.to_string(),
        });
        Ok((
            task,
            TextExample {
                text_a,
                text_b,
                label,
                source_id,
                line,
            },
        ))
    }

    fn label(&self, spec: &TaskSpec, line: usize, value: Value<'_>) -> Result<Label> {
        let name = &spec.label_field;
        match spec.kind {
            TaskKind::Classification => {
                let by_name = |s: &str| spec.labels.iter().position(|l| l == s);
                let (found, shown) = match value {
                    Value::Text(s) => (by_name(s), s.to_string()),
                    Value::Json(serde_json::Value::String(s)) => (by_name(s), s.clone()),
                    Value::Json(v @ serde_json::Value::Number(n)) => (
                        n.as_u64()
                            .map(|i| i as usize)
                            .filter(|&i| i < spec.labels.len()),
                        v.to_string(),
                    ),
                    Value::Json(other) => (None, other.to_string()),
                };
                found
                    .map(|i| Label::Class(i as i64))
                    .ok_or_else(|| DataError::UnknownLabel {
                        path: self.path_buf(),
                        line,
                        field: name.clone(),
                        label: shown,
                        allowed: spec.labels.clone(),
                    })
            }
            TaskKind::Regression => {
                let parsed = match value {
                    Value::Text(s) => s.trim().parse::<f64>().ok(),
                    Value::Json(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
                    Value::Json(serde_json::Value::Number(n)) => n.as_f64(),
                    Value::Json(_) => None,
                };
                let shown = match value {
                    Value::Text(s) => s.to_string(),
                    Value::Json(v) => v.to_string(),
                };
                match parsed {
                    Some(x) if x.is_finite() => Ok(Label::Value(x as f32)),
                    _ => Err(self.bad(
                        line,
                        name,
                        format!("expected a finite number, found `{shown}`"),
                    )),
                }
            }
        }
    }

    pub(crate) fn bad(&self, line: usize, field: &str, message: String) -> DataError {
        DataError::BadValue {
            path: self.path_buf(),
            line,
            field: field.to_string(),
            message,
        }
    }

    pub(crate) fn malformed(&self, line: usize, message: String) -> DataError {
        DataError::Malformed {
            path: self.path_buf(),
            line,
            message,
        }
    }

    /// Checks that a header holds every field the spec reads; returns the missing one as an
    /// error at line 1. Without required labels, the label field may be absent (an unlabeled
    /// file); for inputs, so may the id field; with a task field, only that one is checked here
    /// (the text fields differ by task and are checked per row).
    pub(crate) fn check_header(&self, header: &[&str]) -> Result<()> {
        let spec = &self.specs[self.fixed];
        let mut wanted: Vec<&String> = Vec::new();
        let mut optional: Vec<&String> = Vec::new();
        let by_row = self.task_field.map(str::to_string);
        match &by_row {
            Some(f) => wanted.push(f),
            None => {
                wanted.extend(&spec.text_fields);
                match self.labels {
                    LabelMode::Required => wanted.push(&spec.label_field),
                    _ => optional.push(&spec.label_field),
                }
                match self.labels {
                    LabelMode::Ignored => optional.extend(spec.id_field.iter()),
                    _ => wanted.extend(spec.id_field.iter()),
                }
            }
        }
        for field in wanted.iter().chain(&optional) {
            if header.iter().filter(|c| **c == field.as_str()).count() > 1 {
                return Err(self.malformed(1, format!("the header names `{field}` twice")));
            }
        }
        for field in wanted {
            if !header.contains(&field.as_str()) {
                return Err(DataError::MissingField {
                    path: self.path_buf(),
                    line: 1,
                    field: field.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Decodes a file as UTF-8, or names the first bad line.
pub(crate) fn utf8<'t>(sink: &Sink<'_>, bytes: &'t [u8]) -> Result<&'t str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        sink.malformed(line, "invalid UTF-8".into())
    })
}
