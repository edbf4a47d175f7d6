//! Experiment 2: sample-efficient generalisation to unseen tasks.
//!
//! Per seed, a dense and a task-MoE model (the configured router) train on the seen tasks.
//! Then, for every held-out task and shot count k (a nested subsample of its training pool),
//! four arms fine-tune on those k examples alone for the same steps:
//!
//! - `dense`: the dense multi-task model, the new task starting from the head (and task
//!   embedding, if any) of the most related seen task;
//! - `task-moe + routing`: the task-MoE model, the new task taking the routing, head and task
//!   embedding of the most related seen task;
//! - `task-moe, fresh routing`: the same, but the new task keeps its own freshly initialised
//!   routing;
//! - `scratch`: a dense model of the same size trained from the base run's own initialisation
//!   (random, or the pretrained encoder when the run configuration has `train.init_from`), at
//!   the base run's learning rate: no multi-task training at all.
//!
//! "Most related" is measured, per model, seed and k: the seen task whose routing, task
//! embedding and head give the lowest loss on the k examples before any fine-tuning
//! ([`crate::transfer`]). The declared task family is shown beside the choice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::json;
use taskmoe_train::{RunConfig, RunData};

use crate::config::Arm;
use crate::context::{Experiment, ExperimentContext};
use crate::plot::{line_chart, Series};
use crate::report::{header, md_table, Report};
use crate::results::RunResult;
use crate::runner::Job;
use crate::stats::{paired, Summary};
use crate::transfer::{Relatedness, TrainedModel};

/// The four fine-tuning arms, in table order.
const METHODS: [&str; 4] = [
    "dense",
    "task-moe + routing",
    "task-moe, fresh routing",
    "scratch",
];

/// Runs the experiment and builds its report.
pub fn run(ctx: &ExperimentContext) -> Result<Report> {
    let s = &ctx.loaded.settings.unseen;
    let base_data = ctx.base_data()?;
    let unseen: Vec<String> = if s.tasks.is_empty() {
        base_data
            .specs
            .iter()
            .filter(|t| t.held_out)
            .map(|t| t.name.clone())
            .collect()
    } else {
        s.tasks.clone()
    };
    if unseen.is_empty() {
        bail!("no unseen tasks: mark tasks `held_out` or name them in `unseen.tasks`");
    }
    let training = ctx.training_tasks(&base_data);
    for u in &unseen {
        if base_data.id(u).is_none() {
            bail!("unseen task `{u}` is not in the data");
        }
        if training.contains(u) {
            bail!("unseen task `{u}` is among the training tasks; leave it out of `data.tasks`");
        }
    }
    let mut ks = s.k.clone();
    ks.sort_unstable();
    ks.dedup();
    let max_k = *ks.last().expect("validated: at least one k");

    // Phase 1: the seen-task models.
    let dense_arm = Arm::parse("dense")?;
    let moe_arm = Arm::parse("task-moe")?;
    let base_cfg = |arm: &Arm, seed: u64| -> RunConfig {
        let mut cfg = ctx.seeded(&arm.apply(ctx.base()), seed);
        let syn = &mut cfg.data.synthetic;
        syn.unseen_train_examples = syn.unseen_train_examples.max(max_k);
        cfg
    };
    let mut jobs = Vec::new();
    for seed in ctx.seeds() {
        for arm in [&dense_arm, &moe_arm] {
            jobs.push(Job {
                id: format!("base-seed{seed}-{}", arm.label),
                config: base_cfg(arm, seed),
            });
        }
    }
    let runner = ctx.runner(Experiment::Unseen);
    let base_dirs = runner.run("unseen: seen-task models", &jobs)?;
    let base_dir = |seed: u64, moe: bool| -> PathBuf {
        base_dirs[2 * seed as usize + usize::from(moe)].clone()
    };

    // Phase 2: choose each new task's source per model, seed and k; build the fine-tunes.
    tch::set_num_threads(ctx.loaded.settings.jobs as i32);
    let fine_tune = |arm: &Arm, seed: u64, u: &str, k: usize| -> RunConfig {
        let mut cfg = base_cfg(arm, seed);
        cfg.data.tasks = vec![u.to_string()];
        cfg.data.train_examples = [(u.to_string(), k)].into();
        cfg.data.batch_size = s.batch_size.min(k);
        cfg.train.steps = s.steps;
        cfg.train.checkpoint_every = s.steps;
        cfg.train.eval_every = 0;
        cfg.train.schedule.total_steps = 0;
        cfg.train.schedule.warmup_steps = (s.steps / 10).max(1);
        cfg
    };
    let mut choices: Vec<serde_json::Value> = Vec::new();
    let mut chosen: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
    let mut jobs = Vec::new();
    let mut index = Vec::new();
    for seed in ctx.seeds() {
        let models = [
            TrainedModel::load(&base_dir(seed, false))?,
            TrainedModel::load(&base_dir(seed, true))?,
        ];
        for u in &unseen {
            for &k in &ks {
                let probe_cfg = fine_tune(&dense_arm, seed, u, k);
                let data = RunData::load(&probe_cfg)?;
                let uid = data.id(u).expect("checked above");
                let examples = &data.train[uid].examples;
                let mut sources = [String::new(), String::new()];
                for (mi, model) in models.iter().enumerate() {
                    let candidates = &model.data.train_tasks;
                    let Some(Relatedness { best, losses }) =
                        model.most_related(uid, examples, candidates)?
                    else {
                        bail!("no seen task has a head like unseen task `{u}`");
                    };
                    let name = data.specs[best].name.clone();
                    chosen
                        .entry((u.clone(), mi == 1))
                        .or_default()
                        .push(name.clone());
                    choices.push(json!({
                        "seed": seed, "task": u, "k": k,
                        "model": if mi == 1 { "task-moe" } else { "dense" },
                        "chosen": name,
                        "losses": losses.iter().map(|(c, l)| (data.specs[*c].name.clone(), *l)).collect::<BTreeMap<_, _>>(),
                    }));
                    sources[mi] = name;
                }
                for (m, method) in METHODS.iter().enumerate() {
                    let mut cfg = match m {
                        0 | 3 => fine_tune(&dense_arm, seed, u, k),
                        _ => fine_tune(&moe_arm, seed, u, k),
                    };
                    if m < 3 {
                        // The checkpoint holds everything, pretrained encoder included.
                        cfg.train.init_from = None;
                        cfg.train.init_checkpoint = Some(base_dir(seed, m > 0));
                        let source = &sources[usize::from(m > 0)];
                        cfg.train.task_init = [(u.clone(), source.clone())].into();
                        cfg.train.task_init_routing = m == 1;
                        cfg.train.schedule.peak_lr = s.peak_lr;
                    }
                    let slug = method.replace([' ', ',', '+'], "").replace("--", "-");
                    jobs.push(Job {
                        id: format!("ft-seed{seed}-{u}-k{k}-{}", slug),
                        config: cfg,
                    });
                    index.push((seed, u.clone(), k, m));
                }
            }
        }
    }
    let dirs = runner.run("unseen: k-shot fine-tuning", &jobs)?;

    // scores[m][k index] = per-seed mean over unseen tasks; per_task[(m, k, u)] per seed.
    let mut per_task: BTreeMap<(usize, usize, String), Vec<f64>> = BTreeMap::new();
    for ((seed, u, k, m), dir) in index.iter().zip(&dirs) {
        let _ = seed;
        let ki = ks.iter().position(|x| x == k).expect("k from ks");
        let score = RunResult::read(dir)?.score(u)?;
        per_task.entry((*m, ki, u.clone())).or_default().push(score);
    }
    let seeds = ctx.seeds().len();
    let scores: Vec<Vec<Vec<f64>>> = (0..METHODS.len())
        .map(|m| {
            (0..ks.len())
                .map(|ki| {
                    (0..seeds)
                        .map(|si| {
                            unseen
                                .iter()
                                .map(|u| per_task[&(m, ki, u.clone())][si])
                                .sum::<f64>()
                                / unseen.len() as f64
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    build_report(
        ctx, &unseen, &training, &ks, &scores, &per_task, &chosen, &base_data, choices,
    )
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    ctx: &ExperimentContext,
    unseen: &[String],
    training: &[String],
    ks: &[usize],
    scores: &[Vec<Vec<f64>>],
    per_task: &BTreeMap<(usize, usize, String), Vec<f64>>,
    chosen: &BTreeMap<(String, bool), Vec<String>>,
    base_data: &RunData,
    choices: Vec<serde_json::Value>,
) -> Result<Report> {
    let s = &ctx.loaded.settings.unseen;
    let mut md = ctx.preamble("Experiment 2: few-shot transfer to unseen tasks");
    let _ = writeln!(
        md,
        "Seen tasks ({}): {}. Unseen tasks ({}): {}. Task-MoE router: `{}`.\n\nFine-tuning: \
         {} steps, batch min({}, k), peak learning rate {:e} ({} for `scratch`), 10% warmup, \
         on the k examples of one unseen task; test accuracy at the end. Every arm of a seed \
         and k sees the same k examples.\n",
        training.len(),
        training.join(", "),
        unseen.len(),
        unseen.join(", "),
        crate::context::spelling(&ctx.base().model.moe.router.kind),
        s.steps,
        s.batch_size,
        s.peak_lr,
        ctx.base().train.schedule.peak_lr,
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
    let main = md_table(&head, &rows);
    let _ = writeln!(
        md,
        "## Mean test accuracy over the unseen tasks (mean ± std over seeds)\n\n{main}"
    );
    let mut cmp_rows = Vec::new();
    let mut comparisons = Vec::new();
    for (name, a, b) in [
        ("task-moe + routing - dense", 1, 0),
        ("task-moe + routing - fresh routing", 1, 2),
        ("task-moe + routing - scratch", 1, 3),
        ("dense - scratch", 0, 3),
    ] {
        let mut row = vec![name.to_string()];
        for ki in 0..ks.len() {
            let c = paired(&scores[a][ki], &scores[b][ki]);
            row.push(c.show());
            comparisons.push(json!({"comparison": name, "k": ks[ki], "result": c}));
        }
        let c = paired(&mean_over_k(a), &mean_over_k(b));
        row.push(c.show());
        comparisons.push(json!({"comparison": name, "k": "mean", "result": c}));
        cmp_rows.push(row);
    }
    let mut cmp_head = vec!["difference".to_string()];
    cmp_head.extend(head[1..].iter().cloned());
    let cmp = md_table(&cmp_head, &cmp_rows);
    let _ = writeln!(
        md,
        "## Paired differences\n\nSeed-paired differences of the mean over unseen tasks, 95% \
         Student-t interval; *held* above 0, *failed* below +0.01, else (or with fewer than \
         3 seeds) *inconclusive*.\n\n{cmp}"
    );
    let mut verdicts = String::new();
    for (ki, k) in ks.iter().enumerate() {
        let c = paired(&scores[1][ki], &scores[0][ki]);
        let _ = writeln!(
            verdicts,
            "- Claim 2 (task-MoE reusing related routing beats the dense model) at k = {k}: \
             **{}** ({})",
            c.verdict.word(),
            c.interval()
        );
    }
    let c = paired(&mean_over_k(1), &mean_over_k(2));
    let _ = writeln!(
        verdicts,
        "- Routing reuse itself (transferred vs fresh routing, mean over k): **{}** ({})",
        c.verdict.word(),
        c.interval()
    );
    let _ = writeln!(md, "## Verdicts\n\n{verdicts}");

    // Which seen task was chosen, against the declared family.
    let family = |name: &str| {
        base_data
            .id(name)
            .map_or(String::new(), |i| base_data.specs[i].family.clone())
    };
    let mut rows = Vec::new();
    for u in unseen {
        for (moe, model) in [(false, "dense"), (true, "task-moe")] {
            let picks = chosen.get(&(u.clone(), moe)).cloned().unwrap_or_default();
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
        let rows: Vec<Vec<String>> = METHODS
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
        "source_choices": choices,
    });
    let summary =
        format!("unseen: mean test accuracy over the unseen tasks\n{main}\n{cmp}\n{verdicts}");
    Ok(Report {
        name: "unseen",
        markdown: md,
        json,
        plots,
        summary,
    })
}
