//! The unseen experiment's report: tables, paired differences, the primary
//! contrast, routing and plots, from the scores its protocol (`mod.rs`) collected.

use crate::context::ExperimentContext;
use crate::error::Result;
use crate::plot::{line_chart, Series};
use crate::report::{header, md_table, Report, BOW};
use crate::stats::{paired, ArmContrast, PrimaryContrast, Summary};
use crate::verdicts::describe;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use taskmoe_train::RunData;

use super::{
    LrTuning, Sources, DENSE, FRESH, FROZEN, MEASURED, METHODS, SCRATCH, TRANSFERRED, UNRELATED,
};

#[allow(clippy::too_many_arguments)]
pub(super) fn build_report(
    ctx: &ExperimentContext,
    unseen: &[String],
    training: &[String],
    ks: &[usize],
    scores: &[Vec<Vec<f64>>],
    per_task: &BTreeMap<(usize, usize, String), Vec<f64>>,
    bow: &BTreeMap<(usize, String), Vec<f64>>,
    sources: &Sources,
    base_data: &RunData,
    tuned: &LrTuning,
) -> Result<Report> {
    let s = &ctx.loaded.settings.unseen;
    let mut md = ctx.preamble("Experiment 2: few-shot transfer to unseen tasks");
    let _ = writeln!(
        md,
        "Seen tasks ({}): {}. Unseen tasks ({}): {}. Task-MoE router: `{}`.\n\nFine-tuning: \
         {} steps, batch min({}, k), peak learning rate per arm from the grid {:?} (chosen on \
         validation below), 10% warmup, on the k examples of one unseen task. {} Every arm of \
         a seed and k sees the same k examples.\n",
        training.len(),
        training.join(", "),
        unseen.len(),
        unseen.join(", "),
        crate::context::spelling(&ctx.base().model.moe.router.kind),
        s.steps,
        s.batch_size,
        s.peak_lrs,
        ctx.stopping_text(),
    );
    let family = |name: &str| {
        base_data
            .id(name)
            .map_or(String::new(), |i| base_data.specs[i].family.clone())
    };
    let source_rows: Vec<Vec<String>> = unseen
        .iter()
        .map(|u| {
            let x = &sources.unrelated[u];
            vec![
                u.clone(),
                family(u),
                match &sources.family[u] {
                    Some(f) => format!("{f} ({})", family(f)),
                    None => "none of its family: each model's measured source".into(),
                },
                format!("{x} ({})", family(x)),
            ]
        })
        .collect();
    let _ =
        writeln!(
        md,
        "Declared sources, the same for the dense and the task-MoE model: the seen task of the \
         unseen task's family with the most training examples, and for the negative control \
         the seen task of another family with the most.\n\n{}",
        md_table(
            &header(&["unseen task", "family", "family source", "unrelated source (control)"]),
            &source_rows
        )
    );
    if ctx.base().model.moe.router.kind == taskmoe_router::RouterKind::TaskRepresentation {
        let _ = writeln!(
            md,
            "With the `task-representation` router, `task-moe, fresh routing` routes the new \
             task from its own k examples: its task state is their mean token state \
             (`init.calibrate_routing`), no source's; the routing arms hold the state they \
             were given fixed while fine-tuning (`task_state_momentum = 0`).\n"
        );
    }
    let mut lr_head = vec!["arm".to_string()];
    lr_head.extend(tuned.grid.iter().map(|lr| format!("lr = {lr:e}")));
    lr_head.push("chosen".into());
    let lr_rows: Vec<Vec<String>> = METHODS
        .iter()
        .enumerate()
        .map(|(m, name)| {
            let mut row = vec![name.to_string()];
            row.extend(tuned.validation[m].iter().map(|v| Summary::of(v).show()));
            row.push(format!("{:e}", tuned.chosen[m]));
            row
        })
        .collect();
    let _ = writeln!(
        md,
        "## Learning rates, chosen on validation\n\nValidation accuracy of the unseen task \
         after fine-tuning, over the tuning seeds {:?}, unseen tasks and k (mean ± std).\n\n{}",
        ctx.tuning_seeds(),
        md_table(&lr_head, &lr_rows)
    );
    let mut head = vec!["arm".to_string()];
    head.extend(ks.iter().map(|k| format!("k = {k}")));
    head.push("mean over k".into());
    let mean_over_k = |m: usize| -> Vec<f64> {
        let seeds = scores[m][0].len();
        (0..seeds)
            .map(|si| scores[m].iter().map(|v| v[si]).sum::<f64>() / ks.len() as f64)
            .collect()
    };
    let rows: Vec<Vec<String>> = METHODS
        .iter()
        .enumerate()
        .map(|(m, name)| {
            let mut row = vec![name.to_string()];
            row.extend(scores[m].iter().map(|v| Summary::of(v).show()));
            row.push(Summary::of(&mean_over_k(m)).show());
            row
        })
        .collect();
    // The bag-of-words baseline on the same k examples, per k: the mean over unseen tasks
    // of each seed (when every task has a score).
    let bow_mean: Vec<Vec<f64>> = (0..ks.len())
        .map(|ki| {
            let per: Vec<&Vec<f64>> = unseen
                .iter()
                .filter_map(|u| bow.get(&(ki, u.clone())))
                .collect();
            if per.len() != unseen.len() {
                return Vec::new();
            }
            let seeds = per.iter().map(|v| v.len()).min().unwrap_or(0);
            (0..seeds)
                .map(|si| per.iter().map(|v| v[si]).sum::<f64>() / per.len() as f64)
                .collect()
        })
        .collect();
    let mut rows = rows;
    let mut bow_row = vec![BOW.to_string()];
    bow_row.extend(bow_mean.iter().map(|v| Summary::of(v).show()));
    bow_row.push("-".into());
    rows.push(bow_row);
    let main = md_table(&head, &rows);
    let _ = writeln!(
        md,
        "## Mean test accuracy over the unseen tasks (mean ± std over seeds)\n\nThe last row \
         is the bag-of-words baseline trained on the same k examples.\n\n{main}"
    );
    let mut cmp_rows = Vec::new();
    let mut comparisons = Vec::new();
    let mut control = None;
    for (name, a, b) in [
        ("family routing - dense, family source", TRANSFERRED, DENSE),
        ("family routing - fresh routing", TRANSFERRED, FRESH),
        (
            "unrelated routing - fresh routing (control)",
            UNRELATED,
            FRESH,
        ),
        ("family routing - unrelated routing", TRANSFERRED, UNRELATED),
        ("measured routing - family routing", MEASURED, TRANSFERRED),
        ("frozen experts - dense, family source", FROZEN, DENSE),
        ("family routing - scratch", TRANSFERRED, SCRATCH),
        ("dense, family source - scratch", DENSE, SCRATCH),
    ] {
        let mut row = vec![name.to_string()];
        for ki in 0..ks.len() {
            let c = paired(&scores[a][ki], &scores[b][ki]);
            row.push(c.show());
            comparisons.push(json!({"comparison": name, "k": ks[ki], "result": c}));
        }
        let c = paired(&mean_over_k(a), &mean_over_k(b));
        if a == UNRELATED && b == FRESH {
            control = Some(c);
        }
        row.push(c.show());
        comparisons.push(json!({"comparison": name, "k": "mean", "result": c}));
        cmp_rows.push(row);
    }
    let mut cmp_head = vec!["difference".to_string()];
    cmp_head.extend(head[1..].iter().cloned());
    let cmp = md_table(&cmp_head, &cmp_rows);
    let _ = writeln!(
        md,
        "## Paired differences\n\nSeed-paired differences of the mean over unseen tasks, \
         uncorrected 95% Student-t intervals (descriptive).\n\n{cmp}"
    );
    let primary = PrimaryContrast {
        claim: 2,
        name: format!(
            "task-moe + family routing - dense from the same family source, mean test accuracy \
             of the unseen tasks over k in {ks:?}"
        ),
        a: mean_over_k(TRANSFERRED),
        b: mean_over_k(DENSE),
    };
    let mut verdicts = describe(&primary);
    if let Some(c) = control {
        let _ = write!(
            verdicts,
            "\nNegative control (declared in the protocol): the family source's head with another \
             family's routing \
             minus fresh routing, {}: {}. Secondary: family routing minus fresh routing, {}.\n",
            c.show(),
            control_outcome(&c),
            paired(&mean_over_k(TRANSFERRED), &mean_over_k(FRESH)).show(),
        );
    }
    let arm_contrasts: Vec<ArmContrast> = (0..METHODS.len())
        .filter(|&m| m != DENSE)
        .map(|m| ArmContrast {
            claim: 2,
            arm: METHODS[m].to_string(),
            name: format!("{} - dense, family source, unseen mean over k", METHODS[m]),
            a: mean_over_k(m),
            b: mean_over_k(DENSE),
        })
        .collect();
    let _ = writeln!(md, "## Primary contrast\n\n{verdicts}");

    // Which seen task was chosen, against the declared family.
    let mut rows = Vec::new();
    for u in unseen {
        for (moe, model) in [(false, "dense"), (true, "task-moe")] {
            let picks = sources
                .measured
                .get(&(u.clone(), moe))
                .cloned()
                .unwrap_or_default();
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for p in &picks {
                *counts.entry(p.as_str()).or_default() += 1;
            }
            let same = picks.iter().filter(|p| family(p) == family(u)).count();
            rows.push(vec![
                u.clone(),
                family(u),
                model.to_string(),
                counts
                    .iter()
                    .map(|(t, n)| format!("{t} ({}) x{n}", family(t)))
                    .collect::<Vec<_>>()
                    .join(", "),
                format!("{same}/{}", picks.len()),
            ]);
        }
    }
    let _ = writeln!(
        md,
        "## Most related seen task, as measured\n\nPer seed and k, the seen task with the lowest \
         loss on the k examples before fine-tuning (its routing, task embedding and head \
         applied unchanged). The last column counts choices inside the unseen task's declared \
         family.\n\n{}",
        md_table(
            &header(&[
                "unseen task",
                "declared family",
                "model",
                "chosen (family) x times",
                "in family"
            ]),
            &rows
        )
    );

    let _ = writeln!(md, "## Per unseen task\n");
    for u in unseen {
        let mut rows: Vec<Vec<String>> = METHODS
            .iter()
            .enumerate()
            .map(|(m, name)| {
                let mut row = vec![name.to_string()];
                row.extend((0..ks.len()).map(|ki| {
                    per_task
                        .get(&(m, ki, u.clone()))
                        .map_or("-".into(), |v| Summary::of(v).show())
                }));
                row
            })
            .collect();
        let mut bow_row = vec![BOW.to_string()];
        bow_row.extend((0..ks.len()).map(|ki| {
            bow.get(&(ki, u.clone()))
                .map_or("-".into(), |v| Summary::of(v).show())
        }));
        rows.push(bow_row);
        let _ = writeln!(
            md,
            "### {u}\n\n{}",
            md_table(&head[..head.len() - 1], &rows)
        );
    }

    let labels: Vec<String> = ks.iter().map(|k| k.to_string()).collect();
    let series: Vec<Series> = METHODS
        .iter()
        .enumerate()
        .map(|(m, name)| Series {
            name: name.to_string(),
            points: scores[m].iter().map(|v| Summary::of(v)).collect(),
        })
        .collect();
    let plots = vec![(
        "unseen-learning-curves.svg".to_string(),
        line_chart(
            "Unseen tasks: test accuracy against shots",
            "k (training examples of the new task)",
            "mean test accuracy (± std over seeds)",
            &labels,
            &series,
        )?,
    )];
    let _ = writeln!(
        md,
        "## Plots\n\n![learning curves](unseen-learning-curves.svg)\n"
    );
    let json = json!({
        "experiment": "unseen",
        "unseen_tasks": unseen,
        "seen_tasks": training,
        "k": ks,
        "arms": METHODS.iter().enumerate().map(|(m, name)| json!({
            "arm": name,
            "mean_over_unseen_tasks": scores[m],
            "per_task": unseen.iter().map(|u| (u.clone(), (0..ks.len()).map(|ki| per_task[&(m, ki, u.clone())].clone()).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
        })).collect::<Vec<_>>(),
        "comparisons": comparisons,
        "bag_of_words": json!({
            "mean_over_unseen_tasks": bow_mean,
            "per_task": unseen.iter().map(|u| (u.clone(), (0..ks.len()).map(|ki| bow.get(&(ki, u.clone())).cloned().unwrap_or_default()).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
        }),
        "arm_contrasts": arm_contrasts,
        "family_sources": sources.family,
        "unrelated_sources": sources.unrelated,
        "source_choices": sources.choices,
        "learning_rates": { "grid": tuned.grid, "chosen": METHODS.iter().zip(&tuned.chosen).map(|(m, lr)| (m.to_string(), *lr)).collect::<BTreeMap<_, _>>() },
    });
    let summary =
        format!("unseen: mean test accuracy over the unseen tasks\n{main}\n{cmp}\n{verdicts}");
    Ok(Report {
        name: "unseen",
        markdown: md,
        json,
        plots,
        summary,
        primary: Some(primary),
    })
}

/// What the negative control says: a gain (its interval above 0) voids the evidence of copied
/// routing; one seed has no interval, so it says nothing either way.
fn control_outcome(c: &crate::stats::Comparison) -> &'static str {
    if c.diff.n < 2 {
        "not judged (one seed has no interval)"
    } else if c.low > 0.0 {
        "**the control shows a gain** (its interval lies above 0), so a gain of copied routing \
         is not evidence that related routing transfers"
    } else {
        "no gain (its interval reaches 0 or below), as the protocol requires"
    }
}

#[cfg(test)]
mod control_tests {
    use super::control_outcome;
    use crate::stats::paired;

    #[test]
    fn the_negative_control_is_judged_only_with_an_interval() {
        let one = paired(&[0.8], &[0.7]);
        assert!(control_outcome(&one).starts_with("not judged"));
        let gain = paired(&[0.80, 0.81, 0.82, 0.80], &[0.70, 0.70, 0.71, 0.70]);
        assert!(control_outcome(&gain).contains("shows a gain"));
        let none = paired(&[0.80, 0.70, 0.82, 0.69], &[0.75, 0.75, 0.75, 0.75]);
        assert!(control_outcome(&none).starts_with("no gain"));
    }
}
