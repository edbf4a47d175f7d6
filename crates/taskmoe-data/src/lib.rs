//! Data for multi-task learning: task specs, readers, tokenizers, mixtures, samplers, and the
//! built-in synthetic benchmark.
//!
//! The data layer of taskmoe (see `docs/architecture.md`); it knows nothing of the model, and
//! meets it only at [`Batch::to_tensors`]. Data flows in this order:
//!
//! 1. a [`TaskRegistry`] of [`TaskSpec`]s, read from TOML, names every task, its family, kind,
//!    labels, text fields, metrics and split files, and gives it an id;
//! 2. [`read_file`] reads a split (GLUE-style TSV, HF `datasets` JSONL, CSV) into
//!    [`TextExample`]s, failing with file, line and field on bad rows;
//! 3. a [`TextTokenizer`] (`tokenizer.json` or WordPiece `vocab.txt`) encodes them into
//!    [`EncodedExample`]s, truncated to a maximum length; the [`synthetic`] benchmark produces
//!    encoded examples directly (and text renderings of them);
//! 4. a [`Mixture`] gives each training task a sampling rate as seqio does (explicit,
//!    examples-proportional with cap and temperature, uniform); [`subsample`] and
//!    [`k_shot_split`] make low-resource and few-shot versions of a task;
//! 5. a [`Sampler`] draws mixed-task [`Batch`]es whose content is a pure function of
//!    `(seed, step)`; [`SamplerState`] is all a checkpoint needs to resume the order;
//! 6. [`Batch::to_tensors`] makes the tch tensors the model consumes.
//!
//! All randomness goes through [`rng`]: counter-based generators keyed by seed and position,
//! never a global generator. Besides the [`synthetic`] benchmark, [`wordnet`] builds a
//! benchmark of real text (WordNet glosses labelled with their supersense) from WordNet's data
//! files.

#![warn(missing_docs)]

mod batch;
mod error;
mod example;
mod mixture;
mod readers;
mod registry;
pub mod rng;
mod sampler;
mod spec;
pub mod synthetic;
mod tokenize;
pub mod wordnet;

pub use batch::{Batch, TensorBatch, IGNORE_INDEX};
pub use error::{DataError, Result};
pub use example::{EncodedExample, Label, TaskData, TextExample};
pub use mixture::{
    examples_proportional_rate, k_shot_split, subsample, KShotSplit, Mixture, MixtureSpec,
    MixtureTask,
};
pub use readers::{
    read_file, read_file_with, read_inputs, InputTask, LabelMode, ReadOptions, ReadReport,
};
pub use registry::TaskRegistry;
pub use sampler::{eval_batches, Sampler, SamplerConfig, SamplerState};
pub use spec::{Format, Metric, OnInvalid, TaskKind, TaskSpec};
pub use tokenize::{PaddedEncoding, TextTokenizer};
