//! The unrelated experiment's report: tables, paired differences, the primary
//! contrast, routing and plots, from the scores its protocol (`mod.rs`) collected.

use crate::config::Arm;
use crate::context::ExperimentContext;
use crate::error::Result;
use crate::low_resource::primary_task_moe;
use crate::report::{header, md_table, Report};
use crate::results::{family_table, mean_overlap, BlockRouting, RunResult};
use crate::stats::{paired, ArmContrast, PrimaryContrast, Summary};
use crate::verdicts::describe;
use serde_json::json;
use std::fmt::Write as _;
use taskmoe_eval::routing::{family_blocks, heatmap_svg};

use super::{Exposure, STAGES};

pub(super) fn build_report(
    ctx: &ExperimentContext,
    arms: &[Arm],
    base_tasks: &[String],
    new_tasks: &[String],
    runs: &[Vec<Vec<RunResult>>],
    exposure: &Exposure,
    bow: &(Vec<f64>, Vec<f64>),
) -> Result<Report> {
    let s = &ctx.loaded.settings.unrelated;
    let mean = |ai: usize, stage: usize, tasks: &[String]| -> Result<Vec<f64>> {
        runs[ai][stage].iter().map(|r| r.mean(tasks)).collect()
    };
    let diff = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
    let dense = arms
        .iter()
        .position(Arm::is_plain_dense)
        .expect("validated: a dense arm");
    let moe = primary_task_moe(arms, ctx.base().model.moe.router.kind)
        .expect("validated: a task-moe arm");
    // The routing shown for one seed (the base model's, and the heatmaps) is the first seed's.
    let before: Vec<BlockRouting> = runs[moe][0][0].routing.clone();
    let shown_seed = ctx.seeds()[0];
    let mut md = ctx.preamble("Experiment 3: adding unrelated and conflicting tasks");
    let _ = writeln!(
        md,
        "Base mixture ({}): {}. Added tasks ({}): {}.\n\n`base` trains {} steps on the base \
         mixture. `joint` trains base and added tasks together for {} steps: the base tasks hold \
         {:.3} of the joint mixture's sampling probability, so they see as many examples as in \
         `base` (matched exposure; the step counts are the configured ones, which early \
         stopping may extend or cut). `sequential` continues `base` for {} steps on the added \
         tasks alone (no rehearsal); the original tasks are then tested again (forgetting). \
         Scores are test accuracy. {}\n",
        base_tasks.len(),
        base_tasks.join(", "),
        new_tasks.len(),
        new_tasks.join(", "),
        exposure.base_steps,
        exposure.joint_steps,
        exposure.share,
        s.extra_steps,
        ctx.stopping_text(),
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
         0 is a loss on the original tasks. The bag-of-words baseline (TF-IDF and a softmax \
         regression per task, trained on each task's own examples) scores {} on the original \
         tasks and {} on the added ones.\n\n{main}",
        Summary::of(&bow.0).show(),
        Summary::of(&bow.1).show(),
    );
    let mut comparisons = Vec::new();
    let mut arm_contrasts = Vec::new();
    for (ai, arm) in arms.iter().enumerate().filter(|&(ai, _)| ai != dense) {
        let forgetting = paired(&deltas[ai].1, &deltas[dense].1);
        comparisons.push(json!({
            "protocol": "sequential",
            "comparison": format!("{} forgetting - dense forgetting", arm.label),
            "result": forgetting,
        }));
        let joint = paired(&deltas[ai].0, &deltas[dense].0);
        comparisons.push(json!({
            "protocol": "joint",
            "comparison": format!("{} change - dense change", arm.label),
            "result": joint,
        }));
        arm_contrasts.push(ArmContrast {
            claim: 3,
            arm: arm.label.clone(),
            name: format!(
                "{} - dense, change of the original tasks under sequential training",
                arm.label
            ),
            a: deltas[ai].1.clone(),
            b: deltas[dense].1.clone(),
        });
    }
    let primary = PrimaryContrast {
        claim: 3,
        name: format!(
            "forgetting: change of the original tasks' mean test accuracy after {} steps on the \
             added tasks alone (sequential - base), {} minus dense",
            s.extra_steps, arms[moe].label
        ),
        a: deltas[moe].1.clone(),
        b: deltas[dense].1.clone(),
    };
    let joint = paired(&deltas[moe].0, &deltas[dense].0);
    let verdicts = format!(
        "{}\nSecondary (declared in the protocol): the change of the original tasks when the \
         added tasks train jointly with them (joint - base, matched exposure), task-MoE's \
         change minus dense's: {}.\n",
        describe(&primary),
        joint.show()
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
        runs[moe][stage].iter().map(|r| r.routing.clone()).collect()
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
            overlap_row(
                &format!("base (seed {shown_seed}; added tasks untrained)"),
                &[before.to_vec()],
            ),
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
        ("joint", runs[moe][1][0].routing.clone()),
        ("sequential", runs[moe][2][0].routing.clone()),
    ];
    for (stage, routing) in &stages {
        for block in routing {
            let block = block.by_family();
            let experts: Vec<String> = (0..block.load.first().map_or(0, Vec::len))
                .map(|e| format!("e{e}"))
                .collect();
            let svg = heatmap_svg(
                &format!(
                    "task-MoE, {stage}, block {}: P(expert | task), seed {shown_seed}; families \
                     outlined",
                    block.layer
                ),
                &block.tasks,
                &experts,
                &block.load,
                0.0,
                1.0,
                &family_blocks(&block.families),
            );
            plots.push((format!("routing-{stage}-block{}.svg", block.layer), svg));
        }
    }
    let _ = writeln!(md, "## Routing heatmaps (task-MoE, seed {shown_seed})\n");
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
        "bag_of_words": json!({"original_mean": bow.0, "added_mean": bow.1}),
        "arm_contrasts": arm_contrasts,
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
