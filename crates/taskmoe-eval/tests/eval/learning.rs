//! Learning, not only math: on a tiny two-family task set, a task-aware MoE trained for a few
//! hundred steps learns both tasks and routes the two families to different experts (hard
//! task-expert mutual information of the argmax routing on validation).
//!
//! Measured when this test was written (test split, same settings): with the Mod-Squad
//! task-expert loss at 0.3 the per-task router separates the families completely in both
//! blocks (I = 0.646 nats, the entropy of the task mix), at 0.1 it reaches 0.33 / 0.55; from
//! the task loss alone it stays at 0.19 / 0.11, below a task-agnostic token router (0.27 /
//! 0.18, which tells the families apart by their input format, pairs against single
//! sentences). Separation is what the routing loss buys, so the test configures it.

use taskmoe_eval::{evaluate, routing::analyze, EvalData, EvalResult};
use taskmoe_train::{EvalPoint, RunData, Silent, Trainer};

use crate::TOY_FAMILIES;

/// Two single-sentence families with different skills (a bag-of-words lexicon and the
/// position-dependent order skill) on disjoint word weights, one task each; a 2-block pre-LN
/// model whose blocks are both MoE (4 experts, top-1 straight-through, dropless).
const TWO_FAMILIES: &str = include_str!("../fixtures/two-families.toml");

fn train(name: &str, sets: &[&str]) -> (RunData, EvalResult) {
    train_config(name, TWO_FAMILIES, sets)
}

/// Trains the run configuration `toml` with the overrides `sets` in a scratch folder and
/// evaluates it on validation.
fn train_config(name: &str, toml: &str, sets: &[&str]) -> (RunData, EvalResult) {
    let (dir, cfg, data) = crate::scratch_run(&format!("learning-{name}"), toml, sets);
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    let mut no_eval = |_: &taskmoe_model::MultiTaskModel, _: u64| {
        Ok(EvalPoint {
            record: serde_json::json!({}),
            score: None,
        })
    };
    trainer.train(&mut no_eval, &mut Silent, None).unwrap();
    let validation = EvalData {
        specs: &data.specs,
        split: &data.validation,
        seq_len: data.seq_len,
        pad_id: data.pad_id,
    };
    let result = evaluate(
        trainer.model(),
        &validation,
        &data.train_tasks,
        400,
        tch::Device::Cpu,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (data, result)
}

/// Accuracy per task and the hard task-expert mutual information (nats) of each MoE block.
fn summary(data: &RunData, result: &EvalResult) -> (Vec<(String, f64)>, Vec<f64>) {
    let accuracy = result
        .tasks
        .iter()
        .map(|t| (t.task.clone(), t.metrics["accuracy"]))
        .collect();
    let names: Vec<String> = data.specs.iter().map(|s| s.name.clone()).collect();
    let mi = result
        .routing
        .iter()
        .map(|(&layer, counts)| analyze(layer, &names, &names, counts, None).mutual_information)
        .collect();
    (accuracy, mi)
}

#[test]
fn a_task_aware_moe_learns_two_families_and_routes_them_apart() {
    crate::threads();
    let (data, result) = train("task-moe", &[]);
    let (accuracy, mi) = summary(&data, &result);
    eprintln!("task-moe per-task: accuracy {accuracy:?}, hard I(task; expert) {mi:?}");
    for (task, acc) in &accuracy {
        assert!(*acc >= 0.75, "{task}: validation accuracy {acc:.3} < 0.75");
    }
    // Two tasks: at most the entropy of the task mix (< ln 2 = 0.693 nats); 0.45 means the
    // families use mostly different experts in every block.
    assert_eq!(mi.len(), 2, "both blocks are MoE");
    for (block, m) in mi.iter().enumerate() {
        assert!(
            *m >= 0.45,
            "MoE block {block}: I(task; expert) = {m:.3} < 0.45"
        );
    }
}

/// Every task's validation accuracy is at least `floor`.
fn assert_learned(accuracy: &[(String, f64)], floor: f64) {
    for (task, acc) in accuracy {
        assert!(
            *acc >= floor,
            "{task}: validation accuracy {acc:.3} < {floor}"
        );
    }
}

#[test]
fn the_routing_recipe_keys_learn_four_tasks_of_two_families() {
    crate::threads();
    // Every recipe key of this wave at once: paired initialisation (the default), shared
    // gate start, linear heads (the file's), routers at 10x the learning rate and the
    // load balance over tasks.
    let (data, result) = train_config(
        "recipe",
        TOY_FAMILIES,
        &[
            "optim.router_lr_scale=10",
            "model.moe.router.balance_over=tasks",
        ],
    );
    let (accuracy, mi) = summary(&data, &result);
    eprintln!("recipe per-task: accuracy {accuracy:?}, hard I(task; expert) {mi:?}");
    assert_learned(&accuracy, 0.65);
}

/// Each MoE block's share of validation tokens per expert (all tasks together).
fn expert_shares(result: &EvalResult) -> Vec<Vec<f64>> {
    result
        .routing
        .values()
        .map(|counts| {
            let experts = counts.first().map_or(0, Vec::len);
            let per_expert: Vec<f64> = (0..experts)
                .map(|e| counts.iter().map(|row| row[e] as f64).sum())
                .collect();
            let total: f64 = per_expert.iter().sum();
            per_expert.iter().map(|c| c / total).collect()
        })
        .collect()
}

#[test]
fn bias_balancing_learns_the_toy_families_and_spreads_the_load() {
    crate::threads();
    // Over three seeds: on one seed order_hi1 sits at the floor (seed 0: 0.655 with
    // autograd's expert gradients, 0.625 with the in-place ones, which differ from autograd's
    // only by rounding), so one run cannot decide it. Measured with the in-place ones, seeds
    // 0-2: order_hi1 0.625, 0.653, 0.713 (mean 0.663), order_hi0 0.690, 0.660, 0.685.
    let mut per_task: Vec<(String, f64)> = Vec::new();
    for seed in 0..3 {
        let seed = format!("train.seed={seed}");
        let (data, result) = train_config(
            "bias-balance",
            TOY_FAMILIES,
            &[
                "model.moe.router.bias_update_rate=0.01",
                "model.moe.router.load_balance_coef=0",
                &seed,
            ],
        );
        let (accuracy, _) = summary(&data, &result);
        let shares = expert_shares(&result);
        eprintln!("bias balancing, {seed}: accuracy {accuracy:?}, expert shares {shares:?}");
        for (task, acc) in accuracy {
            match per_task.iter_mut().find(|(t, _)| *t == task) {
                Some((_, sum)) => *sum += acc / 3.0,
                None => per_task.push((task, acc / 3.0)),
            }
        }
        // No load-balancing loss at all: the bias alone keeps every expert near 1/4 of the
        // tokens (measured 0.22 to 0.28).
        for (block, block_shares) in shares.iter().enumerate() {
            for (e, share) in block_shares.iter().enumerate() {
                assert!(
                    (0.15..=0.35).contains(share),
                    "{seed}, block {block}, expert {e}: {share:.3} of the tokens"
                );
            }
        }
    }
    assert_learned(&per_task, 0.65);
}

/// Measured when this test was written: with the configuration's task-expert loss (0.3) all
/// three separate the families completely in both blocks (first-choice I = 0.645 nats); from
/// the task loss alone (`mutual_information_coef = 0`) mmoe reaches 0.15 / 0.08, cgc 0.54 /
/// 0.37 (its own experts separate by construction) and dselect-k 0.645 / 0.0 (in the second
/// block both tasks settle on the same expert), each learning both tasks (0.84 to 0.94).
/// `expert-choice` learns both (0.95 / 0.82) with I = 0 in both blocks, by construction;
/// `task-representation` learns both (0.94 / 0.84) at I = 0.63 / 0.65 with the loss.
#[test]
fn every_multi_task_gate_family_learns_two_families_and_routes_them_apart() {
    crate::threads();
    // Each family with the configuration's task-expert loss: mmoe mixing all 4 experts, cgc
    // with one expert per task plus 2 shared (its dense mixture, k = 3), dselect-k with 2
    // selectors, expert-choice with one slot per token on average.
    for (kind, k) in [
        ("mmoe", 4),
        ("cgc", 3),
        ("dselect-k", 2),
        ("expert-choice", 1),
        ("task-representation", 1),
    ] {
        let (data, result) = train(
            kind,
            &[
                &format!("model.moe.router.kind={kind}"),
                &format!("model.moe.router.k={k}"),
            ],
        );
        let (accuracy, mi) = summary(&data, &result);
        eprintln!("{kind} per-task: accuracy {accuracy:?}, first-choice I(task; expert) {mi:?}");
        assert_learned(&accuracy, 0.75);
        assert_eq!(mi.len(), 2, "both blocks are MoE");
        for (block, m) in mi.iter().enumerate() {
            match kind {
                // Per-task capacity gives every expert the same share of every task: routing
                // cannot separate tasks by expert, only choose which of a task's tokens.
                "expert-choice" => assert!(*m < 0.01, "{kind}, MoE block {block}: I = {m:.3}"),
                _ => assert!(*m >= 0.45, "{kind}, MoE block {block}: I = {m:.3} < 0.45"),
            }
        }
    }
}

/// Measured when written: accuracy 0.875 / 0.858 / 0.740 / 0.685, hard I(task; expert)
/// 0.26 / 0.09 (no routing loss).
#[test]
fn a_soft_to_sparse_warm_up_learns_the_toy_families() {
    crate::threads();
    // The first 100 of 400 steps route each token to 4, then 3, then 2 experts, then 1.
    let (data, result) = train_config(
        "k-warmup",
        TOY_FAMILIES,
        &["model.moe.router.k_warmup_steps=100"],
    );
    let (accuracy, mi) = summary(&data, &result);
    eprintln!("k warm-up: accuracy {accuracy:?}, hard I(task; expert) {mi:?}");
    assert_learned(&accuracy, 0.65);
}

#[test]
fn lora_experts_learn_two_families_from_scratch_and_route_them_apart() {
    crate::threads();
    // LoRA experts of rank 8 on each block's frozen (randomly initialised) FFN: attention,
    // embeddings, routers, factors and heads train, at the full experts' settings. Measured
    // when written: validation accuracy 0.95 / 0.91, I(task; expert) 0.645 in both blocks
    // (the families apart completely).
    let (data, result) = train(
        "lora",
        &[
            "model.moe.expert_kind=\"lora\"",
            "model.moe.lora_rank=8",
            "model.moe.lora_alpha=16",
        ],
    );
    let (accuracy, mi) = summary(&data, &result);
    eprintln!(
        "task-moe per-task, LoRA experts: accuracy {accuracy:?}, hard I(task; expert) {mi:?}"
    );
    assert_learned(&accuracy, 0.75);
    assert_eq!(mi.len(), 2, "both blocks are MoE");
    for (block, m) in mi.iter().enumerate() {
        assert!(
            *m >= 0.45,
            "MoE block {block}: I(task; expert) = {m:.3} < 0.45"
        );
    }
}

/// Mean over the MoE blocks of validation routing overlap within minus across families.
fn family_margin(data: &RunData, result: &EvalResult) -> f64 {
    let names: Vec<String> = data.specs.iter().map(|s| s.name.clone()).collect();
    let families: Vec<String> = data.specs.iter().map(|s| s.family.clone()).collect();
    let margins: Vec<f64> = result
        .routing
        .iter()
        .map(|(&layer, counts)| {
            let f = analyze(layer, &names, &families, counts, None).family;
            f.within_family.unwrap() - f.across_family.unwrap()
        })
        .collect();
    margins.iter().sum::<f64>() / margins.len() as f64
}

#[test]
fn shared_head_starts_route_the_toy_families_apart_where_independent_heads_do_not() {
    // The search behind this (`taskmoe search --config configs/toy-families.toml --axis
    // model.head_start=independent,shared --seeds 10`, tuning seeds 1000-1009) measured
    // within - across overlap on the test split: 0.320 ± 0.170 shared against -0.035 ± 0.044
    // independent. Here its first three seeds, on validation.
    let mut margins = [0.0, 0.0];
    for (i, start) in ["independent", "shared"].iter().enumerate() {
        for seed in 1000..1003 {
            let (data, result) = train_config(
                &format!("heads-{start}-{seed}"),
                TOY_FAMILIES,
                &[
                    &format!("model.head_start={start}"),
                    &format!("train.seed={seed}"),
                ],
            );
            let (accuracy, _) = summary(&data, &result);
            let margin = family_margin(&data, &result);
            eprintln!("{start} heads, seed {seed}: accuracy {accuracy:?}, margin {margin:.3}");
            // The recipe under test learns every task; the independent heads are only the
            // routing baseline (their order tasks reach 0.56 to 0.65 in 400 steps, the
            // shared heads' 0.62 to 0.78).
            if *start == "shared" {
                assert_learned(&accuracy, 0.58);
            }
            margins[i] += margin / 3.0;
        }
    }
    eprintln!("within - across overlap, independent / shared heads: {margins:?}");
    assert!(
        margins[1] > 0.1 && margins[1] > margins[0] + 0.1,
        "shared heads: within - across overlap {:.3} (independent {:.3})",
        margins[1],
        margins[0]
    );
}
