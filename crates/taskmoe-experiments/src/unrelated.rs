//! Experiment 3: robustness when unrelated or conflicting tasks join the mixture.
//!
//! Per seed and arm (dense, task-MoE with the configured router):
//!
//! - `base`: the base mixture alone for the run's steps;
//! - `joint`: base and added tasks together from the start, **with matched exposure**: the run
//!   trains `steps / share` steps, where `share` is the base tasks' share of the joint
//!   mixture's sampling probability, so the original tasks see as many examples as in `base`
//!   and only the presence of the added tasks differs;
//! - `sequential`: the base model continued for `extra_steps` on the added tasks **alone** (no
//!   rehearsal), then tested on the original tasks again: forgetting.
//!
//! The primary contrast of claim 3 is the change of the original tasks' mean test accuracy
//! under `joint` (joint - base) with task-MoE minus the same change with dense. Forgetting
//! (sequential - base) is compared the same way, descriptively. Routing heatmaps (seed 0)
//! show where the added tasks go before they are trained (the base model) and after.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{bail, Context, Result};
use serde_json::json;
use taskmoe_data::synthetic::TaskRole;
use taskmoe_eval::routing::heatmap_svg;
use taskmoe_eval::{evaluate, EvalData};
use taskmoe_train::RunData;
use tch::Device;

use crate::config::Arm;
use crate::context::ExperimentContext;
use crate::experiment::Experiment;
use crate::report::{header, md_table, Report};
use crate::results::{family_table, mean_overlap, BlockRouting, RunResult};
use crate::runner::Job;
use crate::stats::{paired, PrimaryContrast, Summary};
use crate::transfer::TrainedModel;
use crate::verdicts::describe;

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
    let arms = [Arm::parse("dense")?, Arm::parse("task-moe")?];

    let runner = ctx.runner(Experiment::Unrelated);
    let cfg_for = |arm: &Arm, seed: u64, tasks: &[String]| {
        let mut cfg = ctx.seeded(&arm.apply(ctx.base()), seed);
        cfg.data.tasks = tasks.to_vec();
        cfg
    };
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
                config: cfg_for(arm, seed, &base_tasks),
            });
            let mut joint = cfg_for(arm, seed, &all_tasks);
            joint.train.steps = joint_steps;
            joint.checkpoint.every = joint_steps;
            first.push(Job {
                id: id("joint", seed, arm),
                config: joint,
            });
        }
    }
    let first_dirs = runner.run("unrelated: base and joint", &first)?;
    let mut second = Vec::new();
    for (seed, arm_dirs) in ctx.seeds().into_iter().zip(first_dirs.chunks(4)) {
        for (ai, arm) in arms.iter().enumerate() {
            let mut cfg = cfg_for(arm, seed, &new_tasks);
            cfg.train.steps = s.extra_steps;
            cfg.checkpoint.every = s.extra_steps;
            cfg.schedule.warmup_steps = cfg.schedule.warmup_steps.min(s.extra_steps / 10);
            cfg.init.from = None;
            cfg.init.checkpoint = Some(arm_dirs[2 * ai].clone());
            second.push(Job {
                id: id("sequential", seed, arm),
                config: cfg,
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
                &first_dirs[seed * 4 + 2 * ai],
                &first_dirs[seed * 4 + 2 * ai + 1],
                &second_dirs[seed * 2 + ai],
            ];
            for (stage, dir) in dirs.into_iter().enumerate() {
                runs[ai][stage].push(test_all(dir, &all_tasks)?);
            }
        }
    }
    let exposure = Exposure {
        share,
        base_steps,
        joint_steps,
    };
    build_report(ctx, &arms, &base_tasks, &new_tasks, &runs, &exposure)
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

/// Tests the newest checkpoint of run `dir` on the test split of `tasks`.
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

fn build_report(
    ctx: &ExperimentContext,
    arms: &[Arm],
    base_tasks: &[String],
    new_tasks: &[String],
    runs: &[Vec<Vec<RunResult>>],
    exposure: &Exposure,
) -> Result<Report> {
    let s = &ctx.loaded.settings.unrelated;
    let mean = |ai: usize, stage: usize, tasks: &[String]| -> Result<Vec<f64>> {
        runs[ai][stage].iter().map(|r| r.mean(tasks)).collect()
    };
    let diff = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    let before: Vec<BlockRouting> = runs[1][0][0].routing.clone();
    let mut md = ctx.preamble("Experiment 3: adding unrelated and conflicting tasks");
    let _ = writeln!(
        md,
        "Base mixture ({}): {}. Added tasks ({}): {}.\n\n`base` trains {} steps on the base \
         mixture. `joint` trains base and added tasks together for {} steps: the base tasks hold \
         {:.3} of the joint mixture's sampling probability, so they see as many examples as in \
         `base` (matched exposure). `sequential` continues `base` for {} steps on the added \
         tasks alone (no rehearsal); the original tasks are then tested again (forgetting). \
         Scores are test accuracy at the end.\n",
        base_tasks.len(),
        base_tasks.join(", "),
        new_tasks.len(),
        new_tasks.join(", "),
        exposure.base_steps,
        exposure.joint_steps,
        exposure.share,
        s.extra_steps
    );
    let mut rows = Vec::new();
    let mut deltas = Vec::new(); // [arm] -> (joint - base, sequential - base)
    for (ai, arm) in arms.iter().enumerate() {
        let b = mean(ai, 0, base_tasks)?;
        let j = mean(ai, 1, base_tasks)?;
        let q = mean(ai, 2, base_tasks)?;
        rows.push(vec![
            arm.label.clone(),
            Summary::of(&b).show(),
            Summary::of(&j).show(),
            paired(&j, &b).show(),
            Summary::of(&q).show(),
            paired(&q, &b).show(),
            Summary::of(&mean(ai, 1, new_tasks)?).show(),
            Summary::of(&mean(ai, 2, new_tasks)?).show(),
        ]);
        deltas.push((diff(&j, &b), diff(&q, &b)));
    }
    let main = md_table(
        &header(&[
            "arm",
            "original: base",
            "original: joint",
            "joint - base",
            "original: sequential",
            "sequential - base (forgetting)",
            "added: joint",
            "added: sequential",
        ]),
        &rows,
    );
    let _ = writeln!(
        md,
        "## Original tasks' mean test accuracy (mean ± std over seeds)\n\nThe differences are \
         seed-paired, with uncorrected 95% Student-t intervals (descriptive). An interval below \
         0 is a loss on the original tasks.\n\n{main}"
    );
    let mut comparisons = Vec::new();
    let forgetting = paired(&deltas[1].1, &deltas[0].1);
    comparisons.push(json!({
        "protocol": "sequential", "comparison": "task-moe forgetting - dense forgetting",
        "result": forgetting,
    }));
    let joint = paired(&deltas[1].0, &deltas[0].0);
    comparisons.push(json!({
        "protocol": "joint", "comparison": "task-moe change - dense change", "result": joint,
    }));
    let primary = PrimaryContrast {
        claim: 3,
        name: "change of the original tasks' mean test accuracy when the added tasks join \
               (joint - base, matched exposure), task-moe minus dense"
            .into(),
        a: deltas[1].0.clone(),
        b: deltas[0].0.clone(),
    };
    let verdicts = format!(
        "{}\nSecondary (descriptive): forgetting under sequential training, task-MoE's change \
         minus dense's: {}.\n",
        describe(&primary),
        forgetting.show()
    );
    let _ = writeln!(md, "## Primary contrast\n\n{verdicts}");

    // Routing: separation of new tasks from the original ones.
    let overlap_row = |name: &str, routing: &[Vec<BlockRouting>]| -> Vec<String> {
        let vals = |a: &[String], b: &[String]| -> Vec<f64> {
            routing
                .iter()
                .filter_map(|r| mean_overlap(r, a, b))
                .collect()
        };
        vec![
            name.to_string(),
            Summary::of(&vals(base_tasks, base_tasks)).show(),
            Summary::of(&vals(new_tasks, base_tasks)).show(),
            Summary::of(&vals(new_tasks, new_tasks)).show(),
        ]
    };
    let routing_of = |stage: usize| -> Vec<Vec<BlockRouting>> {
        runs[1][stage].iter().map(|r| r.routing.clone()).collect()
    };
    let before = &before;
    let overlap = md_table(
        &header(&[
            "task-MoE model",
            "original vs original",
            "added vs original",
            "added vs added",
        ]),
        &[
            overlap_row("base (seed 0; added tasks untrained)", &[before.to_vec()]),
            overlap_row("joint", &routing_of(1)),
            overlap_row("sequential", &routing_of(2)),
        ],
    );
    let _ = writeln!(
        md,
        "## Routing overlap\n\nMean histogram intersection `sum_e min(P(e|a), P(e|b))` of the \
         expert distributions of two tasks, averaged over MoE blocks and task pairs (1 = same \
         experts, 0 = disjoint), mean ± std over seeds. Lower *added vs original* than \
         *original vs original* means the router keeps the added tasks apart.\n\n{overlap}"
    );
    if let Some(families) = family_table(&[("joint", routing_of(1)), ("sequential", routing_of(2))])
    {
        let _ = writeln!(
            md,
            "## Routing against the task families\n\nPer MoE block, the mean routing overlap \
             of two tasks of one declared family and of two of different families (mean ± std \
             over seeds), their seed-paired difference with its 95% interval, the adjusted Rand \
             index of clustering the tasks by routing against their families (1 = routing \
             recovers the families, about 0 = chance), and the share of tasks whose nearest \
             task by routing is of their own family.\n\n{families}"
        );
    }
    let mut plots = Vec::new();
    let stages: [(&str, Vec<BlockRouting>); 3] = [
        ("before", before.to_vec()),
        ("joint", runs[1][1][0].routing.clone()),
        ("sequential", runs[1][2][0].routing.clone()),
    ];
    for (stage, routing) in &stages {
        for block in routing {
            let experts: Vec<String> = (0..block.load.first().map_or(0, Vec::len))
                .map(|e| format!("e{e}"))
                .collect();
            let svg = heatmap_svg(
                &format!(
                    "task-MoE, {stage}, block {}: P(expert | task), seed 0",
                    block.layer
                ),
                &block.tasks,
                &experts,
                &block.load,
                0.0,
                1.0,
                &[],
            );
            plots.push((format!("routing-{stage}-block{}.svg", block.layer), svg));
        }
    }
    let _ = writeln!(md, "## Routing heatmaps (task-MoE, seed 0)\n");
    for (name, _) in &plots {
        let _ = writeln!(md, "![{name}]({name})\n");
    }
    let json = json!({
        "experiment": "unrelated",
        "base_tasks": base_tasks,
        "new_tasks": new_tasks,
        "arms": arms.iter().enumerate().map(|(ai, a)| json!({
            "arm": a.label,
            "stages": STAGES.iter().enumerate().map(|(st, name)| json!({
                "stage": name,
                "per_seed": runs[ai][st].iter().map(|r| &r.scores).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "comparisons": comparisons,
    });
    let summary =
        format!("unrelated: original tasks' mean test accuracy\n{main}\n{overlap}\n{verdicts}");
    Ok(Report {
        name: "unrelated",
        markdown: md,
        json,
        plots,
        summary,
        primary: Some(primary),
    })
}
