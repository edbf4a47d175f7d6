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
//! Labels: a string is looked up by name in the spec's `labels`. In JSONL, an integer is taken
//! as a label index (HF `ClassLabel` exports `0`, `1`, ...); write `labels = ["0", "1"]` in the
//! spec for TSV/CSV files whose labels are digits. Regression targets are numbers, or strings
//! that parse as numbers.

mod csv;
mod jsonl;
mod tsv;

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
}

/// Reads `path` as a split of the task `spec`, in `format` or, when `None`, the spec's format
/// or the one the file extension implies.
pub fn read_file(spec: &TaskSpec, path: &Path, format: Option<Format>) -> Result<ReadReport> {
    spec.validate()?;
    let format = format
        .or(spec.format)
        .or_else(|| Format::from_extension(path))
        .ok_or_else(|| {
            crate::error::invalid(
                format!("task `{}`", spec.name),
                format!(
                    "cannot tell the format of {} (use .tsv, .jsonl or .csv, or set `format`)",
                    path.display()
                ),
            )
        })?;
    let text = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut sink = Sink {
        spec,
        path,
        report: ReadReport {
            examples: Vec::new(),
            skipped: Vec::new(),
        },
    };
    match format {
        Format::Tsv => tsv::read(&text, &mut sink)?,
        Format::Jsonl => jsonl::read(&text, &mut sink)?,
        Format::Csv => csv::read(&text, &mut sink)?,
    }
    if sink.report.examples.is_empty() {
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

/// Collects examples, or row errors under `on_invalid = "skip"`.
pub(crate) struct Sink<'a> {
    pub(crate) spec: &'a TaskSpec,
    pub(crate) path: &'a Path,
    pub(crate) report: ReadReport,
}

impl Sink<'_> {
    /// The file's path, owned, for an error.
    pub(crate) fn path_buf(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    /// Records the outcome of one row: keeps an example, skips or returns an error.
    pub(crate) fn push(&mut self, row: Result<TextExample>) -> Result<()> {
        match row {
            Ok(example) => self.report.examples.push(example),
            Err(e) if self.spec.on_invalid == OnInvalid::Skip => self.report.skipped.push(e),
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
    ) -> Result<TextExample> {
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
    ) -> Result<TextExample> {
        let spec = self.spec;
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
        let text_a = text(&spec.text_fields[0])?;
        let text_b = spec.text_fields.get(1).map(|f| text(f)).transpose()?;
        let label = self.label(line, field(&spec.label_field)?)?;
        let source_id = match &spec.id_field {
            None => None,
            Some(name) => Some(match field(name)? {
                Value::Text(s) => s.to_string(),
                Value::Json(serde_json::Value::String(s)) => s.clone(),
                Value::Json(other) => other.to_string(),
            }),
        };
        Ok(TextExample {
            text_a,
            text_b,
            label,
            source_id,
            line,
        })
    }

    fn label(&self, line: usize, value: Value<'_>) -> Result<Label> {
        let spec = self.spec;
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
    /// error at line 1.
    pub(crate) fn check_header(&self, header: &[&str]) -> Result<()> {
        let spec = self.spec;
        let wanted = spec
            .text_fields
            .iter()
            .chain(std::iter::once(&spec.label_field))
            .chain(spec.id_field.iter());
        for field in wanted {
            if header.iter().filter(|c| **c == field.as_str()).count() > 1 {
                return Err(self.malformed(1, format!("the header names `{field}` twice")));
            }
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
