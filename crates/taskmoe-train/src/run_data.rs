//! The data of a run: every task's splits, encoded, and the heads the model needs for them.

use std::path::{Path, PathBuf};
use taskmoe_data::synthetic::SyntheticBenchmark;

use taskmoe_data::{
    subsample, LabelMode, Mixture, MixtureTask, Sampler, SamplerConfig, TaskData, TaskKind,
    TaskRegistry, TaskSpec, TextTokenizer,
};
use taskmoe_model::HeadSpec;

use crate::error::{invalid, Result, TrainError};
use crate::run_config::{DataSource, RunConfig};

/// Encoded splits of every task of a registry (held-out tasks included, so they have heads and
/// task slots for later few-shot use), and which of them a run trains on.
#[derive(Debug)]
pub struct RunData {
    /// Task specs in task-id order.
    pub specs: Vec<TaskSpec>,
    /// Training examples per task (task id order).
    pub train: Vec<TaskData>,
    /// Validation examples per task.
    pub validation: Vec<TaskData>,
    /// Test examples per task (empty where a task has none).
    pub test: Vec<TaskData>,
    /// Ids of the tasks in the training mixture.
    pub train_tasks: Vec<usize>,
    /// Padded sequence length.
    pub seq_len: usize,
    /// Vocabulary size the data needs.
    pub vocab_size: usize,
    /// Padding token id.
    pub pad_id: i64,
    /// The tokenizer file of registry data (`None` for the synthetic benchmark, whose
    /// vocabulary is regenerated); copied into every checkpoint.
    pub tokenizer_file: Option<PathBuf>,
    /// Rows skipped under `on_invalid = "skip"`, one entry per file that lost any.
    pub skipped: Vec<SkippedRows>,
}

/// The rows of one file skipped under `on_invalid = "skip"`.
#[derive(Debug, Clone)]
pub struct SkippedRows {
    /// Task name.
    pub task: String,
    /// Split name.
    pub split: String,
    /// The file.
    pub path: PathBuf,
    /// Rows skipped.
    pub count: usize,
    /// Rows kept.
    pub kept: usize,
    /// The first skipped row's error (file, line, field).
    pub first: String,
}

impl std::fmt::Display for SkippedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "task `{}` ({} split): skipped {} of {} rows of {} (on_invalid = \"skip\"); first: {}",
            self.task,
            self.split,
            self.count,
            self.count + self.kept,
            self.path.display(),
            self.first
        )
    }
}

impl RunData {
    /// Loads the configured data: generates the synthetic benchmark, or reads and tokenizes
    /// the registry's files.
    pub fn load(cfg: &RunConfig) -> Result<Self> {
        let d = &cfg.data;
        let mut data = match d.source {
            DataSource::Synthetic => {
                let bench = SyntheticBenchmark::generate(&d.synthetic)?;
                let registry = bench.registry()?;
                let split = |name: &str| -> Vec<TaskData> {
                    (0..registry.len())
                        .map(|id| {
                            bench.task_data(id, name).unwrap_or(TaskData {
                                task_id: id,
                                examples: Vec::new(),
                            })
                        })
                        .collect()
                };
                RunData {
                    specs: registry.tasks().to_vec(),
                    train: split("train"),
                    validation: split("validation"),
                    test: split("test"),
                    train_tasks: Vec::new(),
                    seq_len: bench.max_seq_len(),
                    vocab_size: bench.vocab().len(),
                    pad_id: 0,
                    tokenizer_file: None,
                    skipped: Vec::new(),
                }
            }
            DataSource::Registry => {
                let path = d.registry.as_ref().expect("validated");
                let registry = TaskRegistry::from_toml_file(path)?;
                let tok_path = d.tokenizer.as_ref().expect("validated");
                let tokenizer = load_tokenizer(tok_path, truncation_len(cfg))?;
                let mut skipped = Vec::new();
                let mut read = |spec: &TaskSpec, id: usize, split: &str| -> Result<TaskData> {
                    let examples = if spec.splits.contains_key(split) {
                        // Training needs labels; an evaluation split may be unlabeled (a test
                        // set without answers): it gets predictions and no scores.
                        let labels = if split == "train" {
                            LabelMode::Required
                        } else {
                            LabelMode::IfPresent
                        };
                        let report = registry.read_split_with(&spec.name, split, labels)?;
                        if let Some(first) = report.skipped.first() {
                            skipped.push(SkippedRows {
                                task: spec.name.clone(),
                                split: split.to_string(),
                                path: spec.splits[split].clone(),
                                count: report.skipped.len(),
                                kept: report.examples.len(),
                                first: first.to_string(),
                            });
                        }
                        tokenizer.encode_examples(&report.examples)?
                    } else {
                        Vec::new()
                    };
                    Ok(TaskData {
                        task_id: id,
                        examples,
                    })
                };
                let specs = registry.tasks().to_vec();
                let mut out = RunData {
                    train: Vec::new(),
                    validation: Vec::new(),
                    test: Vec::new(),
                    train_tasks: Vec::new(),
                    seq_len: 0,
                    vocab_size: tokenizer.vocab_size(),
                    pad_id: tokenizer.pad_id(),
                    specs: Vec::new(),
                    tokenizer_file: Some(tok_path.clone()),
                    skipped: Vec::new(),
                };
                for (id, spec) in specs.iter().enumerate() {
                    out.train.push(read(spec, id, "train")?);
                    out.validation.push(read(spec, id, "validation")?);
                    out.test.push(read(spec, id, "test")?);
                }
                out.skipped = skipped;
                out.seq_len = out
                    .train
                    .iter()
                    .chain(&out.validation)
                    .chain(&out.test)
                    .flat_map(|t| &t.examples)
                    .map(|e| e.input_ids.len())
                    .max()
                    .unwrap_or(1);
                out.specs = specs;
                out
            }
        };
        if d.seq_len > 0 {
            data.seq_len = d.seq_len;
        }
        data.subsample(cfg)?;
        data.train_tasks = data.select_tasks(&d.tasks)?;
        data.check_fits(cfg)?;
        Ok(data)
    }

    /// Prints one warning line per file that lost rows under `on_invalid = "skip"` to stderr.
    pub fn warn_skipped(&self) {
        for s in &self.skipped {
            eprintln!("warning: {s}");
        }
    }

    /// Applies `data.train_examples`.
    fn subsample(&mut self, cfg: &RunConfig) -> Result<()> {
        for (name, &n) in &cfg.data.train_examples {
            let id = self
                .id(name)
                .ok_or_else(|| self.unknown_task("data.train_examples", name))?;
            let kept = subsample(&self.train[id].examples, n, cfg.train.seed, name)
                .map_err(|e| invalid("config", format!("key `data.train_examples.{name}`: {e}")))?;
            self.train[id].examples = kept;
        }
        Ok(())
    }

    fn unknown_task(&self, key: &str, name: &str) -> TrainError {
        let known: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
        invalid(
            "config",
            format!(
                "key `{key}`: unknown task `{name}`; known tasks: {}",
                known.join(", ")
            ),
        )
    }

    fn select_tasks(&self, names: &[String]) -> Result<Vec<usize>> {
        if names.is_empty() {
            return Ok((0..self.specs.len())
                .filter(|&i| !self.specs[i].held_out)
                .collect());
        }
        names
            .iter()
            .map(|n| self.id(n).ok_or_else(|| self.unknown_task("data.tasks", n)))
            .collect()
    }

    fn check_fits(&self, cfg: &RunConfig) -> Result<()> {
        if self.vocab_size > cfg.model.vocab_size {
            return Err(invalid(
                "config",
                format!(
                    "key `model.vocab_size`: the data needs {} token ids, the model has {}",
                    self.vocab_size, cfg.model.vocab_size
                ),
            ));
        }
        if self.seq_len > cfg.model.max_position {
            return Err(invalid(
                "config",
                format!(
                    "key `model.max_position`: sequences are {} long, the model takes {}",
                    self.seq_len, cfg.model.max_position
                ),
            ));
        }
        for &t in &self.train_tasks {
            if self.train[t].examples.is_empty() {
                return Err(invalid(
                    "data",
                    format!("task `{}` has no training examples", self.specs[t].name),
                ));
            }
            if self.train[t].examples.iter().any(|e| !e.label.is_present()) {
                return Err(invalid(
                    "data",
                    format!(
                        "task `{}`: its training split has no labels",
                        self.specs[t].name
                    ),
                ));
            }
        }
        for name in cfg.train.task_weights.keys() {
            if self.id(name).is_none() {
                return Err(self.unknown_task(&format!("train.task_weights.{name}"), name));
            }
        }
        for (key, map) in [
            ("init.task_init", &cfg.init.task_init),
            ("init.routing_from", &cfg.init.routing_from),
        ] {
            for (new, seen) in map {
                for name in [new, seen] {
                    if self.id(name).is_none() {
                        return Err(self.unknown_task(&format!("{key}.{new}"), name));
                    }
                }
            }
        }
        Ok(())
    }

    /// The id of task `name`.
    pub fn id(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }

    /// One head per task, in task-id order.
    pub fn heads(&self) -> Vec<HeadSpec> {
        self.specs
            .iter()
            .map(|s| match s.kind {
                TaskKind::Classification => {
                    HeadSpec::classification(s.name.clone(), s.labels.len().max(2))
                }
                TaskKind::Regression => HeadSpec::regression(s.name.clone()),
            })
            .collect()
    }

    /// The training sampler over `train_tasks` with the configured mixture.
    pub fn sampler(&self, cfg: &RunConfig) -> Result<Sampler> {
        let tasks = self
            .train_tasks
            .iter()
            .map(|&t| MixtureTask {
                name: self.specs[t].name.clone(),
                task_id: t,
                num_examples: self.train[t].examples.len(),
            })
            .collect();
        let mixture = Mixture::new(&cfg.data.mixture, tasks)?;
        let data = self
            .train_tasks
            .iter()
            .map(|&t| self.train[t].clone())
            .collect();
        Ok(Sampler::new(
            mixture,
            data,
            SamplerConfig {
                batch_size: cfg.data.batch_size,
                seq_len: self.seq_len,
                pad_id: self.pad_id,
                seed: cfg.train.seed,
            },
        )?)
    }
}

/// The length the tokenizer cuts registry inputs to: `data.seq_len`, or `model.max_position`
/// when that is 0 (the run then pads to its longest example).
pub(crate) fn truncation_len(cfg: &RunConfig) -> usize {
    match cfg.data.seq_len {
        0 => cfg.model.max_position,
        n => n,
    }
}

/// Loads a tokenizer file: a WordPiece `vocab.txt` (uncased BERT pipeline) or a
/// `tokenizer.json`, truncating to `max_len`.
pub(crate) fn load_tokenizer(path: &Path, max_len: usize) -> Result<TextTokenizer> {
    Ok(match path.extension().is_some_and(|e| e == "txt") {
        true => TextTokenizer::from_wordpiece_vocab(path, true, max_len)?,
        false => TextTokenizer::from_file(path, max_len)?,
    })
}
