//! Experiment 1: low-resource tasks inside a mixture with related high-resource tasks.
//!
//! The mixture holds the low-resource tasks, the related high-resource tasks they may learn
//! from and unrelated high-resource tasks they should not (`low_resource.mixture`; synthetic
//! data: the families' high- and low-resource tasks and the unrelated tasks), so routing has
//! something to choose between (the protocol, `PROTOCOL.md`, claim 1).
//! First, each multi-task arm's mixture temperature is chosen on the validation mean of the
//! low-resource tasks over the tuning seeds, at the smallest size. Then, for every setting (a
//! low-resource size at the configured relatedness, and on synthetic data the smallest size at
//! further relatedness values, dense and the task-MoE arms only) and seed, each arm trains with the same
//! steps and batch size: multi-task arms on the mixture with the low-resource tasks cut to
//! `size` training examples (`data.train_examples`) at their temperature, the single-task arm
//! one dense model per low-resource task. Every run is tested at its best validation
//! checkpoint (early stopping, `evals_per_run`). Scores are test accuracy (the tasks' headline
//! metric) and balanced accuracy. The primary contrast of claim 1 is the configured task-MoE
//! arm minus dense on the low-resource mean at the first setting; its secondary, on synthetic
//! data, the interaction with relatedness: that difference at the highest relatedness minus
//! at the lowest.

use std::collections::BTreeMap;

use crate::error::{bail, Result};
use taskmoe_data::synthetic::TaskRole;
use taskmoe_model::Variant;
use taskmoe_router::RouterKind;
use taskmoe_train::RunConfig;

use crate::config::Arm;
use crate::context::ExperimentContext;
use crate::experiment::Experiment;
use crate::report::Report;
use crate::results::{stopping_summary, BlockRouting, RunResult};
use crate::runner::Job;
use crate::stats::Summary;

mod report;
use report::build_report;

/// One point of the sweep.
#[derive(Clone, Debug)]
struct Setting {
    size: usize,
    /// `None`: the run configuration's own relatedness (or real data).
    rho: Option<f64>,
}

impl Setting {
    fn id(&self) -> String {
        match self.rho {
            Some(r) => format!("n{}-rho{r}", self.size),
            None => format!("n{}", self.size),
        }
    }

    fn label(&self, base_rho: Option<f64>) -> String {
        match self.rho.or(base_rho) {
            Some(r) => format!("n = {}, rho = {r}", self.size),
            None => format!("n = {}", self.size),
        }
    }
}

/// Per-seed scores of one arm at one setting.
#[derive(Clone, Debug, Default)]
struct ArmScores {
    /// Mean over the low-resource tasks, per seed.
    low: Vec<f64>,
    /// Mean balanced accuracy over the low-resource tasks, per seed.
    balanced: Vec<f64>,
    /// Mean over all training tasks, per seed (multi-task arms).
    all: Vec<f64>,
    /// Per low-resource task, per seed.
    per_task: BTreeMap<String, Vec<f64>>,
    /// Training tokens per run (one entry per run).
    tokens: Vec<f64>,
    /// Routing per MoE block, per seed (MoE arms).
    routing: Vec<Vec<BlockRouting>>,
}

/// Runs the experiment and builds its report.
pub fn run(ctx: &ExperimentContext) -> Result<Report> {
    let s = &ctx.loaded.settings.low_resource;
    let base_data = ctx.base_data()?;
    let low_tasks: Vec<String> = if !s.tasks.is_empty() {
        s.tasks.clone()
    } else {
        match ctx.tasks_with_role(&[TaskRole::LowResource])? {
            Some(t) if !t.is_empty() => t,
            _ => bail!(
                "name the low-resource tasks with `low_resource.tasks` (real data has no roles)"
            ),
        }
    };
    let training: Vec<String> = if !s.mixture.is_empty() {
        s.mixture.clone()
    } else {
        match ctx.tasks_with_role(&[
            TaskRole::HighResource,
            TaskRole::LowResource,
            TaskRole::Unrelated,
        ])? {
            Some(t) if !t.is_empty() => t,
            _ => bail!(
                "name the mixture with `low_resource.mixture`: the low-resource tasks, the \
                 related tasks they may learn from and unrelated ones (real data has no roles)"
            ),
        }
    };
    for t in &training {
        if base_data.id(t).is_none() {
            bail!("mixture task `{t}` is not in the data");
        }
    }
    for t in &low_tasks {
        if !training.contains(t) {
            bail!("low-resource task `{t}` is not in the mixture: {training:?}");
        }
    }
    let arms: Vec<Arm> = s
        .variants
        .iter()
        .map(|v| Arm::parse(v))
        .collect::<Result<_>>()?;
    let base_rho = ctx
        .synthetic()
        .then(|| ctx.base().data.synthetic.relatedness);
    let mut sizes = s.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut settings: Vec<Setting> = sizes
        .iter()
        .map(|&size| Setting { size, rho: None })
        .collect();
    if ctx.synthetic() {
        for &rho in &s.relatedness {
            if Some(rho) != base_rho {
                settings.push(Setting {
                    size: sizes[0],
                    rho: Some(rho),
                });
            }
        }
    }
    let max_size = *sizes.last().expect("validated: at least one size");
    let runner = ctx.runner(Experiment::LowResource);
    // An arm's run at one setting and seed (before the mixture temperature).
    let arm_config = |arm: &Arm, setting: &Setting, seed: u64| -> RunConfig {
        let mut cfg = ctx.seeded(&arm.apply(ctx.base()), seed);
        cfg.data.tasks = training.clone();
        if ctx.synthetic() {
            let syn = &mut cfg.data.synthetic;
            syn.low_resource_examples = syn.low_resource_examples.max(max_size);
            if let Some(rho) = setting.rho {
                syn.relatedness = rho;
            }
        }
        for t in &low_tasks {
            cfg.data.train_examples.insert(t.clone(), setting.size);
        }
        ctx.early_stopped(cfg)
    };

    // Phase 1: each multi-task arm's mixture temperature, on the tuning seeds' validation
    // scores at the smallest size.
    let mut tune_jobs = Vec::new();
    let mut tune_index = Vec::new();
    for (ai, arm) in arms.iter().enumerate() {
        if arm.variant == Variant::SingleTask {
            continue;
        }
        for (ti, &temperature) in s.temperatures.iter().enumerate() {
            for seed in ctx.tuning_seeds() {
                let cfg = ctx.with_temperature(&arm_config(arm, &settings[0], seed), temperature);
                tune_jobs.push(Job {
                    id: format!(
                        "tune-n{}-T{temperature}-seed{seed}-{}",
                        sizes[0],
                        arm.label.replace(':', "-")
                    ),
                    config: cfg,
                });
                tune_index.push((ai, ti));
            }
        }
    }
    let tune_dirs = runner.run("low-resource: mixture temperature", &tune_jobs)?;
    let mut tuning = vec![vec![Vec::new(); s.temperatures.len()]; arms.len()];
    for ((ai, ti), dir) in tune_index.iter().zip(&tune_dirs) {
        tuning[*ai][*ti].push(RunResult::validation_mean(dir, &low_tasks)?);
    }
    let chosen: Vec<Option<f64>> = tuning
        .iter()
        .map(|per_t| {
            per_t
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_empty())
                .max_by(|a, b| Summary::of(a.1).mean.total_cmp(&Summary::of(b.1).mean))
                .map(|(ti, _)| s.temperatures[ti])
        })
        .collect();

    // Phase 2: setting x seed x arm (x task for single-task).
    let mut jobs = Vec::new();
    let mut index: Vec<(usize, u64, usize, Option<String>)> = Vec::new();
    for (si, setting) in settings.iter().enumerate() {
        for seed in ctx.seeds() {
            for (ai, arm) in arms.iter().enumerate() {
                let arm_id = arm.label.replace(':', "-");
                if setting.rho.is_some()
                    && !(arm.is_plain_dense() || arm.variant == Variant::TaskMoe)
                {
                    continue; // the relatedness sweep: its interaction needs dense and task-MoE
                }
                if arm.variant == Variant::SingleTask {
                    for t in &low_tasks {
                        let mut one = arm_config(arm, setting, seed);
                        one.data.tasks = vec![t.clone()];
                        jobs.push(Job {
                            id: format!("{}-seed{seed}-{arm_id}-{t}", setting.id()),
                            config: one,
                        });
                        index.push((si, seed, ai, Some(t.clone())));
                    }
                } else {
                    let temperature = chosen[ai].expect("tuned above");
                    jobs.push(Job {
                        id: format!("{}-seed{seed}-{arm_id}", setting.id()),
                        config: ctx.with_temperature(&arm_config(arm, setting, seed), temperature),
                    });
                    index.push((si, seed, ai, None));
                }
            }
        }
    }
    let dirs = runner.run("low-resource", &jobs)?;

    // Collect: scores[setting][arm], seeds in order.
    let mut scores = vec![vec![ArmScores::default(); arms.len()]; settings.len()];
    let mut single: BTreeMap<(usize, u64), BTreeMap<String, (f64, f64)>> = BTreeMap::new();
    let balanced = |r: &RunResult, tasks: &[String]| {
        r.mean_metric(tasks, "balanced-accuracy")
            .unwrap_or(f64::NAN)
    };
    for ((si, seed, ai, task), dir) in index.iter().zip(&dirs) {
        let result = RunResult::read(dir)?;
        scores[*si][*ai].tokens.push(result.tokens as f64);
        match task {
            Some(t) => {
                let b = balanced(&result, std::slice::from_ref(t));
                single
                    .entry((*si, *seed))
                    .or_default()
                    .insert(t.clone(), (result.score(t)?, b));
            }
            None => {
                let a = &mut scores[*si][*ai];
                if !result.routing.is_empty() {
                    a.routing.push(result.routing.clone());
                }
                a.low.push(result.mean(&low_tasks)?);
                a.balanced.push(balanced(&result, &low_tasks));
                a.all.push(result.mean(&training)?);
                for t in &low_tasks {
                    a.per_task
                        .entry(t.clone())
                        .or_default()
                        .push(result.score(t)?);
                }
            }
        }
    }
    if let Some(ai) = arms.iter().position(|a| a.variant == Variant::SingleTask) {
        for (si, row) in scores.iter_mut().enumerate() {
            for seed in ctx.seeds() {
                let Some(per) = single.get(&(si, seed)) else {
                    continue; // not run at this setting
                };
                let a = &mut row[ai];
                let n = per.len() as f64;
                a.low.push(per.values().map(|v| v.0).sum::<f64>() / n);
                a.balanced.push(per.values().map(|v| v.1).sum::<f64>() / n);
                for (t, v) in per {
                    a.per_task.entry(t.clone()).or_default().push(v.0);
                }
            }
        }
    }

    // The bag-of-words baseline on each setting's and seed's data (the same subsamples).
    let data_arm = Arm::parse("dense")?;
    let mut bow = vec![ArmScores::default(); settings.len()];
    for (si, setting) in settings.iter().enumerate() {
        for seed in ctx.seeds() {
            let scores = ctx.bag_of_words(&arm_config(&data_arm, setting, seed), &low_tasks)?;
            if scores.len() == low_tasks.len() {
                bow[si]
                    .low
                    .push(scores.values().sum::<f64>() / scores.len() as f64);
            }
            for (t, v) in scores {
                bow[si].per_task.entry(t).or_default().push(v);
            }
        }
    }

    let tuned = Tuning {
        temperatures: s.temperatures.clone(),
        validation: tuning,
        chosen,
    };
    let mut report = build_report(
        ctx, &arms, &settings, base_rho, &low_tasks, &training, &scores, &bow, &base_data, &tuned,
    )?;
    if let Some(text) = stopping_summary(&dirs)? {
        report.append_section("Early stopping", &text);
    }
    Ok(report)
}

/// The temperature search: per arm and temperature, the tuning seeds' validation means.
struct Tuning {
    temperatures: Vec<f64>,
    validation: Vec<Vec<Vec<f64>>>,
    chosen: Vec<Option<f64>>,
}

/// The arm the claim is judged on: the task-MoE arm with the configured router kind, else the
/// first task-MoE arm.
pub(crate) fn primary_task_moe(arms: &[Arm], configured: RouterKind) -> Option<usize> {
    arms.iter()
        .position(|a| a.variant == Variant::TaskMoe && a.router.unwrap_or(configured) == configured)
        .or_else(|| arms.iter().position(|a| a.variant == Variant::TaskMoe))
}
