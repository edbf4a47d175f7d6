//! Experiment 3: robustness when unrelated or conflicting tasks join the mixture.
//!
//! Per seed and arm (`unrelated.variants`: dense, the task-conditioned dense control,
//! task-MoE with the configured router):
//!
//! - `base`: the base mixture alone for the run's steps;
//! - `joint`: base and added tasks together from the start, **with matched exposure**: the run
//!   trains `steps / share` steps, where `share` is the base tasks' share of the joint
//!   mixture's sampling probability, so the original tasks see as many examples as in `base`
//!   and only the presence of the added tasks differs;
//! - `sequential`: the base model continued for `extra_steps` on the added tasks **alone** (no
//!   rehearsal), then tested on the original tasks again: forgetting.
//!
//! Every run is tested (and the sequential stage starts) at its best validation checkpoint
//! (`evals_per_run`). The primary contrast of claim 3 (the protocol, `PROTOCOL.md`) is
//! forgetting: the change of the original tasks' mean test accuracy under `sequential`
//! (sequential - base) with task-MoE minus the same change with dense. The change under
//! `joint` with the added (conflicting and unrelated) tasks is the secondary, compared the same
//! way. Routing heatmaps (seed 0, tasks ordered by family, families outlined) show where the
//! added tasks go before they are trained (the base model) and after.

use std::path::Path;

use crate::error::{bail, Context, Result};
use taskmoe_data::synthetic::TaskRole;
use taskmoe_eval::{evaluate, EvalData};
use taskmoe_train::RunData;
use tch::Device;

use crate::config::Arm;
use crate::context::ExperimentContext;
use crate::experiment::Experiment;
use crate::report::Report;
use crate::results::{stopping_summary, RunResult};
use crate::runner::Job;
use crate::transfer::TrainedModel;

mod report;
use report::build_report;

/// The protocols, in job order per seed and arm.
const STAGES: [&str; 3] = ["base", "joint", "sequential"];

/// Runs the experiment and builds its report.
pub fn run(ctx: &ExperimentContext) -> Result<Report> {
    let s = &ctx.loaded.settings.unrelated;
    let base_data = ctx.base_data()?;
    let role_tasks = |roles: &[TaskRole], given: &[String], key: &str| -> Result<Vec<String>> {
        if !given.is_empty() {
            return Ok(given.to_vec());
        }
        match ctx.tasks_with_role(roles)? {
            Some(t) if !t.is_empty() => Ok(t),
            _ => bail!("name the tasks with `unrelated.{key}` (real data has no roles)"),
        }
    };
    let base_tasks = role_tasks(
        &[TaskRole::HighResource, TaskRole::LowResource],
        &s.base_tasks,
        "base_tasks",
    )?;
    let new_tasks = role_tasks(
        &[TaskRole::Conflicting, TaskRole::Unrelated],
        &s.new_tasks,
        "new_tasks",
    )?;
    for t in base_tasks.iter().chain(&new_tasks) {
        if base_data.id(t).is_none() {
            bail!("task `{t}` is not in the data");
        }
    }
    let all_tasks: Vec<String> = base_tasks.iter().chain(&new_tasks).cloned().collect();
    let arms: Vec<Arm> = s
        .variants
        .iter()
        .map(|v| Arm::parse(v))
        .collect::<Result<_>>()?;
    let per_seed = 2 * arms.len(); // base and joint per arm

    let runner = ctx.runner(Experiment::Unrelated);
    let cfg_for = |arm: &Arm, seed: u64, tasks: &[String]| {
        let mut cfg = ctx.seeded(&arm.apply(ctx.base()), seed);
        cfg.data.tasks = tasks.to_vec();
        cfg
    };
    let stopped = |cfg: taskmoe_train::RunConfig| ctx.early_stopped(cfg);
    // Matched exposure: the base tasks' share of the joint mixture (the same for every arm
    // and, on synthetic data, every seed: it depends only on the task sizes).
    let joint_probe = cfg_for(&arms[0], 0, &all_tasks);
    let share = base_share(&joint_probe, &base_tasks)?;
    let base_steps = ctx.base().train.steps;
    let joint_steps = (base_steps as f64 / share).ceil() as u64;
    let id = |stage: &str, seed: u64, arm: &Arm| format!("{stage}-seed{seed}-{}", arm.label);
    let mut first = Vec::new();
    for seed in ctx.seeds() {
        for arm in &arms {
            first.push(Job {
                id: id("base", seed, arm),
                config: stopped(cfg_for(arm, seed, &base_tasks)),
            });
            let mut joint = cfg_for(arm, seed, &all_tasks);
            joint.train.steps = joint_steps;
            joint.checkpoint.every = joint_steps;
            first.push(Job {
                id: id("joint", seed, arm),
                config: stopped(joint),
            });
        }
    }
    let first_dirs = runner.run("unrelated: base and joint", &first)?;
    let mut second = Vec::new();
    for (seed, arm_dirs) in ctx.seeds().into_iter().zip(first_dirs.chunks(per_seed)) {
        for (ai, arm) in arms.iter().enumerate() {
            let mut cfg = cfg_for(arm, seed, &new_tasks);
            cfg.train.steps = s.extra_steps;
            cfg.checkpoint.every = s.extra_steps;
            cfg.schedule.warmup_steps = cfg.schedule.warmup_steps.min(s.extra_steps / 10);
            cfg.init.from = None;
            // From the base run's tested (best validation) checkpoint.
            cfg.init.checkpoint = Some(RunResult::tested_checkpoint(&arm_dirs[2 * ai])?);
            second.push(Job {
                id: id("sequential", seed, arm),
                config: stopped(cfg),
            });
        }
    }
    let second_dirs = runner.run("unrelated: sequential, added tasks alone", &second)?;

    // runs[arm][stage] per seed, every run tested on every task (base and sequential models
    // in process: their own final test covers only the tasks they trained on).
    let seeds = ctx.seeds().len();
    let mut runs: Vec<Vec<Vec<RunResult>>> = vec![vec![Vec::new(); STAGES.len()]; arms.len()];
    for seed in 0..seeds {
        for ai in 0..arms.len() {
            let dirs = [
                &first_dirs[seed * per_seed + 2 * ai],
                &first_dirs[seed * per_seed + 2 * ai + 1],
                &second_dirs[seed * arms.len() + ai],
            ];
            for (stage, dir) in dirs.into_iter().enumerate() {
                runs[ai][stage].push(test_all(dir, &all_tasks)?);
            }
        }
    }
    // The bag-of-words baseline per seed: mean test score of the original and the added tasks.
    let mut bow = (Vec::new(), Vec::new());
    for seed in ctx.seeds() {
        let scores = ctx.bag_of_words(&cfg_for(&arms[0], seed, &all_tasks), &all_tasks)?;
        let mean = |tasks: &[String]| -> Option<f64> {
            let v: Option<Vec<f64>> = tasks.iter().map(|t| scores.get(t).copied()).collect();
            v.map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
        };
        if let (Some(b), Some(n)) = (mean(&base_tasks), mean(&new_tasks)) {
            bow.0.push(b);
            bow.1.push(n);
        }
    }
    let exposure = Exposure {
        share,
        base_steps,
        joint_steps,
    };
    let mut report = build_report(ctx, &arms, &base_tasks, &new_tasks, &runs, &exposure, &bow)?;
    let all: Vec<std::path::PathBuf> = first_dirs.iter().chain(&second_dirs).cloned().collect();
    if let Some(text) = stopping_summary(&all)? {
        report.append_section("Early stopping", &text);
    }
    Ok(report)
}

/// How the joint protocol matched the original tasks' exposure.
struct Exposure {
    share: f64,
    base_steps: u64,
    joint_steps: u64,
}

/// The summed sampling probability of `base` tasks in the mixture of `cfg`.
fn base_share(cfg: &taskmoe_train::RunConfig, base: &[String]) -> Result<f64> {
    let data = RunData::load(cfg)?;
    let sampler = data.sampler(cfg)?;
    let mixture = sampler.mixture();
    let share: f64 = mixture
        .tasks()
        .iter()
        .zip(mixture.probabilities())
        .filter(|(t, _)| base.contains(&t.name))
        .map(|(_, p)| p)
        .sum();
    if !(share > 0.0 && share <= 1.0) {
        bail!("the base tasks have sampling share {share} in the joint mixture");
    }
    Ok(share)
}

/// Tests the tested checkpoint of run `dir` (its best validation checkpoint under early
/// stopping) on the test split of `tasks`.
fn test_all(dir: &Path, tasks: &[String]) -> Result<RunResult> {
    let m = TrainedModel::load(dir)?.run;
    let ids: Vec<usize> = tasks
        .iter()
        .map(|t| m.data.id(t).with_context(|| format!("task `{t}`")))
        .collect::<Result<_>>()?;
    let data = EvalData {
        specs: &m.data.specs,
        split: &m.data.test,
        seq_len: m.data.seq_len,
        pad_id: m.data.pad_id,
    };
    let result = evaluate(&m.model, &data, &ids, m.config.eval.batch_size, Device::Cpu)?;
    RunResult::from_evaluation(dir, &result, &m.data.specs)
}
