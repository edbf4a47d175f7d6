//! The run configuration: one TOML file with `[model]`, `[data]`, `[train]` and `[output]`
//! sections, every key documented with its default, and `--set key.path=value` overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use taskmoe_data::synthetic::SyntheticConfig;
use taskmoe_data::MixtureSpec;
use taskmoe_model::ModelConfig;

use crate::error::{invalid, Result};
use crate::nonfinite::NonFinitePolicy;
use crate::optim::AdamWConfig;
use crate::overrides::{apply_overrides, deserialize_layered, merge_tables};
use crate::schedule::{Decay, ScheduleConfig};

/// The keys that hold file paths, by section.
const PATH_KEYS: [(&str, &str); 4] = [
    ("data", "registry"),
    ("data", "tokenizer"),
    ("train", "init_from"),
    ("train", "init_checkpoint"),
];

/// Tables that hold a serde-tagged enum: a layer that changes their `kind` replaces them.
const TAGGED_TABLES: &[&str] = &["data.mixture"];

/// Takes the model preset out of the file's `[model]` table and the overrides (the last
/// `--set model.preset=NAME` wins over the file): it chooses the layer beneath them and is no
/// key of the resolved configuration.
fn take_preset(
    file: &mut toml::Table,
    overrides: &[String],
    origin: &str,
) -> Result<(String, Vec<String>)> {
    let mut preset = "small".to_string();
    if let Some(model) = file.get_mut("model").and_then(toml::Value::as_table_mut) {
        match model.remove("preset") {
            Some(toml::Value::String(name)) => preset = name,
            Some(other) => {
                return Err(invalid(
                    "config",
                    format!("{origin}: key `model.preset`: expected a name, got {other}"),
                ))
            }
            None => {}
        }
    }
    let mut rest = Vec::with_capacity(overrides.len());
    for spec in overrides {
        match spec.split_once('=') {
            Some((key, name)) if key.trim() == "model.preset" => {
                preset = name.trim().trim_matches('"').to_string();
            }
            _ => rest.push(spec.clone()),
        }
    }
    Ok((preset, rest))
}

/// Whether the file or an override names the router kind (`model.moe.router.kind`, or an
/// inline table above it that holds a `kind`).
fn router_kind_given(file: &toml::Table, overrides: &[String]) -> bool {
    let in_file = file
        .get("model")
        .and_then(|m| m.get("moe"))
        .and_then(|m| m.get("router"))
        .and_then(|r| r.get("kind"))
        .is_some();
    in_file
        || overrides.iter().any(|spec| {
            let (key, value) = spec.split_once('=').unwrap_or((spec, ""));
            let key = key.trim();
            key == "model.moe.router.kind"
                || (["model", "model.moe", "model.moe.router"].contains(&key)
                    && value.contains("kind"))
        })
}

/// Everything a training run needs. `RunConfig::default()` is the embedded default run:
/// the synthetic benchmark and the small task-MoE preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The model (see `taskmoe_model::ModelConfig`). Default: the `small` preset.
    pub model: ModelConfig,
    /// Where examples come from and how tasks are mixed.
    pub data: DataConfig,
    /// Optimisation, schedule, checkpoints and evaluation cadence.
    pub train: TrainConfig,
    /// Where the run folder goes.
    pub output: OutputConfig,
}

/// Where the data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// The built-in synthetic multi-task benchmark (`[data.synthetic]`).
    Synthetic,
    /// Task files listed in a registry TOML (`data.registry`), tokenized with
    /// `data.tokenizer`.
    Registry,
}

/// The `[data]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `synthetic` or `registry`. Default `synthetic`.
    pub source: DataSource,
    /// The synthetic benchmark's settings. Default: `SyntheticConfig::compact()` (three skill
    /// families of one high-, one low-resource and one held-out task; a partial table changes
    /// only the keys it names).
    pub synthetic: SyntheticConfig,
    /// Registry TOML of real tasks (source `registry`); relative paths in it are relative to
    /// it. Default none.
    pub registry: Option<PathBuf>,
    /// `tokenizer.json` or WordPiece `vocab.txt` for registry data. Default none.
    pub tokenizer: Option<PathBuf>,
    /// Tasks to train on, by name; empty means every task not marked held out. Default empty.
    pub tasks: Vec<String>,
    /// Task mixing (seqio): `{ kind = "examples_proportional", cap = .., temperature = .. }`,
    /// `{ kind = "explicit", rates = { task = rate } }` or `{ kind = "uniform" }`. Default:
    /// examples-proportional, no cap, temperature 2 (rates `n^(1/2)`: a 400-example task gets
    /// a third of a 4,000-example task's rate instead of a tenth).
    pub mixture: MixtureSpec,
    /// Examples per training batch (tasks mixed within a batch). Default 32.
    pub batch_size: usize,
    /// Padded sequence length; 0 means the longest example of the data. Default 0.
    pub seq_len: usize,
    /// Keep only this many training examples of the named tasks: a deterministic subsample
    /// keyed by `train.seed` and the task name, nested across sizes (the 64-example set holds
    /// the 32-example one). Makes a task low-resource, or gives a held-out task its k-shot
    /// training set. Default empty.
    pub train_examples: BTreeMap<String, usize>,
}

/// The `[train]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps. Default 4000.
    pub steps: u64,
    /// Seed of everything random: initialisation, mixture sampling, dropout, router noise.
    /// Default 0.
    pub seed: u64,
    /// Start from a pretrained HF BERT-family folder (`config.json`, `model.safetensors`,
    /// e.g. `cargo xtask fetch-model minilm`): the encoder architecture (width, depth, heads,
    /// FFN and expert width, vocabulary, positions, LayerNorm epsilon, post-LN) comes from its
    /// `config.json` (the configured dropout rates are kept), its weights are
    /// imported, and the experts of MoE blocks are upcycled from the pretrained FFNs. Relative
    /// to the config file. Default none (random initialisation).
    pub init_from: Option<PathBuf>,
    /// Start from the weights of a taskmoe checkpoint folder (or a run folder: its newest
    /// complete checkpoint) made with the same `[model]` and tasks; the optimizer, schedule and
    /// step start fresh. This is how a trained multi-task model is fine-tuned on a new task
    /// or continued on a new mixture. Relative to the config file. Default none.
    pub init_checkpoint: Option<PathBuf>,
    /// Before training, start each key task from the value task (`{ new = "seen" }`): its
    /// head, its task embedding and, with `task_init_routing`, its routing are copied
    /// (`MultiTaskModel::init_task_from`). Default empty.
    pub task_init: BTreeMap<String, String>,
    /// Whether `task_init` copies the routing of task-aware routers too; `false` leaves the
    /// new task's routing as initialised. Default true.
    pub task_init_routing: bool,
    /// Noise of upcycling, as a fraction of each FFN weight matrix's standard deviation.
    /// Default 0: the experts start as exact copies of the pretrained FFN (sparse upcycling),
    /// so the upcycled model computes the pretrained one at step 0 (with top-1
    /// straight-through or renormalised gates and no drops); the experts diverge through the
    /// different tokens the router sends each of them.
    pub upcycle_noise: f64,
    /// AdamW settings. Default: betas 0.9 / 0.999, eps 1e-8, weight decay 0.01.
    pub optimizer: AdamWConfig,
    /// Learning-rate schedule; `total_steps = 0` means `steps`. Default: peak 1e-3, 100 warmup
    /// steps, linear decay to 0 over the run (the pre-LN `small` preset trains stably at 1e-3;
    /// the old post-LN default collapsed there).
    pub schedule: ScheduleConfig,
    /// Clip the global gradient L2 norm to this; 0 disables clipping. Default 1.0.
    pub clip_grad_norm: f64,
    /// Non-finite loss or gradient norm: `error` (stop, naming the step, task and last good
    /// checkpoint) or `skip-step`. Default `error`.
    pub nonfinite: NonFinitePolicy,
    /// A finite loss over this many times the running median of the last 100 applied steps'
    /// losses (the median floored at 1e-3; checked once 10 are known) is treated like a
    /// non-finite one, under `nonfinite`: an explosion is caught before it overflows. 0 turns the
    /// check off. Default 1e6.
    pub loss_spike_factor: f64,
    /// Loss weight per task name (others weigh 1). Default empty.
    pub task_weights: BTreeMap<String, f64>,
    /// CPU threads for libtorch; 0 keeps libtorch's default. Default 2.
    pub threads: usize,
    /// `cpu`, `cuda` or `auto`. Default `cpu`. `cuda` loads libtorch's CUDA library at start
    /// (an error naming it, or the driver, when that fails); `auto` falls back to the CPU with a
    /// message. Parameters, optimizer state and batches live on the device; checkpoints are
    /// always written from CPU copies and load onto any device.
    pub device: String,
    /// Compute precision of the encoder, experts and heads: `fp32` or `bf16` (libtorch
    /// autocast, on CPU and CUDA alike, with fp32 master weights, optimizer state, router,
    /// softmax, top-k, aux and task losses). No loss scaling: bf16 has fp32's exponent range.
    /// Default `fp32`.
    pub precision: taskmoe_device::Precision,
    /// Steps between checkpoints (the last step always gets one). Default 500.
    pub checkpoint_every: u64,
    /// Checkpoints kept (older ones are deleted once a newer one is complete). Default 2.
    pub keep_last: usize,
    /// Whether checkpoints hold the optimizer state (AdamW moments, twice the model's size),
    /// which `--resume` needs; `false` keeps only what evaluation and `init_checkpoint` read.
    /// Default true.
    pub save_optimizer: bool,
    /// Steps between evaluations on the validation split (and one at the end); 0 = only at
    /// the end. Default 500.
    pub eval_every: u64,
    /// Examples per evaluation batch. Default 256.
    pub eval_batch_size: usize,
    /// Keep the checkpoint of the best validation score beside the `keep_last` newest ones
    /// (an evaluation that sets a new best writes a checkpoint at its step, whatever
    /// `checkpoint_every` says). Default true.
    pub keep_best: bool,
    /// Under `nonfinite = "skip-step"`, the most steps that may be skipped; one more stops
    /// training with an error. Every skip is also warned about. Default 10.
    pub max_skipped_steps: u64,
    /// Which weights the final test evaluates: `last` (the end of training) or `best` (the
    /// checkpoint of the best validation score, early stopping; needs `keep_best` and
    /// `eval_every > 0`). `final-test.json` names the step. Default `last`.
    pub test_checkpoint: TestCheckpoint,
    /// Train only the parameters whose name contains one of these strings (e.g.
    /// `["router", "heads"]`: routing and task heads adapt, experts and encoder stay frozen);
    /// each must match at least one parameter. Empty trains everything. Default empty.
    pub train_only: Vec<String>,
    /// Expert-parallel degree: the experts of every MoE layer run split over this many ranks of
    /// a multi-process job (`cargo xtask train --nproc N`, torchrun), tokens travelling to them
    /// by all-to-all; it must divide the number of processes. 1 = every rank runs every expert.
    /// Default 1.
    pub expert_parallel: usize,
}

/// Which weights `taskmoe train`'s final test evaluates ([`TrainConfig::test_checkpoint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestCheckpoint {
    /// The weights at the end of training.
    #[default]
    Last,
    /// The checkpoint with the best validation score.
    Best,
}

/// The `[output]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Folder that holds run folders. Default `runs`.
    pub dir: PathBuf,
    /// The run folder's name; empty means `<variant>-seed<seed>`. Default empty.
    pub name: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: ModelConfig::small(),
            data: DataConfig::default(),
            train: TrainConfig::default(),
            output: OutputConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: DataSource::Synthetic,
            synthetic: SyntheticConfig::compact(),
            registry: None,
            tokenizer: None,
            tasks: Vec::new(),
            mixture: MixtureSpec::ExamplesProportional {
                cap: None,
                temperature: 2.0,
                scale: 1.0,
            },
            batch_size: 32,
            seq_len: 0,
            train_examples: BTreeMap::new(),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 4000,
            seed: 0,
            init_from: None,
            init_checkpoint: None,
            task_init: BTreeMap::new(),
            task_init_routing: true,
            upcycle_noise: 0.0,
            optimizer: AdamWConfig::default(),
            schedule: ScheduleConfig {
                peak_lr: 1e-3,
                warmup_steps: 100,
                total_steps: 0,
                decay: Decay::Linear,
                min_lr_ratio: 0.0,
            },
            clip_grad_norm: 1.0,
            nonfinite: NonFinitePolicy::Error,
            loss_spike_factor: 1e6,
            task_weights: BTreeMap::new(),
            threads: 2,
            device: "cpu".into(),
            precision: taskmoe_device::Precision::Fp32,
            checkpoint_every: 500,
            keep_last: 2,
            save_optimizer: true,
            eval_every: 500,
            eval_batch_size: 256,
            keep_best: true,
            max_skipped_steps: 10,
            test_checkpoint: TestCheckpoint::Last,
            train_only: Vec::new(),
            expert_parallel: 1,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("runs"),
            name: String::new(),
        }
    }
}

impl TrainConfig {
    /// `init_from` and `init_checkpoint` exclude each other.
    fn check_init(&self) -> Result<()> {
        if self.init_from.is_some() && self.init_checkpoint.is_some() {
            return Err(invalid(
                "config",
                "keys `train.init_from` and `train.init_checkpoint` exclude each other: start \
                 from a pretrained BERT or from a taskmoe checkpoint",
            ));
        }
        Ok(())
    }
}

impl RunConfig {
    /// Resolves a run configuration: the built-in preset, then the file `path` (if any), then
    /// `overrides` (`key.path=value`, the value in TOML syntax or a bare string), each layer
    /// deep-merged into the one beneath key by key ([`merge_tables`]: a table changes only the
    /// keys it gives), then validates. The preset is [`RunConfig::default`] with the model of
    /// `model.preset` (`small` unless the file or an override names another of
    /// [`ModelConfig::PRESETS`]). Errors name the file and key.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| invalid("config", format!("{}: {e}", p.display())))?,
            None => String::new(),
        };
        let origin = path.map_or("the default config".to_string(), |p| {
            p.display().to_string()
        });
        let mut file: toml::Table =
            toml::from_str(&text).map_err(|e| invalid("config", format!("{origin}: {e}")))?;
        // Paths written in the file are relative to the file; paths given with --set are
        // relative to the working directory. All become absolute, so a saved config.toml
        // reads back the same from wherever it is.
        if let Some(dir) = path.and_then(Path::parent) {
            for (section, key) in PATH_KEYS {
                let entry = file
                    .get_mut(section)
                    .and_then(|s| s.as_table_mut())
                    .and_then(|s| s.get_mut(key));
                if let Some(toml::Value::String(p)) = entry {
                    if Path::new(p.as_str()).is_relative() {
                        *p = dir.join(&*p).to_string_lossy().into_owned();
                    }
                }
            }
        }
        let (preset, overrides) = take_preset(&mut file, overrides, &origin)?;
        let kind_given = router_kind_given(&file, &overrides);
        let mut value = Self::preset_table(&preset)?;
        let beneath = value.clone();
        merge_tables(&mut value, file, TAGGED_TABLES);
        apply_overrides(&mut value, &overrides, &beneath, TAGGED_TABLES)?;
        let mut cfg: RunConfig = deserialize_layered(value, &origin, &overrides)?;
        if !kind_given {
            // The preset's router kind is a default, not a choice: a variant given without a
            // kind routes as that variant does (`token` for token-moe, the preset's
            // task-aware kind for task-moe).
            cfg.model = cfg.model.with_variant(cfg.model.variant);
        }
        for p in [
            &mut cfg.data.registry,
            &mut cfg.data.tokenizer,
            &mut cfg.train.init_from,
            &mut cfg.train.init_checkpoint,
        ]
        .into_iter()
        .flatten()
        {
            *p = std::path::absolute(&*p)
                .map_err(|e| invalid("config", format!("{}: {e}", p.display())))?;
        }
        cfg.train.check_init()?;
        if let Some(dir) = &cfg.train.init_from {
            // The architecture is the pretrained model's; variant, MoE, pooling, task embedding
            // and the dropout rates (training choices) stay as configured.
            let (variant, dropout, attention_dropout) = (
                cfg.model.variant,
                cfg.model.dropout,
                cfg.model.attention_dropout,
            );
            cfg.model = taskmoe_model::bert_config(dir, &cfg.model)
                .map_err(|e| invalid("config", format!("key `train.init_from`: {e}")))?;
            cfg.model.variant = variant;
            cfg.model.dropout = dropout;
            cfg.model.attention_dropout = attention_dropout;
            if cfg.data.tokenizer.is_none() {
                cfg.data.tokenizer = Some(dir.join("tokenizer.json"));
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values the sections' own types cannot: ranges and cross-section consistency.
    pub fn validate(&self) -> Result<()> {
        self.model
            .validate()
            .map_err(|e| invalid("config", e.to_string()))?;
        let t = &self.train;
        t.check_init()?;
        if t.steps == 0 {
            return Err(invalid("config", "key `train.steps`: must be at least 1"));
        }
        if self.data.batch_size == 0 {
            return Err(invalid(
                "config",
                "key `data.batch_size`: must be at least 1",
            ));
        }
        if t.eval_batch_size == 0 {
            return Err(invalid(
                "config",
                "key `train.eval_batch_size`: must be at least 1",
            ));
        }
        if t.keep_last == 0 {
            return Err(invalid(
                "config",
                "key `train.keep_last`: must be at least 1",
            ));
        }
        if t.test_checkpoint == TestCheckpoint::Best && (!t.keep_best || t.eval_every == 0) {
            return Err(invalid(
                "config",
                "key `train.test_checkpoint`: `best` needs `train.keep_best = true` and \
                 `train.eval_every > 0` (validation scores to choose by)",
            ));
        }
        if !(t.upcycle_noise.is_finite() && t.upcycle_noise >= 0.0) {
            return Err(invalid(
                "config",
                format!(
                    "key `train.upcycle_noise`: must be >= 0, got {}",
                    t.upcycle_noise
                ),
            ));
        }
        if !(t.clip_grad_norm.is_finite() && t.clip_grad_norm >= 0.0) {
            return Err(invalid(
                "config",
                format!(
                    "key `train.clip_grad_norm`: must be >= 0, got {}",
                    t.clip_grad_norm
                ),
            ));
        }
        if !(t.loss_spike_factor.is_finite() && t.loss_spike_factor >= 0.0) {
            return Err(invalid(
                "config",
                format!(
                    "key `train.loss_spike_factor`: must be >= 0 (0 = off), got {}",
                    t.loss_spike_factor
                ),
            ));
        }
        if !matches!(t.device.as_str(), "cpu" | "cuda" | "auto") {
            return Err(invalid(
                "config",
                format!(
                    "key `train.device`: `{}` is not one of cpu, cuda, auto",
                    t.device
                ),
            ));
        }
        for (task, w) in &t.task_weights {
            if !(w.is_finite() && *w >= 0.0) {
                return Err(invalid(
                    "config",
                    format!("key `train.task_weights.{task}`: must be >= 0, got {w}"),
                ));
            }
        }
        let schedule = self.optimizer_schedule();
        if schedule.decay != Decay::Constant && schedule.warmup_steps > schedule.total_steps {
            let end = if t.schedule.total_steps == 0 {
                format!(
                    "`train.steps` = {} (`total_steps = 0` means the run's steps)",
                    t.steps
                )
            } else {
                format!("`train.schedule.total_steps` = {}", schedule.total_steps)
            };
            return Err(invalid(
                "config",
                format!(
                    "key `train.schedule.warmup_steps`: {} warmup steps exceed the end of the \
                     decay, {end}",
                    schedule.warmup_steps
                ),
            ));
        }
        schedule.validate()?;
        t.optimizer.validate()?;
        if t.expert_parallel == 0 {
            return Err(invalid(
                "config",
                "key `train.expert_parallel`: must be at least 1 (1 = no expert parallelism)",
            ));
        }
        if self.data.source == DataSource::Registry
            && (self.data.registry.is_none() || self.data.tokenizer.is_none())
        {
            return Err(invalid(
                "config",
                "keys `data.registry` and `data.tokenizer` are needed when `data.source = \"registry\"`",
            ));
        }
        Ok(())
    }

    /// The layer every configuration starts from: [`RunConfig::default`] with the model preset
    /// `preset` (one of [`ModelConfig::PRESETS`]), as a TOML table.
    pub fn preset_table(preset: &str) -> Result<toml::Table> {
        let model = ModelConfig::preset(preset).ok_or_else(|| {
            invalid(
                "config",
                format!(
                    "key `model.preset`: `{preset}` is not one of {}",
                    ModelConfig::PRESETS.join(", ")
                ),
            )
        })?;
        let cfg = RunConfig {
            model,
            ..RunConfig::default()
        };
        toml::Table::try_from(cfg).map_err(|e| invalid("config", e.to_string()))
    }

    /// The schedule with `total_steps = 0` resolved to the run's steps.
    pub fn optimizer_schedule(&self) -> ScheduleConfig {
        let mut s = self.train.schedule;
        if s.total_steps == 0 {
            s.total_steps = self.train.steps;
        }
        s
    }

    /// The run folder: `output.dir / output.name` (or `<variant>-seed<seed>`).
    pub fn run_dir(&self) -> PathBuf {
        let name = if self.output.name.is_empty() {
            let variant = serde_json::to_value(self.model.variant)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_else(|| "model".into());
            format!("{variant}-seed{}", self.train.seed)
        } else {
            self.output.name.clone()
        };
        self.output.dir.join(name)
    }

    /// The configuration as TOML, as saved in every checkpoint.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the run config serializes to TOML")
    }
}
