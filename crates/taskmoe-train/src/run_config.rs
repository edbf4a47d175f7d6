//! The run configuration: one TOML file with `[model]`, `[data]` and the sections of
//! `config_sections.rs` (`[train]`, `[init]`, `[optim]`, `[schedule]`, `[checkpoint]`,
//! `[eval]`, `[runtime]`, `[output]`), every key documented with its default, and
//! `--set key.path=value` overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use taskmoe_data::synthetic::SyntheticConfig;
use taskmoe_data::MixtureSpec;
use taskmoe_experts::ExpertKind;
use taskmoe_model::ModelConfig;

use crate::config_sections::{
    CheckpointConfig, EvalConfig, InitConfig, OptimConfig, OutputConfig, RuntimeConfig,
    TestCheckpoint, TrainConfig,
};
use crate::error::{invalid, Result};
use crate::moved_keys::{check_override_keys, migrate_table, refuse_moved};
use crate::overrides::{apply_overrides, deserialize_layered, merge_tables};
use crate::saved_paths;
use taskmoe_optim::{Decay, ScheduleConfig};

/// The keys that hold file paths, by section.
const PATH_KEYS: [(&str, &str); 5] = [
    ("data", "registry"),
    ("data", "tokenizer"),
    ("init", "from"),
    ("init", "checkpoint"),
    ("runtime", "cache_dir"),
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
    /// How many steps, their seed, and what each step optimizes.
    pub train: TrainConfig,
    /// Where a fresh run's weights start.
    pub init: InitConfig,
    /// AdamW and gradient clipping.
    pub optim: OptimConfig,
    /// Learning-rate schedule; `total_steps = 0` means `train.steps`. Default: peak 1e-3, 100
    /// warmup steps, linear decay to 0 over the run (the pre-LN `small` preset trains stably
    /// at 1e-3; the old post-LN default collapsed there).
    pub schedule: ScheduleConfig,
    /// How often checkpoints are written, how many are kept, what they hold.
    pub checkpoint: CheckpointConfig,
    /// Validation during training and the final test.
    pub eval: EvalConfig,
    /// Device, precision, threads and expert parallelism.
    pub runtime: RuntimeConfig,
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

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: ModelConfig::small(),
            data: DataConfig::default(),
            train: TrainConfig::default(),
            init: InitConfig::default(),
            optim: OptimConfig::default(),
            schedule: ScheduleConfig {
                peak_lr: 1e-3,
                warmup_steps: 100,
                total_steps: 0,
                decay: Decay::Linear,
                min_lr_ratio: 0.0,
            },
            checkpoint: CheckpointConfig::default(),
            eval: EvalConfig::default(),
            runtime: RuntimeConfig::default(),
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

impl InitConfig {
    /// `from` and `checkpoint` exclude each other.
    fn check_exclusive(&self) -> Result<()> {
        if self.from.is_some() && self.checkpoint.is_some() {
            return Err(invalid(
                "config",
                "keys `init.from` and `init.checkpoint` exclude each other: start from a \
                 pretrained BERT or from a taskmoe checkpoint",
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
    /// [`ModelConfig::PRESETS`]). Errors name the file and key; a key that moved to another
    /// section ([`crate::MOVED_KEYS`]) is refused with its new name.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        Self::load_layers(path, overrides, false)
    }

    /// [`RunConfig::load`] for a configuration taskmoe saved itself (a run folder's or a
    /// checkpoint's `config.toml`): keys of an older layout are read at their new place, so
    /// checkpoints written before the sections existed load and resume. `--set`s must still
    /// use the new keys.
    pub fn load_saved(path: &Path, overrides: &[String]) -> Result<Self> {
        Self::load_layers(Some(path), overrides, true)
    }

    fn load_layers(path: Option<&Path>, overrides: &[String], saved: bool) -> Result<Self> {
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
        let moved = migrate_table(&mut file);
        if !moved.is_empty() && !saved {
            return Err(refuse_moved(&origin, &moved));
        }
        check_override_keys(overrides)?;
        // Paths written in the file are relative to the file (a saved file's, where that names
        // nothing, to the folder it was saved in: `saved_paths`); paths given with --set are
        // relative to the working directory. All become absolute and normalised, so a
        // configuration compares equal however its paths were spelled.
        let saved_in = saved_paths::saved_in(&text);
        if let Some(dir) = path.and_then(Path::parent) {
            for (section, key) in PATH_KEYS {
                let entry = file
                    .get_mut(section)
                    .and_then(|s| s.as_table_mut())
                    .and_then(|s| s.get_mut(key));
                if let Some(toml::Value::String(p)) = entry {
                    if Path::new(p.as_str()).is_relative() {
                        let resolved = saved_paths::resolve(p, dir, saved_in.as_deref());
                        *p = resolved.to_string_lossy().into_owned();
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
        for p in cfg.paths_mut().into_iter().flatten() {
            *p = std::path::absolute(&*p)
                .map(|absolute| saved_paths::normalize(&absolute))
                .map_err(|e| invalid("config", format!("{}: {e}", p.display())))?;
        }
        cfg.init.check_exclusive()?;
        if let Some(dir) = &cfg.init.from {
            // The architecture is the pretrained model's; variant, MoE, pooling, task embedding
            // and the dropout rates (training choices) stay as configured.
            let (variant, dropout, attention_dropout) = (
                cfg.model.variant,
                cfg.model.dropout,
                cfg.model.attention_dropout,
            );
            cfg.model = taskmoe_model::bert_config(dir, &cfg.model)
                .map_err(|e| invalid("config", format!("key `init.from`: {e}")))?;
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
        self.init.check_exclusive()?;
        if t.steps == 0 {
            return Err(invalid("config", "key `train.steps`: must be at least 1"));
        }
        if self.data.batch_size == 0 {
            return Err(invalid(
                "config",
                "key `data.batch_size`: must be at least 1",
            ));
        }
        if self.eval.batch_size == 0 {
            return Err(invalid(
                "config",
                "key `eval.batch_size`: must be at least 1",
            ));
        }
        if self.checkpoint.keep_last == 0 {
            return Err(invalid(
                "config",
                "key `checkpoint.keep_last`: must be at least 1",
            ));
        }
        if self.eval.test_checkpoint == TestCheckpoint::Best
            && (!self.checkpoint.keep_best || self.eval.every == 0)
        {
            return Err(invalid(
                "config",
                "key `eval.test_checkpoint`: `best` needs `checkpoint.keep_best = true` and \
                 `eval.every > 0` (validation scores to choose by)",
            ));
        }
        if self.eval.patience > 0 && self.eval.every == 0 {
            return Err(invalid(
                "config",
                "key `eval.patience`: needs `eval.every > 0` (validation scores to wait on)",
            ));
        }
        let noise = self.init.upcycle_noise;
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(invalid(
                "config",
                format!("key `init.upcycle_noise`: must be >= 0, got {noise}"),
            ));
        }
        let drop = self.init.upcycle_drop;
        if !(0.0..=1.0).contains(&drop) {
            return Err(invalid(
                "config",
                format!("key `init.upcycle_drop`: must be in [0, 1], got {drop}"),
            ));
        }
        if t.freeze_pretrained && self.init.from.is_none() && self.init.checkpoint.is_none() {
            return Err(invalid(
                "config",
                "key `train.freeze_pretrained`: needs pretrained weights to freeze \
                 (`init.from` or `init.checkpoint`)",
            ));
        }
        if self.model.variant.is_moe() && self.model.moe.expert_kind == ExpertKind::Lora {
            if noise != 0.0 || drop != 0.0 {
                return Err(invalid(
                    "config",
                    format!(
                        "key `init.upcycle_{}`: LoRA experts (`model.moe.expert_kind = \
                         \"lora\"`) share one frozen base FFN, which upcycling noise or \
                         dropped units would change for every expert alike; use 0",
                        if noise != 0.0 { "noise" } else { "drop" }
                    ),
                ));
            }
            if self.runtime.expert_parallel > 1 {
                return Err(invalid(
                    "config",
                    "key `runtime.expert_parallel`: LoRA experts (`model.moe.expert_kind = \
                     \"lora\"`) run on every rank; expert parallelism needs FFN experts",
                ));
            }
        }
        let clip = self.optim.clip_grad_norm;
        if !(clip.is_finite() && clip >= 0.0) {
            return Err(invalid(
                "config",
                format!("key `optim.clip_grad_norm`: must be >= 0, got {clip}"),
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
        let device = &self.runtime.device;
        if !matches!(device.as_str(), "cpu" | "cuda" | "auto") {
            return Err(invalid(
                "config",
                format!("key `runtime.device`: `{device}` is not one of cpu, cuda, auto"),
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
            let end = if self.schedule.total_steps == 0 {
                format!(
                    "`train.steps` = {} (`total_steps = 0` means the run's steps)",
                    t.steps
                )
            } else {
                format!("`schedule.total_steps` = {}", schedule.total_steps)
            };
            return Err(invalid(
                "config",
                format!(
                    "key `schedule.warmup_steps`: {} warmup steps exceed the end of the \
                     decay, {end}",
                    schedule.warmup_steps
                ),
            ));
        }
        schedule.validate()?;
        self.optim.adamw().validate()?;
        if self.runtime.expert_parallel == 0 {
            return Err(invalid(
                "config",
                "key `runtime.expert_parallel`: must be at least 1 (1 = no expert parallelism)",
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
        let mut s = self.schedule;
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

    /// The configuration as TOML, every path absolute.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the run config serializes to TOML")
    }

    /// The configuration as saved in `folder` (a run folder's or a checkpoint's `config.toml`):
    /// a header naming the folder, and the paths that share more than the filesystem root with
    /// it written relative to it, so the folder moved or copied with its data reads them where
    /// they now are, and moved alone still finds them where they were
    /// ([`RunConfig::load_saved`]).
    pub fn to_saved_toml(&self, folder: &Path) -> String {
        let folder = std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf());
        let folder = saved_paths::normalize(&folder);
        let mut cfg = self.clone();
        for p in cfg.paths_mut().into_iter().flatten() {
            *p = saved_paths::portable(p, &folder);
        }
        saved_paths::header(&folder) + &cfg.to_toml()
    }

    /// The configuration's file and folder paths (the keys of `PATH_KEYS`).
    fn paths_mut(&mut self) -> [&mut Option<PathBuf>; 5] {
        [
            &mut self.data.registry,
            &mut self.data.tokenizer,
            &mut self.init.from,
            &mut self.init.checkpoint,
            &mut self.runtime.cache_dir,
        ]
    }
}
