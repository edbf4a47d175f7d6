//! The data crate's error type.
//!
//! Errors about a data file name the file, the 1-based line (the header of a TSV or CSV file is
//! line 1) and the field, so a user can open the file at the right place.

use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong when task specs, data files, tokenizers, mixtures, samplers or the WordNet
/// and docstring builders are used.
#[derive(Debug, Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A data file holds no examples (no header, or a header and no rows).
    #[error("{path}: the file holds no examples")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line cannot be parsed at all: wrong number of columns, invalid JSON, not an object.
    #[error("{path}:{line}: malformed line: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A field the task spec names is absent from the header or from a JSON object.
    #[error("{path}:{line}: missing field `{field}`")]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line number (1 for a header).
        line: usize,
        /// The field the spec asks for.
        field: String,
    },
    /// A classification label is not in the task's label set.
    #[error(
        "{path}:{line}: field `{field}`: unknown label `{label}` (expected one of {allowed:?})"
    )]
    UnknownLabel {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The label field.
        field: String,
        /// The value found.
        label: String,
        /// The task's label set.
        allowed: Vec<String>,
    },
    /// A field holds a value of the wrong type (a text field that is not a string, a regression
    /// target that is not a number).
    #[error("{path}:{line}: field `{field}`: {message}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field.
        field: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A TOML file (task specs, benchmark config) does not parse or does not match the schema.
    #[error("{origin}: {source}")]
    Toml {
        /// The file, or `<string>` for text given directly.
        origin: String,
        /// The parser's error, with line and column.
        source: toml::de::Error,
    },
    /// A task spec, mixture or config is inconsistent.
    #[error("{what}: {message}")]
    Invalid {
        /// The object that is wrong (a task name, `mixture`, `sampler`...).
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The WordNet data files hold fewer usable synsets of a label than a task of the WordNet
    /// gloss benchmark asks for in a split ([`crate::wordnet`]).
    #[error(
        "task `{task}`: label `{label}` ({lexname}) has {found} usable synsets left in the \
         {split} split, {wanted} wanted"
    )]
    TooFewSynsets {
        /// The task.
        task: String,
        /// The label.
        label: String,
        /// The label's lexicographer file (`noun.animal`).
        lexname: String,
        /// The split file name (`train`, `dev`, `test`).
        split: String,
        /// Usable synsets left for it.
        found: usize,
        /// Synsets the task asks for.
        wanted: usize,
    },
    /// The Python library holds fewer usable docstrings of a label than a task of the
    /// docstring benchmark asks for in a split ([`crate::pydocs`]).
    #[error(
        "task `{task}`: label `{label}` has {found} usable docstrings left in the {split} \
         split, {wanted} wanted"
    )]
    TooFewDocstrings {
        /// The task.
        task: String,
        /// The label.
        label: String,
        /// The split file name (`train`, `dev`, `test`).
        split: String,
        /// Usable docstrings left for it.
        found: usize,
        /// Docstrings the task asks for.
        wanted: usize,
    },
    /// A name that is not registered.
    #[error("unknown task `{0}`")]
    UnknownTask(String),
    /// The `tokenizers` crate reported an error.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// libtorch reported an error while building tensors.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// `Result` with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

/// Builds a [`DataError::Invalid`].
pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> DataError {
    DataError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}
