//! Experiment 2: sample-efficient generalisation to unseen tasks.
//!
//! Per seed, a dense and a task-MoE model (the configured router) train on the seen tasks.
//! Then, for every held-out task and shot count k (a nested subsample of its training pool),
//! seven arms fine-tune on those k examples alone for the same steps. The protocol
//! (`PROTOCOL.md`, claim 2) gives both models **the same source**: the seen task of the new
//! task's declared family with the most training examples (the family source).
//!
//! - `dense, family source`: the dense multi-task model, the new task starting from the family
//!   source's head (and task embedding, if any);
//! - `task-moe + family routing`: the task-MoE model, the new task taking the family source's
//!   routing, head and task embedding (the primary contrast: this minus `dense, family
//!   source`);
//! - `task-moe, fresh routing`: the family source's head, but the new task keeps its own
//!   freshly initialised routing (what transferring the routing adds: `family routing - fresh
//!   routing`); under the `task-representation` router, its routing from its own k examples
//!   (its task state calibrated from them, `init.calibrate_routing`), with no source's state
//!   (task states held fixed while fine-tuning in both);
//! - `task-moe + unrelated routing`: the negative control, the family source's head and task
//!   embedding with the routing of the seen task of another family with the most training
//!   examples (`init.routing_from`); it must show no gain over fresh routing;
//! - `task-moe + measured routing`: the source chosen by measurement, beside the declared one:
//!   the seen task whose routing, task embedding and head give the lowest loss on the k
//!   examples before any fine-tuning ([`crate::transfer`]);
//! - `task-moe, frozen experts`: the family source with its routing; only the routers (and task
//!   embeddings) and heads adapt, so what transfers is what the routing carries;
//! - `scratch`: a dense model of the same size trained from the base run's own initialisation
//!   (random, or the pretrained encoder when the run configuration has `init.from`).
//!
//! Every arm's peak learning rate comes from the same grid (`unseen.peak_lrs`), chosen per arm
//! on the validation mean of the tuning seeds; the reported seeds run at that choice. Every
//! run (seen-task models and fine-tunes) is tested at its best validation checkpoint
//! (`evals_per_run`), and the fine-tunes start from the seen-task models' tested checkpoints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{bail, Context, Result};
use serde_json::json;
use taskmoe_data::synthetic::TaskRole;
use taskmoe_router::RouterKind;
use taskmoe_train::{RunConfig, RunData};

use crate::config::Arm;
use crate::context::ExperimentContext;
use crate::experiment::Experiment;
use crate::report::Report;
use crate::results::{stopping_summary, RunResult};
use crate::runner::Job;
use crate::stats::Summary;
use crate::transfer::{Relatedness, TrainedModel};

mod report;
use report::build_report;

/// The fine-tuning arms, in table order.
const METHODS: [&str; 7] = [
    "dense, family source",
    "task-moe + family routing",
    "task-moe, fresh routing",
    "task-moe + unrelated routing",
    "task-moe + measured routing",
    "task-moe, frozen experts",
    "scratch",
];

/// Index of `dense, family source`, the baseline of the primary contrast.
const DENSE: usize = 0;
/// Index of `task-moe + family routing`, the arm of the primary contrast.
const TRANSFERRED: usize = 1;
/// Index of `task-moe, fresh routing`.
const FRESH: usize = 2;
/// Index of `task-moe + unrelated routing`, the negative control.
const UNRELATED: usize = 3;
/// Index of `task-moe + measured routing`.
const MEASURED: usize = 4;
/// Index of `task-moe, frozen experts`.
const FROZEN: usize = 5;
/// Index of `scratch`.
const SCRATCH: usize = 6;

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
    // Declared sources, the same for both models: the largest seen task of the new task's
    // family, and (the negative control) the largest seen task of any other family, each with
    // a head like the new task's.
    let heads = base_data.heads();
    let largest = |same_family: bool, u: &str| -> Option<String> {
        let uid = base_data.id(u).expect("checked above");
        let fam = &base_data.specs[uid].family;
        training
            .iter()
            .filter(|t| {
                base_data.id(t).is_some_and(|i| {
                    (&base_data.specs[i].family == fam) == same_family
                        && heads[i].kind == heads[uid].kind
                })
            })
            .max_by_key(|t| {
                let n = base_data.train[base_data.id(t).expect("filtered")]
                    .examples
                    .len();
                (n, std::cmp::Reverse((*t).clone()))
            })
            .cloned()
    };
    let mut family_source = BTreeMap::new();
    let mut unrelated_source = BTreeMap::new();
    for u in &unseen {
        // Without a seen task of its family, the family arms take the measured source (the
        // report says so): the protocol's claim 2 needs declared families.
        family_source.insert(u.clone(), largest(true, u));
        let other = largest(false, u).with_context(|| {
            format!(
                "unseen task `{u}`: no seen task of another family with a head like its own, \
                 for the negative control of claim 2 (declare the tasks' `family` in the \
                 registry)"
            )
        })?;
        unrelated_source.insert(u.clone(), other);
    }
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
    // Every later stage reads the seen-task models at their tested (best validation)
    // checkpoints.
    let base_dirs: Vec<PathBuf> = base_dirs
        .iter()
        .map(|d| RunResult::tested_checkpoint(d))
        .collect::<Result<_>>()?;
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
        ctx.early_stopped(cfg)
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
        let moe = !matches!(m, DENSE | SCRATCH);
        let mut cfg = match moe {
            false => fine_tune(&dense_arm, seed, u, k),
            true => fine_tune(&moe_arm, seed, u, k),
        };
        cfg.schedule.peak_lr = lr;
        if m != SCRATCH {
            // The checkpoint holds everything, pretrained encoder included.
            cfg.init.from = None;
            cfg.init.checkpoint = Some(base_dir(seed, moe));
            let measured = &sources[&(seed, u.clone(), k)];
            let source = match m {
                MEASURED => measured[1].clone(),
                // The same source for both models; the measured one of each model when the
                // task's family has no seen task.
                _ => family_source[u]
                    .clone()
                    .unwrap_or_else(|| measured[usize::from(moe)].clone()),
            };
            cfg.init.task_init = [(u.clone(), source)].into();
            cfg.init.task_init_routing = !matches!(m, FRESH | UNRELATED);
            if m == UNRELATED {
                // The family source's head and task embedding, another family's routing.
                cfg.init.routing_from = [(u.clone(), unrelated_source[u].clone())].into();
            }
            if moe && cfg.model.moe.router.kind == RouterKind::TaskRepresentation {
                // The new task's state stays what it was given: the source's (copied
                // routing) or, for `fresh routing`, the mean of its own k examples.
                cfg.model.moe.router.task_state_momentum = 0.0;
                cfg.init.calibrate_routing = m == FRESH;
            }
            if m == FROZEN {
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
    // The bag-of-words baseline on the same k examples of each unseen task.
    let mut bow: BTreeMap<(usize, String), Vec<f64>> = BTreeMap::new();
    for seed in ctx.seeds() {
        for u in &unseen {
            for (ki, &k) in ks.iter().enumerate() {
                let cfg = fine_tune(&dense_arm, seed, u, k);
                if let Some(v) = ctx.bag_of_words(&cfg, std::slice::from_ref(u))?.get(u) {
                    bow.entry((ki, u.clone())).or_default().push(*v);
                }
            }
        }
    }
    let sources = Sources {
        family: family_source,
        unrelated: unrelated_source,
        measured: chosen,
        choices,
    };
    let mut report = build_report(
        ctx, &unseen, &training, &ks, &scores, &per_task, &bow, &sources, &base_data, &tuned,
    )?;
    if let Some(text) = stopping_summary(&dirs)? {
        report.append_section("Early stopping (fine-tuning runs)", &text);
    }
    Ok(report)
}

/// The sources the arms started from: declared per unseen task, measured per model and seed.
struct Sources {
    /// The family source of each unseen task (both models); `None` when its family has no
    /// seen task (then each model's measured source stands in).
    family: BTreeMap<String, Option<String>>,
    /// The negative control's source of each unseen task.
    unrelated: BTreeMap<String, String>,
    /// Per unseen task and model (`true`: task-MoE), the measured source of each reported
    /// seed and k.
    measured: BTreeMap<(String, bool), Vec<String>>,
    /// Every measured choice with its candidates' losses (`results.json`).
    choices: Vec<serde_json::Value>,
}

/// The learning-rate search: per arm and rate, the tuning runs' validation scores.
struct LrTuning {
    grid: Vec<f64>,
    validation: Vec<Vec<Vec<f64>>>,
    chosen: Vec<f64>,
}
