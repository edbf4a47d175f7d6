//! Experiment 3: robustness when unrelated or conflicting tasks join the mixture.
//!
//! Per seed and arm (dense, task-MoE with the configured router):
//!
//! - `base`: the base mixture alone for the run's steps;
//! - `joint`: base and new tasks together from the start, same steps (so the original tasks
//!   get a smaller share of the same budget: what adding tasks costs under a fixed budget);
//! - `sequential`: the base model continued for `extra_steps` on base + new tasks;
//! - `control`: the base model continued for `extra_steps` on the base mixture alone, the
//!   reference of `sequential` (so extra training is not mistaken for robustness).
//!
//! The change on the original tasks is `joint - base` and `sequential - control`; the claim
//! holds when task-MoE's change is better than dense's. Routing heatmaps (seed 0) show where
//! the new tasks go before they are trained (the base model) and after.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;
use taskmoe_data::synthetic::TaskRole;
use taskmoe_eval::routing::{analyze, heatmap_svg};
use taskmoe_eval::{evaluate, EvalData};
use tch::Device;

use crate::config::Arm;
use crate::context::{Experiment, ExperimentContext};
use crate::report::{header, md_table, Report};
use crate::results::{mean_overlap, BlockRouting, RunResult};
use crate::runner::Job;
use crate::stats::{paired, Summary};
use crate::transfer::TrainedModel;

/// The protocols, in job order per seed and arm.
const STAGES: [&str; 4] = ["base", "joint", "sequential", "control"];

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
    let id = |stage: &str, seed: u64, arm: &Arm| format!("{stage}-seed{seed}-{}", arm.label);
    let mut first = Vec::new();
    for seed in ctx.seeds() {
        for arm in &arms {
            first.push(Job {
                id: id("base", seed, arm),
                config: cfg_for(arm, seed, &base_tasks),
            });
            first.push(Job {
                id: id("joint", seed, arm),
                config: cfg_for(arm, seed, &all_tasks),
            });
        }
    }
    let first_dirs = runner.run("unrelated: base and joint", &first)?;
    let mut second = Vec::new();
    for (seed, arm_dirs) in ctx.seeds().into_iter().zip(first_dirs.chunks(4)) {
        for (ai, arm) in arms.iter().enumerate() {
            let base_dir = arm_dirs[2 * ai].clone();
            for (stage, tasks) in [("sequential", &all_tasks), ("control", &base_tasks)] {
                let mut cfg = cfg_for(arm, seed, tasks);
                cfg.train.steps = s.extra_steps;
                cfg.train.checkpoint_every = s.extra_steps;
                cfg.train.schedule.warmup_steps =
                    cfg.train.schedule.warmup_steps.min(s.extra_steps / 10);
                cfg.train.init_from = None;
                cfg.train.init_checkpoint = Some(base_dir.clone());
                second.push(Job {
                    id: id(stage, seed, arm),
                    config: cfg,
                });
            }
        }
    }
    let second_dirs = runner.run("unrelated: continued training", &second)?;

    // results[arm][stage] per seed.
    let seeds = ctx.seeds().len();
    let mut runs: Vec<Vec<Vec<RunResult>>> = vec![vec![Vec::new(); STAGES.len()]; arms.len()];
    for seed in 0..seeds {
        for ai in 0..arms.len() {
            let f = &first_dirs[seed * 4 + 2 * ai..];
            let q = &second_dirs[seed * 4 + 2 * ai..];
            for (stage, dir) in [&f[0], &f[1], &q[0], &q[1]].into_iter().enumerate() {
                runs[ai][stage].push(RunResult::read(dir)?);
            }
        }
    }
    // Routing of the new tasks before they were trained: the seed-0 base task-MoE model
    // evaluated on every task.
    let before = routing_before(&first_dirs[2], &all_tasks)?;
    build_report(ctx, &arms, &base_tasks, &new_tasks, &runs, &before)
}

/// Evaluates the base model of `dir` on the test split of `tasks` and returns its routing.
fn routing_before(dir: &Path, tasks: &[String]) -> Result<Vec<BlockRouting>> {
    let m = TrainedModel::load(dir)?;
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
    let result = evaluate(
        &m.model,
        &data,
        &ids,
        m.config.train.eval_batch_size,
        Device::Cpu,
    )?;
    let names: Vec<String> = m.data.specs.iter().map(|s| s.name.clone()).collect();
    Ok(result
        .routing
        .iter()
        .map(|(layer, counts)| {
            let a = analyze(*layer, &names, counts);
            BlockRouting {
                layer: a.layer,
                tasks: a.tasks,
                load: a.load,
            }
        })
        .collect())
}

fn build_report(
    ctx: &ExperimentContext,
    arms: &[Arm],
    base_tasks: &[String],
    new_tasks: &[String],
    runs: &[Vec<Vec<RunResult>>],
    before: &[BlockRouting],
) -> Result<Report> {
    let s = &ctx.loaded.settings.unrelated;
    let mean = |ai: usize, stage: usize, tasks: &[String]| -> Result<Vec<f64>> {
        runs[ai][stage].iter().map(|r| r.mean(tasks)).collect()
    };
    let diff = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    let mut md = ctx.preamble("Experiment 3: adding unrelated and conflicting tasks");
    let _ = writeln!(
        md,
        "Base mixture ({}): {}. Added tasks ({}): {}.\n\n`base` and `joint` train {} steps; \
         `sequential` continues `base` for {} steps on base + added tasks, `control` continues it \
         for the same steps on the base mixture alone. Scores are test accuracy at the end.\n",
        base_tasks.len(),
        base_tasks.join(", "),
        new_tasks.len(),
        new_tasks.join(", "),
        ctx.base().train.steps,
        s.extra_steps
    );
    let mut rows = Vec::new();
    let mut deltas = Vec::new(); // [arm] -> (joint delta, sequential delta)
    for (ai, arm) in arms.iter().enumerate() {
        let b = mean(ai, 0, base_tasks)?;
        let j = mean(ai, 1, base_tasks)?;
        let q = mean(ai, 2, base_tasks)?;
        let c = mean(ai, 3, base_tasks)?;
        let dj = paired(&j, &b);
        let dq = paired(&q, &c);
        rows.push(vec![
            arm.label.clone(),
            Summary::of(&b).show(),
            Summary::of(&j).show(),
            dj.interval(),
            Summary::of(&c).show(),
            Summary::of(&q).show(),
            dq.interval(),
            Summary::of(&mean(ai, 1, new_tasks)?).show(),
            Summary::of(&mean(ai, 2, new_tasks)?).show(),
        ]);
        deltas.push((diff(&j, &b), diff(&q, &c)));
    }
    let main = md_table(
        &header(&[
            "arm",
            "original: base",
            "original: joint",
            "joint - base",
            "original: control",
            "original: sequential",
            "sequential - control",
            "added: joint",
            "added: sequential",
        ]),
        &rows,
    );
    let _ = writeln!(
        md,
        "## Original tasks' mean test accuracy (mean ± std over seeds)\n\nThe differences are \
         seed-paired, with 95% Student-t intervals. An interval below 0 is a loss on the original \
         tasks.\n\n{main}"
    );
    let mut verdicts = String::new();
    let mut comparisons = Vec::new();
    for (p, name) in ["joint", "sequential"].iter().enumerate() {
        let pick = |ai: usize| if p == 0 { &deltas[ai].0 } else { &deltas[ai].1 };
        let c = paired(pick(1), pick(0));
        comparisons.push(
            json!({"protocol": name, "comparison": "task-moe change - dense change", "result": c}),
        );
        let _ = writeln!(
            verdicts,
            "- Claim 3 ({name}: the original tasks lose less, or gain more, with task-MoE than \
             with dense): **{}** (change with task-MoE minus change with dense: {})",
            c.verdict.word(),
            c.interval()
        );
    }
    for (ai, arm) in arms.iter().enumerate() {
        let forget = paired(&deltas[ai].1, &vec![0.0; deltas[ai].1.len()]);
        let _ = writeln!(
            verdicts,
            "- {}: change of the original tasks under sequential training (against `control`): \
             {}; forgetting shows as an interval below 0",
            arm.label,
            forget.interval()
        );
    }
    let _ = writeln!(md, "## Verdicts\n\n{verdicts}");

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
    })
}
