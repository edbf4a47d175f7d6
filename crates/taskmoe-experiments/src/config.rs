//! Experiment settings: a profile (`quick` or `full`, embedded TOML files), optionally
//! overridden by a user's TOML file and `--set key.path=value`, naming the run configuration
//! every arm starts from.

use std::path::{Path, PathBuf};

use crate::error::{bail, Context, ExperimentError, Result};
use serde::{Deserialize, Serialize};
use taskmoe_model::{TaskEmbedding, Variant};
use taskmoe_router::RouterKind;
use taskmoe_train::{apply_overrides, deserialize_layered, merge_tables, RunConfig};

/// A named set of experiment settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// 16 seeds (and 3 tuning seeds) on the small generator-v2 benchmark: about 1.5 hours on
    /// 2 CPU cores (docs/results.md).
    Quick,
    /// 16 seeds (and 3 tuning seeds) on the full-size generator-v2 benchmark and the `small`
    /// model, more sizes: sized for a GPU.
    Full,
}

impl Profile {
    /// Parses `quick` or `full`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "quick" => Ok(Profile::Quick),
            "full" => Ok(Profile::Full),
            other => bail!("unknown profile `{other}`: expected quick or full"),
        }
    }

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Full => "full",
        }
    }

    /// The profile's experiment settings (TOML).
    pub fn settings_toml(self) -> &'static str {
        match self {
            Profile::Quick => include_str!("../profiles/quick.toml"),
            Profile::Full => include_str!("../profiles/full.toml"),
        }
    }

    /// The run configuration its arms start from (TOML).
    pub fn run_toml(self) -> &'static str {
        match self {
            Profile::Quick => include_str!("../profiles/quick-run.toml"),
            Profile::Full => include_str!("../profiles/full-run.toml"),
        }
    }
}

/// Everything an experiment needs besides the run configuration. Unknown keys are errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// Seeds `first_seed..seeds`; each seed is a fresh draw of everything random (the synthetic
    /// benchmark, subsamples, initialisation, batches). Default 3.
    pub seeds: u64,
    /// The first seed: a benchmark run in chunks on machines that do not keep their files
    /// runs seeds `first_seed..seeds` into a folder of its own, and `taskmoe verdicts` merges
    /// the chunks' reports (`--bench NAME=DIR` once per chunk). Default 0.
    pub first_seed: u64,
    /// Seeds hyperparameters are chosen on (validation scores only): `1000..1000 +
    /// tuning_seeds`, disjoint from the reported seeds. Default 3.
    pub tuning_seeds: u64,
    /// Runs trained at the same time (each its own process); with `runtime.threads = 1` this is
    /// the number of cores to use. Default 2.
    pub jobs: usize,
    /// Validation evaluations of every run an experiment trains (mixtures, seen-task models,
    /// fine-tunes, single-task models): each run is tested, and later stages start, at its
    /// best validation checkpoint (early stopping), so every arm is compared at its best, not
    /// at the end of a budget. 0 tests the last step instead. Default 10.
    pub evals_per_run: u64,
    /// With `evals_per_run`: each run may train up to this many times its configured steps
    /// (the learning-rate schedule spread over all of them), evaluated at the same interval
    /// (`steps / evals_per_run`), so that a run still improving at its configured length can go
    /// on. Default 1.
    pub budget_factor: u64,
    /// With `evals_per_run`: a run ends after this many evaluations in a row without a better
    /// validation score (`eval.patience`); 0 trains every run to its budget. Default 0.
    pub patience: u64,
    /// The run configuration every arm starts from, relative to this file; none means the
    /// profile's own. Default none.
    pub run_config: Option<PathBuf>,
    /// Overrides applied to that run configuration (`key.path=value`, as `taskmoe train
    /// --set`). Default empty.
    pub run_set: Vec<String>,
    /// The low-resource experiment.
    pub low_resource: LowResourceConfig,
    /// The unseen-task experiment.
    pub unseen: UnseenConfig,
    /// The unrelated-task experiment.
    pub unrelated: UnrelatedConfig,
}

/// `[low_resource]`: tasks cut to few training examples inside the mixture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowResourceConfig {
    /// The tasks made low-resource; empty means the synthetic benchmark's low-resource tasks
    /// (real data must name them). Default empty.
    pub tasks: Vec<String>,
    /// The mixture: the low-resource tasks, the related high-resource tasks they may learn
    /// from, and unrelated high-resource tasks they should not (the setting where routing can
    /// choose what to share; the protocol's claim 1); empty means the synthetic benchmark's
    /// high- and low-resource family tasks and its unrelated tasks (real data must name them).
    /// Default empty.
    pub mixture: Vec<String>,
    /// Mixture temperatures (examples-proportional sampling, `rate = n^(1/T)`) each
    /// multi-task arm is tuned over: the one with the best validation mean of the
    /// low-resource tasks on the tuning seeds, at the smallest size, is used for that arm
    /// everywhere (reported). Default `[1, 2, 4]`.
    pub temperatures: Vec<f64>,
    /// Training examples kept per low-resource task (nested subsamples). Default `[32, 128]`.
    pub sizes: Vec<usize>,
    /// Synthetic data only: further values of the relatedness knob `rho`, each run at the
    /// smallest size (the sizes run at the run configuration's own `rho`) with the multi-task
    /// arms. Default `[0.0, 0.5, 0.9]`.
    pub relatedness: Vec<f64>,
    /// The arms: `single-task`, `dense`, `task-dense` (the task-conditioned dense control:
    /// dense with `model.task_embedding = "added"`), `token-moe`, `task-moe` (the configured
    /// router) or `task-moe:<router kind>`; the primary contrast is `task-moe` (the configured
    /// router, or the first task-MoE arm) minus `dense`. Default: single-task, dense,
    /// task-dense, token-moe, task-moe.
    pub variants: Vec<String>,
}

/// `[unseen]`: k-shot fine-tuning on held-out tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnseenConfig {
    /// The held-out tasks; empty means every task marked `held_out`. Default empty.
    pub tasks: Vec<String>,
    /// Shots: training examples of the new task (nested subsamples). Default `[16, 64, 256]`.
    pub k: Vec<usize>,
    /// Fine-tuning steps at every k. Default 150.
    pub steps: u64,
    /// Fine-tuning batch size (at most k). Default 16.
    pub batch_size: usize,
    /// Fine-tuning peak learning rates (10% warmup, linear decay): every arm is tuned over the
    /// same grid, on the validation mean of the tuning seeds, and reported at its choice.
    /// Default `[3e-4, 1e-3, 3e-3]`.
    pub peak_lrs: Vec<f64>,
}

/// `[unrelated]`: adding unrelated or conflicting tasks to a base mixture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnrelatedConfig {
    /// The base mixture; empty means the synthetic benchmark's family tasks. Default empty.
    pub base_tasks: Vec<String>,
    /// The tasks added; empty means the synthetic benchmark's conflicting and unrelated
    /// tasks. Default empty.
    pub new_tasks: Vec<String>,
    /// Steps of the sequential protocol: the base model continued on the added tasks alone
    /// (no rehearsal), after which the original tasks are tested again (forgetting).
    /// Default 400.
    pub extra_steps: u64,
    /// The arms (as `low_resource.variants`, without `single-task`); they must include `dense`
    /// and a `task-moe` arm, whose difference is the primary contrast. Default: dense,
    /// task-dense, task-moe.
    pub variants: Vec<String>,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            seeds: 3,
            first_seed: 0,
            tuning_seeds: 3,
            jobs: 2,
            evals_per_run: 10,
            budget_factor: 1,
            patience: 0,
            run_config: None,
            run_set: Vec::new(),
            low_resource: LowResourceConfig::default(),
            unseen: UnseenConfig::default(),
            unrelated: UnrelatedConfig::default(),
        }
    }
}

impl Default for LowResourceConfig {
    fn default() -> Self {
        LowResourceConfig {
            tasks: Vec::new(),
            mixture: Vec::new(),
            temperatures: vec![1.0, 2.0, 4.0],
            sizes: vec![32, 128],
            relatedness: vec![0.0, 0.5, 0.9],
            variants: [
                "single-task",
                "dense",
                "task-dense",
                "token-moe",
                "task-moe",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Default for UnseenConfig {
    fn default() -> Self {
        UnseenConfig {
            tasks: Vec::new(),
            k: vec![16, 64, 256],
            steps: 150,
            batch_size: 16,
            peak_lrs: vec![3e-4, 1e-3, 3e-3],
        }
    }
}

impl Default for UnrelatedConfig {
    fn default() -> Self {
        UnrelatedConfig {
            base_tasks: Vec::new(),
            new_tasks: Vec::new(),
            extra_steps: 400,
            variants: ["dense", "task-dense", "task-moe"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The settings and the base run configuration of one invocation.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The profile the settings started from.
    pub profile: Profile,
    /// The experiment settings.
    pub settings: ExperimentConfig,
    /// The run configuration every arm starts from (paths absolute).
    pub run: RunConfig,
    /// The settings as TOML, as saved in each report folder.
    pub settings_toml: String,
}

impl ExperimentConfig {
    /// The profile's settings, with `file`'s keys over them (tables merge key by key), then
    /// `set` overrides; errors name the file and key. The run configuration comes from
    /// `run_config` (relative to `file`) or the profile, with `run_set` and then `run_set_extra`
    /// (the command line's `--run-set`) applied; it is written to `scratch/base-run.toml` first
    /// when it is the profile's own, so that every run reads from a file.
    pub fn load(
        profile: Profile,
        file: Option<&Path>,
        set: &[String],
        run_set_extra: &[String],
        scratch: &Path,
    ) -> Result<Loaded> {
        let mut table: toml::Table = toml::from_str(profile.settings_toml())
            .with_context(|| format!("the embedded {} profile", profile.name()))?;
        let origin = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let user: toml::Table =
                    toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
                merge_tables(&mut table, user, &[]);
                path.display().to_string()
            }
            None => format!("the {} profile", profile.name()),
        };
        let defaults = toml::Table::try_from(ExperimentConfig::default())?;
        apply_overrides(&mut table, set, &defaults, &[])?;
        let mut settings: ExperimentConfig = deserialize_layered(table, &origin, set)?;
        settings.run_set.extend(run_set_extra.iter().cloned());
        settings.validate(&origin)?;
        std::fs::create_dir_all(scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let run_path = match &settings.run_config {
            Some(p) if p.is_relative() => file
                .and_then(Path::parent)
                .map_or_else(|| p.clone(), |dir| dir.join(p)),
            Some(p) => p.clone(),
            None => {
                let path = scratch.join("base-run.toml");
                std::fs::write(&path, profile.run_toml())
                    .with_context(|| format!("writing {}", path.display()))?;
                path
            }
        };
        let run = RunConfig::load(Some(&run_path), &settings.run_set)
            .with_context(|| format!("the run configuration {}", run_path.display()))?;
        settings.run_config = Some(std::path::absolute(&run_path)?);
        let settings_toml = toml::to_string_pretty(&settings)?;
        Ok(Loaded {
            profile,
            settings,
            run,
            settings_toml,
        })
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let err = |key: &str, what: &str| bail!("{origin}: key `{key}`: {what}");
        if self.seeds == 0 {
            return err("seeds", "must be at least 1");
        }
        if self.first_seed >= self.seeds {
            return err(
                "first_seed",
                &format!(
                    "{} leaves no seed below `seeds` = {} (the seeds run are first_seed..seeds)",
                    self.first_seed, self.seeds
                ),
            );
        }
        if self.jobs == 0 {
            return err("jobs", "must be at least 1");
        }
        if self.budget_factor == 0 {
            return err("budget_factor", "must be at least 1");
        }
        if (self.budget_factor > 1 || self.patience > 0) && self.evals_per_run == 0 {
            return err(
                "evals_per_run",
                "`budget_factor` and `patience` need validation evaluations (evals_per_run > 0)",
            );
        }
        if self.low_resource.sizes.is_empty() || self.low_resource.sizes.contains(&0) {
            return err(
                "low_resource.sizes",
                "needs at least one size, all positive",
            );
        }
        if self
            .low_resource
            .relatedness
            .iter()
            .any(|r| !(0.0..=1.0).contains(r))
        {
            return err("low_resource.relatedness", "values must lie in [0, 1]");
        }
        for v in &self.low_resource.variants {
            Arm::parse(v).map_err(|e| {
                ExperimentError::Invalid(format!("{origin}: key `low_resource.variants`: {e}"))
            })?;
        }
        if self.unseen.k.is_empty() || self.unseen.k.contains(&0) {
            return err("unseen.k", "needs at least one k, all positive");
        }
        if self.unseen.steps == 0 || self.unseen.batch_size == 0 {
            return err("unseen.steps", "steps and batch_size must be at least 1");
        }
        if self.unseen.peak_lrs.is_empty()
            || self
                .unseen
                .peak_lrs
                .iter()
                .any(|lr| !(lr.is_finite() && *lr > 0.0))
        {
            return err("unseen.peak_lrs", "needs at least one rate, all positive");
        }
        if self
            .low_resource
            .temperatures
            .iter()
            .any(|t| !(t.is_finite() && *t > 0.0))
            || self.low_resource.temperatures.is_empty()
        {
            return err(
                "low_resource.temperatures",
                "needs at least one temperature, all positive",
            );
        }
        if self.unrelated.extra_steps == 0 {
            return err("unrelated.extra_steps", "must be at least 1");
        }
        let arms = self
            .unrelated
            .variants
            .iter()
            .map(|v| Arm::parse(v))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| {
                ExperimentError::Invalid(format!("{origin}: key `unrelated.variants`: {e}"))
            })?;
        if arms.iter().any(|a| a.variant == Variant::SingleTask)
            || !arms.iter().any(Arm::is_plain_dense)
            || !arms.iter().any(|a| a.variant == Variant::TaskMoe)
        {
            return err(
                "unrelated.variants",
                "needs `dense` and a `task-moe` arm, and no `single-task`",
            );
        }
        Ok(())
    }
}

/// One arm of a comparison: a model variant, for task-MoE its router, and for the
/// task-conditioned dense control its task embedding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arm {
    /// How reports name it (`dense`, `task-dense`, `task-moe:per-task`, ...).
    pub label: String,
    /// The model variant.
    pub variant: Variant,
    /// The router kind of a `task-moe` arm; `None` keeps the configured one.
    pub router: Option<RouterKind>,
    /// How the encoder is told the task: `added` for `task-dense`; `None` keeps the
    /// configured `model.task_embedding`.
    pub task_embedding: Option<TaskEmbedding>,
}

impl Arm {
    /// Parses `single-task`, `dense`, `task-dense`, `token-moe`, `task-moe` or
    /// `task-moe:<kind>` with kind `task-concat`, `per-task` or `task-level`. `task-dense` is
    /// the task-conditioned dense control: the dense variant with `model.task_embedding =
    /// "added"` (a learned vector per task added to every token, above the frozen bottom when
    /// `model.frozen_layers > 0`), so it separates task-aware routing from an encoder that
    /// knows the task.
    pub fn parse(text: &str) -> Result<Self> {
        let (name, kind) = match text.split_once(':') {
            Some((n, k)) => (n, Some(k)),
            None => (text, None),
        };
        let (variant, task_embedding) = match name {
            "single-task" => (Variant::SingleTask, None),
            "dense" => (Variant::Dense, None),
            "task-dense" => (Variant::Dense, Some(TaskEmbedding::Added)),
            "token-moe" => (Variant::TokenMoe, None),
            "task-moe" => (Variant::TaskMoe, None),
            other => bail!(
                "unknown arm `{other}`: expected single-task, dense, task-dense, token-moe, \
                 task-moe or task-moe:<router kind>"
            ),
        };
        let router = match (variant, kind) {
            (_, None) => None,
            (Variant::TaskMoe, Some("task-concat")) => Some(RouterKind::TaskConcat),
            (Variant::TaskMoe, Some("per-task")) => Some(RouterKind::PerTask),
            (Variant::TaskMoe, Some("task-level")) => Some(RouterKind::TaskLevel),
            (_, Some(k)) => bail!(
                "`{text}`: only task-moe takes a router kind, one of task-concat, per-task, \
                 task-level (got `{k}`)"
            ),
        };
        Ok(Arm {
            label: text.to_string(),
            variant,
            router,
            task_embedding,
        })
    }

    /// `base` turned into this arm's run configuration (model only): its variant, and its
    /// router kind and task embedding where it has them.
    pub fn apply(&self, base: &RunConfig) -> RunConfig {
        let mut cfg = base.clone();
        cfg.model = base.model.with_variant(self.variant);
        if let Some(kind) = self.router {
            cfg.model.moe.router.kind = kind;
        }
        if let Some(mode) = self.task_embedding {
            cfg.model.task_embedding = mode;
        }
        cfg
    }

    /// Whether this is the plain dense arm (`dense`): the dense variant with the configured
    /// task embedding, the baseline of the primary contrast (`task-dense` is not).
    pub fn is_plain_dense(&self) -> bool {
        self.variant == Variant::Dense && self.task_embedding.is_none()
    }
}
