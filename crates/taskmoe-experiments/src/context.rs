//! What every experiment shares: the loaded settings, where reports go, how runs are started.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use crate::error::{Context, Result};
use taskmoe_data::synthetic::{SyntheticBenchmark, TaskRole};
use taskmoe_eval::bag_of_words;
use taskmoe_model::param_report;
use taskmoe_train::{DataSource, RunConfig, RunData, TestCheckpoint};

use taskmoe_data::MixtureSpec;

use crate::config::Loaded;
use crate::experiment::Experiment;
use crate::runner::Runner;

/// The first tuning seed ([`ExperimentContext::tuning_seeds`]).
pub const TUNING_SEED_BASE: u64 = 1000;

/// The settings, the output folder and the `taskmoe` binary that trains the arms.
#[derive(Clone, Debug)]
pub struct ExperimentContext {
    /// Settings and base run configuration.
    pub loaded: Loaded,
    /// The `taskmoe` executable.
    pub exe: PathBuf,
    /// The folder that holds one folder per experiment.
    pub out: PathBuf,
    /// The command line that made the reports (quoted in them).
    pub command: String,
}

impl ExperimentContext {
    /// The report folder of `experiment`.
    pub fn dir(&self, experiment: Experiment) -> PathBuf {
        self.out.join(experiment.name())
    }

    /// A runner for `experiment`'s runs.
    pub fn runner(&self, experiment: Experiment) -> Runner {
        Runner::new(
            self.exe.clone(),
            &self.dir(experiment),
            self.loaded.settings.jobs,
        )
    }

    /// The base run configuration.
    pub fn base(&self) -> &RunConfig {
        &self.loaded.run
    }

    /// The seeds, `first_seed..seeds`.
    pub fn seeds(&self) -> Vec<u64> {
        (self.loaded.settings.first_seed..self.loaded.settings.seeds).collect()
    }

    /// The tuning seeds, `TUNING_SEED_BASE..TUNING_SEED_BASE + tuning_seeds`: hyperparameters
    /// are chosen on their validation scores, so the seeds that are reported never took part
    /// in a choice.
    pub fn tuning_seeds(&self) -> Vec<u64> {
        let n = self.loaded.settings.tuning_seeds;
        (TUNING_SEED_BASE..TUNING_SEED_BASE + n).collect()
    }

    /// `cfg` with an examples-proportional mixture at `temperature` (keeping the base
    /// mixture's cap and scale when it has them).
    pub fn with_temperature(&self, cfg: &RunConfig, temperature: f64) -> RunConfig {
        let mut cfg = cfg.clone();
        let (cap, scale) = match &cfg.data.mixture {
            MixtureSpec::ExamplesProportional { cap, scale, .. } => (*cap, *scale),
            _ => (None, 1.0),
        };
        cfg.data.mixture = MixtureSpec::ExamplesProportional {
            cap,
            temperature,
            scale,
        };
        cfg
    }

    /// Whether the data is the synthetic benchmark.
    pub fn synthetic(&self) -> bool {
        self.base().data.source == DataSource::Synthetic
    }

    /// `cfg` with seed `seed` for training and, on synthetic data, for the benchmark itself
    /// (each seed draws new task weights and examples).
    pub fn seeded(&self, cfg: &RunConfig, seed: u64) -> RunConfig {
        let mut cfg = cfg.clone();
        cfg.train.seed = seed;
        if cfg.data.source == DataSource::Synthetic {
            cfg.data.synthetic.seed = seed;
        }
        cfg
    }

    /// `cfg` evaluated on validation every `steps / evals_per_run` steps and tested at its
    /// best validation checkpoint (early stopping: `eval.test_checkpoint = "best"`,
    /// `checkpoint.keep_best`), keeping that checkpoint and the last; with `budget_factor` its
    /// steps (and checkpoint interval) multiplied, the schedule spread over them; with
    /// `patience`, ended after that many evaluations without a better score. Unchanged when
    /// `evals_per_run` is 0.
    pub fn early_stopped(&self, cfg: RunConfig) -> RunConfig {
        let s = &self.loaded.settings;
        if s.evals_per_run == 0 {
            return cfg;
        }
        let mut cfg = cfg;
        cfg.eval.every = (cfg.train.steps / s.evals_per_run).max(1);
        cfg.train.steps *= s.budget_factor;
        if cfg.checkpoint.every >= cfg.train.steps / s.budget_factor {
            // Checkpoints only at the end (and the best): keep it so.
            cfg.checkpoint.every = cfg.train.steps;
        }
        if cfg.schedule.total_steps > 0 {
            cfg.schedule.total_steps *= s.budget_factor;
        }
        cfg.eval.patience = s.patience;
        cfg.checkpoint.keep_best = true;
        cfg.checkpoint.keep_last = 1;
        cfg.eval.test_checkpoint = TestCheckpoint::Best;
        cfg
    }

    /// The bag-of-words baseline (TF-IDF and a softmax regression per task,
    /// [`taskmoe_eval::bag_of_words()`]) on `cfg`'s data, its training subsamples included: each
    /// of `tasks`' test score in its headline metric; a task the baseline skips (a regression
    /// task, no test labels) is left out.
    pub fn bag_of_words(&self, cfg: &RunConfig, tasks: &[String]) -> Result<BTreeMap<String, f64>> {
        let data = RunData::load(cfg)?;
        let mut scores = BTreeMap::new();
        for t in tasks {
            let id = data
                .id(t)
                .with_context(|| format!("bag-of-words baseline: task `{t}`"))?;
            let result = bag_of_words(
                &data.specs[id],
                &data.train[id],
                &data.validation[id],
                &data.test[id],
            )?;
            if let Some(fit) = result.fit() {
                scores.insert(t.clone(), fit.test_primary);
            }
        }
        Ok(scores)
    }

    /// How the reports say which weights were tested ([`Self::early_stopped`]).
    pub fn stopping_text(&self) -> String {
        let s = &self.loaded.settings;
        let n = s.evals_per_run;
        if n == 0 {
            return "Every run is tested at its last step.".into();
        }
        let budget = match s.budget_factor {
            1 => String::new(),
            f => format!(
                " Each run may train up to {f} times its configured steps (the schedule spread \
                 over them), evaluated at the same interval;"
            ),
        };
        let patience = match s.patience {
            0 => String::new(),
            p => format!(" it ends after {p} evaluations in a row without a better score;"),
        };
        format!(
            "Every run is evaluated on validation every 1/{n} of its configured steps.{budget}\
             {patience} it is tested at its best validation checkpoint (early stopping), and \
             later stages start from that checkpoint."
        )
    }

    /// The synthetic benchmark of the base configuration's data; `None` for real data.
    pub fn benchmark(&self) -> Result<Option<SyntheticBenchmark>> {
        if !self.synthetic() {
            return Ok(None);
        }
        Ok(Some(SyntheticBenchmark::generate(
            &self.base().data.synthetic,
        )?))
    }

    /// Names of the synthetic tasks with one of `roles`, in benchmark order; `None` for real
    /// data.
    pub fn tasks_with_role(&self, roles: &[TaskRole]) -> Result<Option<Vec<String>>> {
        Ok(self.benchmark()?.map(|b| {
            b.tasks()
                .iter()
                .filter(|t| roles.contains(&t.role))
                .map(|t| t.spec.name.clone())
                .collect()
        }))
    }

    /// The base configuration's data (tasks, heads, lengths).
    pub fn base_data(&self) -> Result<RunData> {
        Ok(RunData::load(self.base())?)
    }

    /// Active parameters per token of `cfg`'s model for the base data's heads.
    pub fn active_params(&self, cfg: &RunConfig, data: &RunData) -> u64 {
        param_report(&cfg.model, &data.heads(), data.seq_len).active_per_token
    }

    /// The tasks the base configuration trains on, by name.
    pub fn training_tasks(&self, data: &RunData) -> Vec<String> {
        data.train_tasks
            .iter()
            .map(|&t| data.specs[t].name.clone())
            .collect()
    }

    /// The first lines of every report: command, profile, seeds, base configuration.
    pub fn preamble(&self, title: &str) -> String {
        let cfg = self.base();
        let source = self
            .loaded
            .settings
            .run_config
            .as_deref()
            .map_or("-".into(), |p: &Path| p.display().to_string());
        format!(
            "# {title}\n\nCommand: `{}` (profile `{}`, {} seeds: {}..={}, tuning seeds {:?}; every arm of a seed sees the \
             same data). Base run configuration: `{source}`; each arm's exact configuration is \
             `configs/<run>.toml` beside this report, its run folder `runs/<run>/`. Model `{}`: d = {}, {} blocks, {} \
             experts of width {} (top-{}) in MoE blocks, dense FFN width {}; {} steps of {} \
             examples at peak learning rate {:e}.\n\n{}\n\n",
            self.command,
            self.loaded.profile.name(),
            self.seeds().len(),
            self.loaded.settings.first_seed,
            self.loaded.settings.seeds.saturating_sub(1),
            self.tuning_seeds(),
            spelling(&cfg.model.variant),
            cfg.model.d_model,
            cfg.model.num_layers,
            cfg.model.moe.router.num_experts,
            cfg.model.moe.d_ff,
            cfg.model.moe.router.k,
            cfg.model.d_ff,
            cfg.train.steps,
            cfg.data.batch_size,
            cfg.schedule.peak_lr,
            crate::preregistration::provenance_line(),
        )
    }
}

/// How a config value is spelled in TOML (`task-moe`, not `TaskMoe`), for reports.
pub(crate) fn spelling<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}
