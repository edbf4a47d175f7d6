//! A checkpoint loaded for use on new text, from its own files alone: the model card, the
//! weights, the task specs and the tokenizer (see `assets.rs` for what a checkpoint carries).

use std::path::{Path, PathBuf};

use tch::{nn, Device};

use taskmoe_data::synthetic::SyntheticBenchmark;
use taskmoe_data::{TaskRegistry, TaskSpec, TextTokenizer};
use taskmoe_model::{load_card, ModelCard, MultiTaskModel};

use crate::checkpoint::Checkpoint;
use crate::error::{invalid, io_err, Result};
use crate::moved_keys::migrate_table;
use crate::run_config::{DataSource, RunConfig};
use crate::run_data::load_tokenizer;
use crate::run_folder::{MODEL_CARD_FILE, RUN_CONFIG_FILE, TASKS_FILE, TOKENIZER_JSON, VOCAB_TXT};

/// The tokenizer file a checkpoint holds, if any.
pub fn checkpoint_tokenizer(dir: &Path) -> Option<PathBuf> {
    [TOKENIZER_JSON, VOCAB_TXT]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// A checkpoint loaded for use on new text: the model with its weights, the task specs and
/// the tokenizer, all from the checkpoint folder.
pub struct Inference {
    /// CPU threads the run used (`runtime.threads` of its `config.toml`; 0 = libtorch's default).
    pub threads: usize,
    /// Task specs in task-id order.
    pub specs: Vec<TaskSpec>,
    /// The tokenizer, truncating to the run's sequence length (or the model's maximum).
    pub tokenizer: TextTokenizer,
    /// The parameters.
    pub vs: nn::VarStore,
    /// The model (evaluation mode is the caller's `train = false`).
    pub model: MultiTaskModel,
    /// The model card.
    pub card: ModelCard,
    /// Padding id.
    pub pad_id: i64,
    /// Whether each task (by id) is one the run trained on: the `data.tasks` of its
    /// `config.toml`, or every task not held out when that list is empty.
    pub trained: Vec<bool>,
}

impl Inference {
    /// Loads `ckpt` onto `device` from its own files: `config.json`, `model.safetensors`,
    /// [`TASKS_FILE`] and the tokenizer; of `config.toml` only `data.seq_len` and
    /// `runtime.threads` are read, so paths in it that no longer exist (data, a pretrained
    /// model) do not matter. Checkpoints made before taskmoe wrote [`TASKS_FILE`] fall back to
    /// the data named in their `config.toml` (which must then still exist).
    pub fn load(ckpt: &Checkpoint, device: Device) -> Result<Self> {
        let config_path = ckpt.file(RUN_CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|e| invalid("checkpoint", format!("{}: {e}", config_path.display())))?;
        // A checkpoint written before `[train]` was split keeps `threads` there.
        migrate_table(&mut table);
        let get = |section: &str, key: &str, default: usize| {
            table
                .get(section)
                .and_then(|s| s.get(key))
                .and_then(toml::Value::as_integer)
                .map_or(default, |v| v.max(0) as usize)
        };
        let (seq_len, threads) = (get("data", "seq_len", 0), get("runtime", "threads", 2));
        let card = load_card(&ckpt.file(MODEL_CARD_FILE))?;
        let max_len = if seq_len == 0 {
            card.model.max_position
        } else {
            seq_len.min(card.model.max_position)
        };
        let (specs, tokenizer) = match checkpoint_tokenizer(&ckpt.dir) {
            Some(tok) if ckpt.file(TASKS_FILE).is_file() => {
                let path = ckpt.file(TASKS_FILE);
                let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
                let specs = TaskRegistry::from_toml_str(&text)
                    .map_err(|e| invalid("checkpoint", format!("{}: {e}", path.display())))?
                    .tasks()
                    .to_vec();
                (specs, load_tokenizer(&tok, max_len)?)
            }
            _ => legacy_assets(&RunConfig::load_saved(&config_path, &[])?, max_len)?,
        };
        if specs.len() != card.heads.len() {
            return Err(invalid(
                "checkpoint",
                format!(
                    "{}: {} task specs but {} heads in {MODEL_CARD_FILE}",
                    ckpt.dir.display(),
                    specs.len(),
                    card.heads.len()
                ),
            ));
        }
        let vs = nn::VarStore::new(device);
        // Building draws initial weights (overwritten by the checkpoint's) from the global
        // generator: under its lock, so a trainer in the same process draws what it would alone.
        let model = {
            let _rng = taskmoe_device::lock_global_rng();
            MultiTaskModel::new(&vs.root(), &card.model, &card.heads)?
        };
        ckpt.load_weights(&vs)?;
        let pad_id = tokenizer.pad_id();
        let listed: Vec<&str> = table
            .get("data")
            .and_then(|d| d.get("tasks"))
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().filter_map(toml::Value::as_str).collect())
            .unwrap_or_default();
        let trained = specs
            .iter()
            .map(|s| match listed.is_empty() {
                true => !s.held_out,
                false => listed.contains(&s.name.as_str()),
            })
            .collect();
        Ok(Inference {
            threads,
            specs,
            tokenizer,
            vs,
            model,
            card,
            pad_id,
            trained,
        })
    }

    /// The id of task `name`, or an error listing the known tasks.
    pub fn task_id(&self, name: &str) -> Result<usize> {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
                invalid(
                    "task",
                    format!(
                        "unknown task `{name}`; the model knows: {}",
                        known.join(", ")
                    ),
                )
            })
    }
}

/// Specs and tokenizer of a checkpoint without [`TASKS_FILE`]: from the run's data.
fn legacy_assets(cfg: &RunConfig, max_len: usize) -> Result<(Vec<TaskSpec>, TextTokenizer)> {
    match cfg.data.source {
        DataSource::Synthetic => {
            let bench = SyntheticBenchmark::generate(&cfg.data.synthetic)?;
            let dir = std::env::temp_dir().join(format!("taskmoe-vocab-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let path = dir.join(VOCAB_TXT);
            bench.vocab().write_vocab_txt(&path)?;
            let tok = load_tokenizer(&path, max_len);
            let _ = std::fs::remove_dir_all(&dir);
            Ok((bench.registry()?.tasks().to_vec(), tok?))
        }
        DataSource::Registry => {
            let registry = cfg.data.registry.as_ref().expect("validated");
            let tok = cfg.data.tokenizer.as_ref().expect("validated");
            let specs = TaskRegistry::from_toml_file(registry)?.tasks().to_vec();
            Ok((specs, load_tokenizer(tok, max_len)?))
        }
    }
}
