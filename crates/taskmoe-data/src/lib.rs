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
//! Before training, [`DataCheck`] ([`check`]) reads every split of a registry in full with the
//! same readers and tokenizer and lists every problem (file, line, field) instead of stopping
//! at the first, with per-task numbers: examples per label, token lengths, inputs over the
//! sequence length, inputs repeated across splits.
//!
//! All randomness goes through [`rng`]: counter-based generators keyed by seed and position,
//! never a global generator. Besides the [`synthetic`] benchmark, two builders make
//! benchmarks of real text: [`wordnet`] (WordNet glosses labelled with their supersense, from
//! WordNet's data files) and [`pydocs`] (Python standard-library docstrings labelled with the
//! area of their package or their form, from the library's source files).
//!
//! # Example
//!
//! Two tasks of your own in TSV files, tokenized with a WordPiece vocabulary, mixed uniformly,
//! sampled into a batch and made into tensors:
//!
//! ```
//! use taskmoe_data::{
//!     Mixture, MixtureSpec, MixtureTask, Sampler, SamplerConfig, TaskData, TaskRegistry,
//!     TextTokenizer,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("taskmoe-data-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(
//!     dir.join("tasks.toml"),
//!     r#"
//! [[tasks]]
//! name = "sentiment"
//! family = "reviews"
//! kind = "classification"
//! labels = ["negative", "positive"]
//! text_fields = ["sentence"]
//! metrics = ["accuracy"]
//! splits = { train = "sentiment.tsv" }
//!
//! [[tasks]]
//! name = "topic"
//! family = "reviews"
//! kind = "classification"
//! labels = ["film", "music"]
//! text_fields = ["sentence"]
//! metrics = ["accuracy"]
//! splits = { train = "topic.tsv" }
//! "#,
//! )?;
//! std::fs::write(
//!     dir.join("sentiment.tsv"),
//!     "sentence\tlabel\na good film\tpositive\na bad song\tnegative\n",
//! )?;
//! std::fs::write(
//!     dir.join("topic.tsv"),
//!     "sentence\tlabel\nthe film\tfilm\nthe song\tmusic\na good song\tmusic\n",
//! )?;
//! let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nthe\ngood\nbad\nfilm\nsong\n";
//! std::fs::write(dir.join("vocab.txt"), vocab)?;
//!
//! // Task ids are registry positions; split paths are relative to the registry file.
//! let registry = TaskRegistry::from_toml_file(&dir.join("tasks.toml"))?;
//! let tokenizer = TextTokenizer::from_wordpiece_vocab(&dir.join("vocab.txt"), true, 8)?;
//! let (mut tasks, mut data) = (Vec::new(), Vec::new());
//! for (task_id, spec) in registry.tasks().iter().enumerate() {
//!     let text = registry.read_split(&spec.name, "train")?.examples;
//!     let examples = tokenizer.encode_examples(&text)?;
//!     let num_examples = examples.len();
//!     tasks.push(MixtureTask { name: spec.name.clone(), task_id, num_examples });
//!     data.push(TaskData { task_id, examples });
//! }
//! std::fs::remove_dir_all(&dir)?;
//!
//! let mixture = Mixture::new(&MixtureSpec::Uniform {}, tasks)?;
//! assert_eq!(mixture.probabilities(), [0.5, 0.5]);
//! let config = SamplerConfig { batch_size: 4, seq_len: 8, pad_id: tokenizer.pad_id(), seed: 7 };
//! let sampler = Sampler::new(mixture, data, config)?;
//! // A batch is a pure function of (seed, step): a resumed run sees the same batches.
//! let batch = sampler.batch(3);
//! assert_eq!(batch, sampler.batch(3));
//! let tensors = batch.to_tensors(tch::Device::Cpu)?;
//! assert_eq!(tensors.input_ids.size(), [4, 8]);
//! assert_eq!(tensors.task_ids.size(), [4]);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod batch;
pub mod check;
mod error;
mod example;
mod mixture;
pub mod pydocs;
mod readers;
pub mod realtext;
mod registry;
pub mod rng;
mod sampler;
mod spec;
pub mod synthetic;
mod tokenize;
pub mod wordnet;

pub use batch::{Batch, TensorBatch, IGNORE_INDEX};
pub use check::DataCheck;
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
pub use tokenize::{LengthCounter, PaddedEncoding, TextTokenizer};
