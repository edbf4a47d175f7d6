//! Experiment 2: sample-efficient generalisation to unseen tasks.
//!
//! Per seed, a dense and a task-MoE model (the configured router) train on the seen tasks.
//! Then, for every held-out task and shot count k (a nested subsample of its training pool),
//! six arms fine-tune on those k examples alone for the same steps:
//!
//! - `dense`: the dense multi-task model, the new task starting from the head (and task
//!   embedding, if any) of the most related seen task;
//! - `task-moe + routing`: the task-MoE model, the new task taking the routing, head and task
//!   embedding of the most related seen task (the primary contrast: this minus `dense`);
//! - `task-moe + family routing`: the same from the seen task its declared family names (the
//!   family's task with the most training examples), beside the measured choice;
//! - `task-moe, fresh routing`: measured source, but the new task keeps its own freshly
//!   initialised routing;
//! - `task-moe, frozen experts`: measured source with its routing; only the routers (and task
//!   embeddings) and heads adapt, so what transfers is what the routing carries;
//! - `scratch`: a dense model of the same size trained from the base run's own initialisation
//!   (random, or the pretrained encoder when the run configuration has `init.from`).
//!
//! Every arm's peak learning rate comes from the same grid (`unseen.peak_lrs`), chosen per arm
//! on the validation mean of the tuning seeds; the reported seeds run at that choice.
//! "Most related" is measured, per model, seed and k: the seen task whose routing, task
//! embedding and head give the lowest loss on the k examples before any fine-tuning
//! ([`crate::transfer`]). The declared task family is shown beside the choice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::error::{bail, Result};
use serde_json::json;
use taskmoe_data::synthetic::TaskRole;
use taskmoe_train::{RunConfig, RunData};

use crate::config::Arm;
use crate::context::ExperimentContext;
use crate::experiment::Experiment;
use crate::plot::{line_chart, Series};
use crate::report::{header, md_table, Report};
use crate::results::RunResult;
use crate::runner::Job;
use crate::stats::{paired, PrimaryContrast, Summary};
use crate::transfer::{Relatedness, TrainedModel};
use crate::verdicts::describe;

/// The fine-tuning arms, in table order.
const METHODS: [&str; 6] = [
    "dense",
    "task-moe + routing",
    "task-moe + family routing",
    "task-moe, fresh routing",
    "task-moe, frozen experts",
    "scratch",
];

/// Index of `task-moe + routing` (measured source), the arm of the primary contrast.
const TRANSFERRED: usize = 1;
/// Index of `scratch`.
const SCRATCH: usize = 5;

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
    // Seen tasks: the families' tasks on synthetic data (no conflicting or unrelated task, so
    // claim 2 is not confounded with claim 3), the configured training tasks on real data.
    let training = match ctx.tasks_with_role(&[TaskRole::HighResource, TaskRole::LowResource])? {
        Some(t) if !t.is_empty() => t,
        _ => ctx.training_tasks(&base_data),
    };
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

    // Phase 1: the seen-task models, for the reported and the tuning seeds.
    let dense_arm = Arm::parse("dense")?;
    let moe_arm = Arm::parse("task-moe")?;
    let base_cfg = |arm: &Arm, seed: u64| -> RunConfig {
        let mut cfg = ctx.seeded(&arm.apply(ctx.base()), seed);
        cfg.data.tasks = training.clone();
        let syn = &mut cfg.data.synthetic;
        syn.unseen_train_examples = syn.unseen_train_examples.max(max_k);
        cfg
    };
    let all_seeds: Vec<u64> = ctx.tuning_seeds().into_iter().chain(ctx.seeds()).collect();
    let mut jobs = Vec::new();
    for &seed in &all_seeds {
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
        let i = all_seeds
            .iter()
            .position(|&x| x == seed)
            .expect("a known seed");
        base_dirs[2 * i + usize::from(moe)].clone()
    };

    // Phase 2: each new task's sources per model, seed and k: measured, and by family.
    tch::set_num_threads(ctx.loaded.settings.jobs as i32);
    let fine_tune = |arm: &Arm, seed: u64, u: &str, k: usize| -> RunConfig {
        let mut cfg = base_cfg(arm, seed);
        cfg.data.tasks = vec![u.to_string()];
        cfg.data.train_examples = [(u.to_string(), k)].into();
        cfg.data.batch_size = s.batch_size.min(k);
        cfg.train.steps = s.steps;
        cfg.checkpoint.every = s.steps;
        cfg.eval.every = 0;
        cfg.schedule.total_steps = 0;
        cfg.schedule.warmup_steps = (s.steps / 10).max(1);
        cfg
    };
    let family_source = |u: &str| -> Option<String> {
        let fam = &base_data.specs[base_data.id(u)?].family;
        training
            .iter()
            .filter(|t| {
                base_data
                    .id(t)
                    .is_some_and(|i| &base_data.specs[i].family == fam)
            })
            .max_by_key(|t| {
                base_data.train[base_data.id(t).expect("filtered")]
                    .examples
                    .len()
            })
            .cloned()
    };
    let mut choices: Vec<serde_json::Value> = Vec::new();
    let mut chosen: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
    // sources[(seed, u, k)] = [dense measured, task-moe measured]
    let mut sources: BTreeMap<(u64, String, usize), [String; 2]> = BTreeMap::new();
    for &seed in &all_seeds {
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
                let mut picked = [String::new(), String::new()];
                for (mi, model) in models.iter().enumerate() {
                    let candidates = &model.run.data.train_tasks;
                    let Some(Relatedness { best, losses }) =
                        model.most_related(uid, examples, candidates)?
                    else {
                        bail!("no seen task has a head like unseen task `{u}`");
                    };
                    let name = data.specs[best].name.clone();
                    if ctx.seeds().contains(&seed) {
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
                    }
                    picked[mi] = name;
                }
                sources.insert((seed, u.clone(), k), picked);
            }
        }
    }
    let job = |seed: u64, u: &String, k: usize, m: usize, lr: f64| -> Result<Job> {
        let mut cfg = match m {
            0 | SCRATCH => fine_tune(&dense_arm, seed, u, k),
            _ => fine_tune(&moe_arm, seed, u, k),
        };
        cfg.schedule.peak_lr = lr;
        if m != SCRATCH {
            // The checkpoint holds everything, pretrained encoder included.
            cfg.init.from = None;
            cfg.init.checkpoint = Some(base_dir(seed, m > 0));
            let measured = &sources[&(seed, u.clone(), k)][usize::from(m > 0)];
            // Without a seen task in its declared family, the family arm falls back to the
            // measured source (the report lists the families).
            let source = match m {
                2 => family_source(u).unwrap_or_else(|| measured.clone()),
                _ => measured.clone(),
            };
            cfg.init.task_init = [(u.clone(), source)].into();
            cfg.init.task_init_routing = m != 3;
            if m == 4 {
                cfg.train.train_only = vec!["router".into(), "heads".into()];
            }
        }
        let slug = METHODS[m].replace([' ', ',', '+'], "").replace("--", "-");
        Ok(Job {
            id: format!("ft-seed{seed}-{u}-k{k}-{slug}-lr{lr:e}"),
            config: cfg,
        })
    };

    // Phase 3: every arm over the learning-rate grid on the tuning seeds; each arm's rate is
    // the one with the best validation mean (over tuning seeds, unseen tasks and k).
    let mut tune_jobs = Vec::new();
    let mut tune_index = Vec::new();
    for seed in ctx.tuning_seeds() {
        for u in &unseen {
            for &k in &ks {
                for m in 0..METHODS.len() {
                    for (li, &lr) in s.peak_lrs.iter().enumerate() {
                        tune_jobs.push(job(seed, u, k, m, lr)?);
                        tune_index.push((m, li, u.clone()));
                    }
                }
            }
        }
    }
    let tune_dirs = runner.run("unseen: learning rates on the tuning seeds", &tune_jobs)?;
    let mut tuning = vec![vec![Vec::new(); s.peak_lrs.len()]; METHODS.len()];
    for ((m, li, u), dir) in tune_index.iter().zip(&tune_dirs) {
        tuning[*m][*li].push(RunResult::validation_mean(dir, std::slice::from_ref(u))?);
    }
    let chosen_lr: Vec<f64> = tuning
        .iter()
        .map(|per_lr| {
            let best = per_lr
                .iter()
                .enumerate()
                .max_by(|a, b| Summary::of(a.1).mean.total_cmp(&Summary::of(b.1).mean))
                .map_or(0, |(li, _)| li);
            s.peak_lrs[best]
        })
        .collect();

    // Phase 4: the reported seeds at each arm's rate.
    let mut jobs = Vec::new();
    let mut index = Vec::new();
    for seed in ctx.seeds() {
        for u in &unseen {
            for &k in &ks {
                for (m, &lr) in chosen_lr.iter().enumerate() {
                    jobs.push(job(seed, u, k, m, lr)?);
                    index.push((seed, u.clone(), k, m));
                }
            }
        }
    }
    let dirs = runner.run("unseen: k-shot fine-tuning", &jobs)?;
    let tuned = LrTuning {
        grid: s.peak_lrs.clone(),
        validation: tuning,
        chosen: chosen_lr,
    };

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
        ctx, &unseen, &training, &ks, &scores, &per_task, &chosen, &base_data, choices, &tuned,
    )
}

/// The learning-rate search: per arm and rate, the tuning runs' validation scores.
struct LrTuning {
    grid: Vec<f64>,
    validation: Vec<Vec<Vec<f64>>>,
    chosen: Vec<f64>,
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
    tuned: &LrTuning,
) -> Result<Report> {
    let s = &ctx.loaded.settings.unseen;
    let mut md = ctx.preamble("Experiment 2: few-shot transfer to unseen tasks");
    let _ = writeln!(
        md,
        "Seen tasks ({}): {}. Unseen tasks ({}): {}. Task-MoE router: `{}`.\n\nFine-tuning: \
         {} steps, batch min({}, k), peak learning rate per arm from the grid {:?} (chosen on \
         validation below), 10% warmup, on the k examples of one unseen task; test accuracy \
         at the end. Every arm of a seed and k sees the same k examples.\n",
        training.len(),
        training.join(", "),
        unseen.len(),
        unseen.join(", "),
        crate::context::spelling(&ctx.base().model.moe.router.kind),
        s.steps,
        s.batch_size,
        s.peak_lrs,
    );
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
    let main = md_table(&head, &rows);
    let _ = writeln!(
        md,
        "## Mean test accuracy over the unseen tasks (mean ± std over seeds)\n\n{main}"
    );
    let mut cmp_rows = Vec::new();
    let mut comparisons = Vec::new();
    for (name, a, b) in [
        ("task-moe + routing - dense", TRANSFERRED, 0),
        ("task-moe + routing - fresh routing", TRANSFERRED, 3),
        ("measured source - family source", TRANSFERRED, 2),
        ("frozen experts - dense", 4, 0),
        ("task-moe + routing - scratch", TRANSFERRED, SCRATCH),
        ("dense - scratch", 0, SCRATCH),
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
        "## Paired differences\n\nSeed-paired differences of the mean over unseen tasks, \
         uncorrected 95% Student-t intervals (descriptive).\n\n{cmp}"
    );
    let primary = PrimaryContrast {
        claim: 2,
        name: format!(
            "task-moe + routing - dense, mean test accuracy of the unseen tasks over k in {ks:?}"
        ),
        a: mean_over_k(TRANSFERRED),
        b: mean_over_k(0),
    };
    let verdicts = describe(&primary);
    let _ = writeln!(md, "## Primary contrast\n\n{verdicts}");

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
