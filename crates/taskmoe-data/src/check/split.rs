//! The numbers of one split of one task: examples, labels, token lengths, truncation.

use std::path::PathBuf;

use crate::example::{Label, TextExample};
use crate::spec::TaskKind;

/// Token lengths of a split's examples, special tokens included, before truncation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LengthStats {
    /// The shortest.
    pub min: usize,
    /// The mean.
    pub mean: f64,
    /// The longest.
    pub max: usize,
}

/// The labels of a split.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelStats {
    /// Examples per label of a classification task, in the task's label order.
    Classes(Vec<usize>),
    /// The range and mean of a regression task's targets.
    Values {
        /// The smallest target.
        min: f64,
        /// The mean target.
        mean: f64,
        /// The largest target.
        max: f64,
    },
    /// The split carries no labels (an evaluation split without answers), or no example
    /// could be read.
    Unlabeled,
}

/// What the check found in one split of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitCheck {
    /// The split's name (`train`, `validation`, `test`, or another the registry declares).
    pub split: String,
    /// Its file; `None` for generated data.
    pub path: Option<PathBuf>,
    /// Whether the file could be read (a missing file, or one without a field the task
    /// reads in its header, cannot).
    pub read: bool,
    /// Usable examples.
    pub examples: usize,
    /// Rows that could not be used (each one is a [`crate::check::Problem`]).
    pub bad_rows: usize,
    /// The labels of the usable examples.
    pub labels: LabelStats,
    /// Token lengths of the usable examples, `None` when there are none.
    pub tokens: Option<LengthStats>,
    /// Examples longer than the check's sequence length.
    pub over_seq_len: usize,
    /// Examples whose input (every text field, exactly) is also in an earlier split of the
    /// task (in the order `train`, `validation`, `test`, then the others by name); not
    /// counted against a split that reads the same file.
    pub repeated: usize,
    /// The earlier split that reads the same file, if one does (its examples are then not
    /// compared with the other splits again).
    pub same_file_as: Option<String>,
}

impl SplitCheck {
    /// A split whose file could not be read.
    pub(crate) fn unread(split: &str, path: Option<PathBuf>) -> Self {
        SplitCheck {
            split: split.to_string(),
            path,
            read: false,
            examples: 0,
            bad_rows: 0,
            labels: LabelStats::Unlabeled,
            tokens: None,
            over_seq_len: 0,
            repeated: 0,
            same_file_as: None,
        }
    }

    /// The numbers of a read split, its examples measured against `seq_len`.
    pub(crate) fn measure(
        rows: &SplitRows,
        kind: TaskKind,
        num_labels: usize,
        seq_len: usize,
    ) -> Self {
        let measured: Vec<usize> = rows.lengths.iter().flatten().copied().collect();
        let tokens = (!measured.is_empty()).then(|| LengthStats {
            min: measured.iter().copied().min().unwrap_or(0),
            mean: measured.iter().sum::<usize>() as f64 / measured.len() as f64,
            max: measured.iter().copied().max().unwrap_or(0),
        });
        SplitCheck {
            split: rows.split.clone(),
            path: rows.path.clone(),
            read: true,
            examples: rows.examples.len(),
            bad_rows: rows.bad_rows,
            labels: label_stats(kind, num_labels, &rows.examples),
            tokens,
            over_seq_len: measured.iter().filter(|&&n| n > seq_len).count(),
            repeated: 0,
            same_file_as: None,
        }
    }
}

/// A split as the check read it.
pub(crate) enum ReadSplit {
    /// The usable rows of a split whose file was read.
    Read(SplitRows),
    /// A split whose file could not be read (the problem says why).
    Unread {
        /// The split's name.
        split: String,
        /// Its file.
        path: PathBuf,
    },
}

/// The usable rows of a read split, before they are measured.
pub(crate) struct SplitRows {
    /// The split's name.
    pub(crate) split: String,
    /// Its file; `None` for generated data.
    pub(crate) path: Option<PathBuf>,
    /// The usable examples, in file order.
    pub(crate) examples: Vec<TextExample>,
    /// The token length of each example before truncation; `None` where the tokenizer failed.
    pub(crate) lengths: Vec<Option<usize>>,
    /// Rows that could not be used.
    pub(crate) bad_rows: usize,
}

impl SplitRows {
    /// Where example `i` is: `line N` of its file, or `example i` of generated data.
    pub(crate) fn place(&self, i: usize) -> String {
        match self.examples[i].line {
            0 => format!("example {i}"),
            line => format!("line {line}"),
        }
    }
}

fn label_stats(kind: TaskKind, num_labels: usize, examples: &[TextExample]) -> LabelStats {
    if !examples.iter().any(|e| e.label.is_present()) {
        return LabelStats::Unlabeled;
    }
    match kind {
        TaskKind::Classification => {
            let mut counts = vec![0; num_labels];
            for e in examples {
                if let Label::Class(c) = e.label {
                    counts[c as usize] += 1;
                }
            }
            LabelStats::Classes(counts)
        }
        TaskKind::Regression => {
            let values: Vec<f64> = examples
                .iter()
                .filter_map(|e| match e.label {
                    Label::Value(v) => Some(f64::from(v)),
                    _ => None,
                })
                .collect();
            LabelStats::Values {
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                mean: values.iter().sum::<f64>() / values.len() as f64,
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            }
        }
    }
}
