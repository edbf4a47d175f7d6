//! The low-resource experiment's report: tables, paired differences, the primary
//! contrast, routing and plots, from the scores its protocol (`mod.rs`) collected.

use crate::config::Arm;
use crate::context::ExperimentContext;
use crate::error::Result;
use crate::plot::{line_chart, Series};
use crate::report::{header, md_table, Report, BOW};
use crate::results::{family_table, BlockRouting};
use crate::stats::{paired, ArmContrast, PrimaryContrast, Summary};
use crate::verdicts::describe;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use taskmoe_model::Variant;
use taskmoe_train::RunConfig;

use super::{primary_task_moe, ArmScores, Setting, Tuning};

#[allow(clippy::too_many_arguments)]
pub(super) fn build_report(
    ctx: &ExperimentContext,
    arms: &[Arm],
    settings: &[Setting],
    base_rho: Option<f64>,
    low_tasks: &[String],
    training: &[String],
    scores: &[Vec<ArmScores>],
    bow: &[ArmScores],
    base_data: &taskmoe_train::RunData,
    tuned: &Tuning,
) -> Result<Report> {
    let configured = ctx.base().model.moe.router.kind;
    let dense = arms.iter().position(Arm::is_plain_dense);
    let task_dense = arms.iter().position(|a| a.label == "task-dense");
    let token_moe = arms.iter().position(|a| a.variant == Variant::TokenMoe);
    let single = arms.iter().position(|a| a.variant == Variant::SingleTask);
    let task_moe = primary_task_moe(arms, configured);
    let mut md = ctx.preamble("Experiment 1: low-resource transfer");
    let _ = writeln!(
        md,
        "Low-resource tasks ({}): {}. Each keeps `n` training examples (a nested subsample \
         per seed); the other training tasks keep all of theirs. Training tasks ({}): {}.\n",
        low_tasks.len(),
        low_tasks.join(", "),
        training.len(),
        training.join(", ")
    );
    let _ = writeln!(
        md,
        "Equal budgets: every arm trains {} steps of {} examples. Single-task arms train one \
         dense model per low-resource task with that whole budget. {} Multi-task arms sample \
         the mixture examples-proportionally at the temperature chosen for them below.\n",
        ctx.base().train.steps,
        ctx.base().data.batch_size,
        ctx.stopping_text(),
    );
    let mut head = vec!["arm".to_string()];
    head.extend(tuned.temperatures.iter().map(|t| format!("T = {t}")));
    head.push("chosen".into());
    let rows: Vec<Vec<String>> = arms
        .iter()
        .enumerate()
        .filter(|(ai, _)| tuned.chosen[*ai].is_some())
        .map(|(ai, arm)| {
            let mut row = vec![arm.label.clone()];
            row.extend(tuned.validation[ai].iter().map(|v| Summary::of(v).show()));
            row.push(tuned.chosen[ai].map_or("-".into(), |t| t.to_string()));
            row
        })
        .collect();
    let _ = writeln!(
        md,
        "## Exposure: the mixture temperature, chosen on validation\n\nValidation mean of the \
         low-resource tasks at n = {} on the tuning seeds ({:?}), per arm and temperature \
         (rate = n_task^(1/T)); each arm uses its best everywhere.\n\n{}",
        settings[0].size,
        ctx.tuning_seeds(),
        md_table(&head, &rows)
    );
    // Active parameters per token and training tokens per run, per arm.
    let mut rows = Vec::new();
    for (ai, arm) in arms.iter().enumerate() {
        let cfg: RunConfig = arm.apply(ctx.base());
        let report = taskmoe_model::param_report(&cfg.model, &base_data.heads(), base_data.seq_len);
        rows.push(vec![
            arm.label.clone(),
            report.total.to_string(),
            report.active_per_token.to_string(),
            report.flops_per_token.to_string(),
            format!("{:.0}", Summary::of(&scores[0][ai].tokens).mean),
        ]);
    }
    let _ = writeln!(
        md,
        "## Arms\n\nParameters and forward FLOPs per token from `taskmoe_model::param_report` \
         (the MoE arms differ from dense only by their router); training tokens are the real \
         tokens of all steps, mean over the runs of the first setting (a single-task run \
         trains on one task, so its sequences are that task's length).\n\n{}",
        md_table(
            &header(&[
                "arm",
                "parameters",
                "active parameters / token",
                "FLOPs / token",
                "training tokens / run",
            ]),
            &rows
        )
    );

    // Main table: low-resource mean per arm and setting.
    let mut head = vec!["arm".to_string()];
    head.extend(settings.iter().map(|s| s.label(base_rho)));
    let rows: Vec<Vec<String>> = arms
        .iter()
        .enumerate()
        .map(|(ai, arm)| {
            let mut row = vec![arm.label.clone()];
            row.extend(scores.iter().map(|s| Summary::of(&s[ai].low).show()));
            row
        })
        .collect();
    let mut rows = rows;
    let mut bow_row = vec![BOW.to_string()];
    bow_row.extend(bow.iter().map(|b| Summary::of(&b.low).show()));
    rows.push(bow_row);
    let main = md_table(&head, &rows);
    let head_settings = head.clone();
    let _ = writeln!(
        md,
        "## Mean test accuracy over the low-resource tasks (mean ± std over seeds)\n\nThe \
         last row is the bag-of-words baseline on the same training examples (TF-IDF and a \
         softmax regression per task, its L2 penalty chosen on validation); where the neural \
         arms do not beat it, the tasks are solved as well without them.\n\n{main}"
    );
    let rows: Vec<Vec<String>> = arms
        .iter()
        .enumerate()
        .filter(|(_, a)| a.variant != Variant::SingleTask)
        .map(|(ai, arm)| {
            let mut row = vec![arm.label.clone()];
            row.extend(scores.iter().map(|s| Summary::of(&s[ai].all).show()));
            row
        })
        .collect();
    let _ = writeln!(
        md,
        "## Mean test accuracy over all {} training tasks\n\n{}",
        training.len(),
        md_table(&head, &rows)
    );

    // Balanced accuracy beside accuracy.
    let rows: Vec<Vec<String>> = arms
        .iter()
        .enumerate()
        .map(|(ai, arm)| {
            let mut row = vec![arm.label.clone()];
            row.extend(scores.iter().map(|s| Summary::of(&s[ai].balanced).show()));
            row
        })
        .collect();
    let _ = writeln!(
        md,
        "## Mean balanced accuracy over the low-resource tasks\n\n{}",
        md_table(&head_settings, &rows)
    );

    // Descriptive paired comparisons.
    let mut comparisons = Vec::new();
    let mut cmp_rows = Vec::new();
    for (si, setting) in settings.iter().enumerate() {
        let mut row = vec![setting.label(base_rho)];
        for (name, a, b) in COMPARISONS.map(|(name, a, b)| {
            let pick = |which: &str| match which {
                "task-moe" => task_moe,
                "dense" => dense,
                "task-dense" => task_dense,
                "token-moe" => token_moe,
                _ => single,
            };
            (name, pick(a), pick(b))
        }) {
            match (a, b) {
                (Some(a), Some(b)) if scores[si][a].low.len() == scores[si][b].low.len() => {
                    let c = paired(&scores[si][a].low, &scores[si][b].low);
                    row.push(c.show());
                    comparisons.push(json!({
                        "setting": setting.label(base_rho), "comparison": name,
                        "a": arms[a].label, "b": arms[b].label, "result": c,
                    }));
                }
                _ => row.push("-".into()),
            }
        }
        cmp_rows.push(row);
    }
    let mut cmp_head = vec!["setting".to_string()];
    cmp_head.extend(COMPARISONS.iter().map(|c| c.0.to_string()));
    let cmp = md_table(&cmp_head, &cmp_rows);
    let tm_label = task_moe.map_or("-".to_string(), |i| arms[i].label.clone());
    let _ = writeln!(
        md,
        "## Paired differences on the low-resource mean\n\nDifferences of seed-paired means \
         with uncorrected 95% Student-t intervals (descriptive); task-MoE is `{tm_label}`.\n\n{cmp}"
    );
    let primary = match (task_moe, dense) {
        (Some(t), Some(d)) => Some(PrimaryContrast {
            claim: 1,
            name: format!(
                "{} - dense, mean test accuracy of the low-resource tasks at {}",
                arms[t].label,
                settings[0].label(base_rho)
            ),
            a: scores[0][t].low.clone(),
            b: scores[0][d].low.clone(),
        }),
        _ => None,
    };
    let mut verdicts = primary.as_ref().map_or_else(
        || "No primary contrast: the arms need `dense` and a `task-moe` arm.\n".to_string(),
        describe,
    );
    let interaction = relatedness_interaction(settings, base_rho, scores, task_moe, dense);
    if let Some((lo, hi, c)) = &interaction {
        let _ = write!(
            verdicts,
            "\nSecondary (declared in the protocol): the interaction with relatedness, \
             (task-MoE - dense at rho = {hi}) - (task-MoE - dense at rho = {lo}), seed-paired: \
             {}. Positive supports sharing between related tasks (the gain grows with \
             relatedness); negative means task-MoE gains by keeping tasks apart, not by sharing \
             what is related.\n",
            c.show()
        );
    }
    let _ = writeln!(md, "## Primary contrast\n\n{verdicts}");

    let models: Vec<(String, Vec<Vec<BlockRouting>>)> = settings
        .iter()
        .enumerate()
        .flat_map(|(si, setting)| {
            arms.iter().enumerate().map(move |(ai, arm)| {
                let name = format!("{}, {}", arm.label, setting.label(base_rho));
                (name, scores[si][ai].routing.clone())
            })
        })
        .filter(|(_, runs)| !runs.is_empty())
        .collect();
    let named: Vec<(&str, Vec<Vec<BlockRouting>>)> = models
        .iter()
        .map(|(n, r)| (n.as_str(), r.clone()))
        .collect();
    if let Some(families) = family_table(&named) {
        let _ = writeln!(
            md,
            "## Routing against the task families\n\nPer MoE arm, setting and block: the mean \
             routing overlap of two tasks of one declared family and of two of different \
             families (mean ± std over seeds), their seed-paired difference with its 95% \
             interval, the adjusted Rand index of clustering the tasks by routing against their \
             families, and the share of tasks whose nearest task by routing is of their own \
             family.\n\n{families}"
        );
    }

    // Per-task detail at every setting.
    let _ = writeln!(md, "## Per low-resource task\n");
    for (si, setting) in settings.iter().enumerate() {
        let mut head = vec!["arm".to_string()];
        head.extend(low_tasks.iter().cloned());
        let per_task_row = |label: &str, a: &ArmScores| -> Vec<String> {
            let mut row = vec![label.to_string()];
            row.extend(low_tasks.iter().map(|t| {
                a.per_task
                    .get(t)
                    .map_or("-".into(), |v| Summary::of(v).show())
            }));
            row
        };
        let mut rows: Vec<Vec<String>> = arms
            .iter()
            .enumerate()
            .map(|(ai, arm)| per_task_row(&arm.label, &scores[si][ai]))
            .collect();
        rows.push(per_task_row(BOW, &bow[si]));
        let _ = writeln!(
            md,
            "### {}\n\n{}",
            setting.label(base_rho),
            md_table(&head, &rows)
        );
    }

    // Plots: against size, and against relatedness at the smallest size.
    let mut plots = Vec::new();
    let size_idx: Vec<usize> = (0..settings.len())
        .filter(|&i| settings[i].rho.is_none())
        .collect();
    let series = |idx: &[usize]| -> Vec<Series> {
        arms.iter()
            .enumerate()
            .map(|(ai, arm)| Series {
                name: arm.label.clone(),
                points: idx
                    .iter()
                    .map(|&si| Summary::of(&scores[si][ai].low))
                    .collect(),
            })
            .collect()
    };
    let labels: Vec<String> = size_idx
        .iter()
        .map(|&i| settings[i].size.to_string())
        .collect();
    plots.push((
        "low-resource-by-size.svg".to_string(),
        line_chart(
            "Low-resource tasks: test accuracy against training examples",
            "training examples per low-resource task",
            "mean test accuracy (± std over seeds)",
            &labels,
            &series(&size_idx),
        )?,
    ));
    if let Some(rho0) = base_rho {
        let smallest = settings[0].size;
        let mut rho_idx: Vec<(f64, usize)> = settings
            .iter()
            .enumerate()
            .filter(|(_, s)| s.size == smallest)
            .map(|(i, s)| (s.rho.unwrap_or(rho0), i))
            .collect();
        if rho_idx.len() > 1 {
            rho_idx.sort_by(|a, b| a.0.total_cmp(&b.0));
            let idx: Vec<usize> = rho_idx.iter().map(|x| x.1).collect();
            let labels: Vec<String> = rho_idx.iter().map(|x| x.0.to_string()).collect();
            plots.push((
                "low-resource-by-relatedness.svg".to_string(),
                line_chart(
                    &format!("Low-resource tasks at n = {smallest}: accuracy against relatedness"),
                    "relatedness rho (task-family weight correlation rho^2)",
                    "mean test accuracy (± std over seeds)",
                    &labels,
                    &series(&idx),
                )?,
            ));
        }
    }
    let _ = writeln!(md, "## Plots\n");
    for (name, _) in &plots {
        let _ = writeln!(md, "![{name}]({name})\n");
    }

    let json = json!({
        "experiment": "low-resource",
        "low_resource_tasks": low_tasks,
        "training_tasks": training,
        "settings": settings.iter().enumerate().map(|(si, s)| json!({
            "size": s.size,
            "relatedness": s.rho.or(base_rho),
            "arms": arms.iter().enumerate().map(|(ai, a)| json!({
                "arm": a.label,
                "low_resource_mean": scores[si][ai].low,
                "all_tasks_mean": scores[si][ai].all,
                "per_task": scores[si][ai].per_task,
            })).collect::<Vec<_>>(),
            "bag_of_words": json!({
                "low_resource_mean": bow[si].low,
                "per_task": bow[si].per_task,
            }),
        })).collect::<Vec<_>>(),
        "comparisons": comparisons,
        "relatedness_interaction": interaction.as_ref().map(|(lo, hi, c)| json!({
            "low_rho": lo, "high_rho": hi, "result": c,
        })),
        "arm_contrasts": arm_contrasts(arms, &scores[0], dense, &settings[0].label(base_rho)),
        "tuning": tuned.temperatures.iter().enumerate().map(|(ti, t)| json!({
            "temperature": t,
            "validation": arms.iter().enumerate().map(|(ai, a)| (a.label.clone(), tuned.validation[ai][ti].clone())).collect::<BTreeMap<_, _>>(),
        })).collect::<Vec<_>>(),
        "chosen_temperature": arms.iter().enumerate().map(|(ai, a)| (a.label.clone(), tuned.chosen[ai])).collect::<BTreeMap<_, _>>(),
    });
    let summary = format!(
        "low-resource: mean test accuracy over the low-resource tasks\n{main}\n{cmp}\n{verdicts}"
    );
    Ok(Report {
        name: "low-resource",
        markdown: md,
        json,
        plots,
        summary,
        primary,
    })
}

/// The descriptive comparisons on the low-resource mean: name, arm `a`, arm `b` (by role).
const COMPARISONS: [(&str, &str, &str); 5] = [
    ("task-MoE - dense", "task-moe", "dense"),
    ("task-MoE - task-dense", "task-moe", "task-dense"),
    ("task-MoE - token-MoE", "task-moe", "token-moe"),
    ("task-MoE - single-task", "task-moe", "single-task"),
    ("dense - single-task", "dense", "single-task"),
];

/// The secondary contrast of claim 1 on synthetic data: per seed, (task-MoE - dense) at the
/// highest relatedness of the smallest size minus the same at the lowest; `None` without two
/// relatedness values or either arm.
fn relatedness_interaction(
    settings: &[Setting],
    base_rho: Option<f64>,
    scores: &[Vec<ArmScores>],
    task_moe: Option<usize>,
    dense: Option<usize>,
) -> Option<(f64, f64, crate::stats::Comparison)> {
    let (t, d) = (task_moe?, dense?);
    let rho0 = base_rho?;
    let smallest = settings.first()?.size;
    let mut at: Vec<(f64, usize)> = settings
        .iter()
        .enumerate()
        .filter(|(_, s)| s.size == smallest)
        .map(|(i, s)| (s.rho.unwrap_or(rho0), i))
        .collect();
    at.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (&(lo, li), &(hi, hi_i)) = (at.first()?, at.last()?);
    if li == hi_i {
        return None;
    }
    let gap = |si: usize| -> Vec<f64> {
        scores[si][t]
            .low
            .iter()
            .zip(&scores[si][d].low)
            .map(|(a, b)| a - b)
            .collect()
    };
    let (g_hi, g_lo) = (gap(hi_i), gap(li));
    (g_hi.len() == g_lo.len() && !g_hi.is_empty()).then(|| (lo, hi, paired(&g_hi, &g_lo)))
}

/// Every multi-task arm but dense against dense on the primary metric at the first setting,
/// per seed: the rows of the forest plot (`verdicts.rs`).
fn arm_contrasts(
    arms: &[Arm],
    first: &[ArmScores],
    dense: Option<usize>,
    setting: &str,
) -> Vec<ArmContrast> {
    let Some(d) = dense else {
        return Vec::new();
    };
    arms.iter()
        .enumerate()
        .filter(|&(ai, _)| ai != d && first[ai].low.len() == first[d].low.len())
        .map(|(ai, arm)| ArmContrast {
            claim: 1,
            arm: arm.label.clone(),
            name: format!("{} - dense, low-resource mean at {setting}", arm.label),
            a: first[ai].low.clone(),
            b: first[d].low.clone(),
        })
        .collect()
}
