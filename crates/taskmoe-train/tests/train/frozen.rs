//! `model.frozen_layers` in the trainer: the frozen bottom never moves and holds no optimizer
//! state, what is above it learns the tiny task set (also the task-conditioned dense control,
//! whose added task embedding enters above the frozen bottom and trains), and the states are
//! computed once per frozen weights: a second run reads the cache file the first one wrote, an
//! unreadable file is rebuilt, and other frozen weights get a file of their own.

use crate::no_eval;
use std::path::{Path, PathBuf};

use taskmoe_data::Batch;
use taskmoe_train::{model_input, RunConfig, RunData, Silent, Trainer};
use tch::Kind;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tiny run with a dense block 0 frozen under a MoE block 1, its cache in `out/cache`.
fn tiny(out: &Path, name: &str, extra: &[&str]) -> RunConfig {
    run("configs/tiny.toml", out, name, extra)
}

/// [`tiny`] on the run configuration `file` (relative to the repository).
fn run(file: &str, out: &Path, name: &str, extra: &[&str]) -> RunConfig {
    let mut sets = vec![
        format!("output.dir={}", out.display()),
        format!("output.name={name}"),
        format!("runtime.cache_dir={}", out.join("cache").display()),
        "model.moe_every=2".to_string(),
        "model.frozen_layers=1".to_string(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    RunConfig::load(Some(&root().join(file)), &sets).unwrap()
}

/// Mean validation accuracy over the training tasks.
fn validation_accuracy(trainer: &Trainer, data: &RunData) -> f64 {
    let mut scores = Vec::new();
    for &t in &data.train_tasks {
        let split = &data.validation[t];
        let batch = Batch::from_examples(
            split.examples.iter().map(|e| (t, e)),
            data.seq_len,
            data.pad_id,
        )
        .unwrap()
        .to_tensors(tch::Device::Cpu)
        .unwrap();
        let out = tch::no_grad(|| trainer.model().forward(&model_input(&batch), false)).unwrap();
        let right = out
            .logits
            .argmax(-1, false)
            .eq_tensor(&batch.class_labels)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        scores.push(right);
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

#[test]
fn the_frozen_bottom_stays_and_what_is_above_it_learns() {
    let out = tempfile::tempdir().unwrap();
    // The two-family toy problem (4 binary tasks, 2,000 examples each).
    let cfg = run(
        "configs/toy-families.toml",
        out.path(),
        "learn",
        &["train.steps=300", "checkpoint.every=0", "eval.every=0"],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    let report = trainer.frozen_states().unwrap().clone();
    let examples: usize = data
        .train_tasks
        .iter()
        .map(|&t| {
            data.train[t].examples.len()
                + data.validation[t].examples.len()
                + data.test[t].examples.len()
        })
        .sum();
    assert!(
        report.computed > 0 && report.computed <= examples,
        "{report}"
    );
    assert_eq!(report.read, 0);
    let Watched {
        untrained,
        trained,
        moved,
        ..
    } = train_and_watch(&mut trainer, &data, &cfg);
    for part in [
        "encoder.layer.1.attention",
        "encoder.layer.1.moe",
        "heads.0",
    ] {
        assert!(
            moved.iter().any(|n| n.starts_with(part)),
            "{part} did not train"
        );
    }
    let held: Vec<&str> = trainer.optimizer().names().collect();
    assert!(
        !held.iter().any(|n| cfg.model.is_frozen_param(n)),
        "optimizer state for a frozen parameter"
    );
    // Four binary tasks of 400 validation examples: a gain of 0.04 is three standard errors
    // of the difference. Random frozen embeddings of width 32 for 128 word types limit what
    // the block above can read (the whole model trained reaches about 0.76 in these steps);
    // a pretrained bottom is what the mode is for (docs/training.md measures MiniLM's).
    assert!(
        trained > 0.55 && trained > untrained + 0.04,
        "validation accuracy {untrained:.3} -> {trained:.3}"
    );
}

#[test]
fn the_states_are_computed_once_per_frozen_weights() {
    let out = tempfile::tempdir().unwrap();
    let cfg = tiny(out.path(), "first", &["train.steps=2"]);
    let data = RunData::load(&cfg).unwrap();
    let mut first = Trainer::new(&cfg, &data, false).unwrap();
    let report = first.frozen_states().unwrap().clone();
    let file = report.file.clone().unwrap();
    assert!(file.starts_with(out.path().join("cache/frozen-states")));
    assert!(file.exists(), "{report}");
    first.train(&mut no_eval, &mut Silent, None).unwrap();
    let checkpoint = first.last_checkpoint().unwrap().to_path_buf();
    drop(first);
    // A trained run loaded back (eval, the experiments) reads the states its training cached.
    let loaded = taskmoe_train::TrainedRun::load(
        taskmoe_train::resolve_checkpoint(&checkpoint).unwrap(),
        &[],
        Some(tch::Device::Cpu),
    )
    .unwrap();
    assert_eq!(
        loaded.model.frozen_states().map(|m| m.len()),
        Some(report.computed)
    );
    drop(loaded);

    // Same seed, other arm: the frozen weights (embeddings, block 0) are the same draws, so
    // the dense twin reads every state the first run computed.
    let twin = tiny(
        out.path(),
        "twin",
        &["train.steps=2", "model.variant=\"dense\""],
    );
    let second = Trainer::new(&twin, &data, false).unwrap();
    let again = second.frozen_states().unwrap();
    assert_eq!(again.file.as_ref(), Some(&file));
    assert_eq!(
        (again.read, again.computed),
        (report.computed, 0),
        "{again}"
    );
    drop(second);

    // An unreadable file is rebuilt, not an error.
    std::fs::write(&file, b"garbage").unwrap();
    let third = Trainer::new(&tiny(out.path(), "third", &["train.steps=2"]), &data, false).unwrap();
    let rebuilt = third.frozen_states().unwrap();
    assert_eq!(rebuilt.read, 0);
    assert_eq!(rebuilt.computed, report.computed);
    assert!(rebuilt.unreadable.is_none(), "rewritten: {rebuilt}");
    drop(third);
    let fourth = Trainer::new(
        &tiny(out.path(), "fourth", &["train.steps=2"]),
        &data,
        false,
    )
    .unwrap();
    assert_eq!(fourth.frozen_states().unwrap().read, report.computed);
    drop(fourth);

    // Another seed draws other frozen weights: another key, another file.
    let other = tiny(out.path(), "other", &["train.steps=2", "train.seed=5"]);
    let fifth = Trainer::new(&other, &data, false).unwrap();
    let own = fifth.frozen_states().unwrap();
    assert_ne!(own.key, report.key);
    assert_eq!(own.read, 0);

    // Without the disk cache the states live in memory only.
    let memory = tiny(
        out.path(),
        "memory",
        &["train.steps=2", "runtime.frozen_state_cache=false"],
    );
    let sixth = Trainer::new(&memory, &data, false).unwrap();
    let r = sixth.frozen_states().unwrap();
    assert!(r.file.is_none() && r.computed > 0, "{r}");
}

#[test]
fn a_tower_over_a_frozen_encoder_learns_and_only_it_and_the_heads_train() {
    // Over three seeds: one seed's gain is too close to its noise to decide (measured, 1,000
    // steps, seeds 0-3: +0.048, +0.020, +0.047, +0.038 with autograd's expert gradients and
    // +0.029, +0.030, +0.058, +0.039 with the in-place ones, which differ from autograd's only
    // by rounding: the trajectory, not the learning, moved).
    let mut gains = Vec::new();
    for seed in 0..3 {
        let out = tempfile::tempdir().unwrap();
        let seed = format!("train.seed={seed}");
        // The whole encoder frozen (no MoE block in it), two MoE tower blocks above the pooling.
        let cfg = run(
            "configs/toy-families.toml",
            out.path(),
            "tower",
            &[
                "train.steps=1000",
                "checkpoint.every=0",
                "eval.every=0",
                "model.frozen_layers=2",
                "model.moe_every=3",
                "model.tower_layers=2",
                "schedule.peak_lr=1e-2",
                &seed,
            ],
        );
        let data = RunData::load(&cfg).unwrap();
        let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
        let routed: Vec<usize> = trainer
            .model()
            .moe_layers()
            .iter()
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(routed, vec![2, 3], "the tower's MoE layers only");
        let untrained = validation_accuracy(&trainer, &data);
        trainer.train(&mut no_eval, &mut Silent, None).unwrap();
        gains.push(validation_accuracy(&trainer, &data) - untrained);
        let held: Vec<&str> = trainer.optimizer().names().collect();
        assert!(
            held.iter().all(|n| n.starts_with("tower.")
                || n.starts_with("heads.")
                || n.contains("final_layer_norm")),
            "{held:?}"
        );
        assert!(held.iter().any(|n| n.starts_with("tower.1.moe.router")));
    }
    // Untrained is at chance. 0.022 is three standard errors of a mean accuracy over three
    // seeds of 1,600 validation examples each. Mean-pooled random features of width 32 are a
    // poor input (a frozen pretrained encoder is what the mode is for: docs/training.md), so
    // the tower trains longer and faster than the toy.
    let mean = gains.iter().sum::<f64>() / gains.len() as f64;
    assert!(mean > 0.022, "validation accuracy gains {gains:.3?}");
}

#[test]
fn a_dense_model_with_an_added_task_embedding_above_a_frozen_bottom_learns() {
    let out = tempfile::tempdir().unwrap();
    // The task-dense arm on the two-family toy: dense, block 0 frozen, the task's vector added
    // to the states entering block 1.
    let cfg = run(
        "configs/toy-families.toml",
        out.path(),
        "task-dense",
        &[
            "train.steps=300",
            "checkpoint.every=0",
            "eval.every=0",
            "model.variant=\"dense\"",
            "model.task_embedding=\"added\"",
        ],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    assert!(trainer.frozen_states().unwrap().computed > 0);
    let table = "task_embeddings.weight";
    let held: Vec<&str> = trainer.optimizer().names().collect();
    assert!(held.contains(&table), "{held:?}");
    assert!(
        !held.iter().any(|n| cfg.model.is_frozen_param(n)),
        "optimizer state for a frozen parameter"
    );
    let Watched {
        untrained,
        trained,
        before,
        ..
    } = train_and_watch(&mut trainer, &data, &cfg);
    let after = trainer.var_store().variables();
    // Every training task's row moved from its initial value.
    let old = &before.iter().find(|(n, _)| n == table).unwrap().1;
    for &t in &data.train_tasks {
        let t = t as i64;
        let moved = (after[table].get(t) - old.get(t))
            .abs()
            .max()
            .double_value(&[]);
        assert!(moved > 1e-4, "task {t}'s row moved by {moved}");
    }
    // As in the first test: 0.04 is three standard errors over 1,600 validation examples.
    assert!(
        trained > 0.55 && trained > untrained + 0.04,
        "validation accuracy {untrained:.3} -> {trained:.3}"
    );
}

/// What [`train_and_watch`] saw.
struct Watched {
    /// Validation accuracy before training.
    untrained: f64,
    /// Validation accuracy after.
    trained: f64,
    /// Every parameter before training.
    before: Vec<(String, tch::Tensor)>,
    /// The parameters that moved (none of them frozen: that is asserted).
    moved: Vec<String>,
}

/// Trains `trainer` to its last step, asserting that no frozen parameter of `cfg`'s model
/// moved; returns the validation accuracy before and after and what moved.
fn train_and_watch(trainer: &mut Trainer, data: &RunData, cfg: &RunConfig) -> Watched {
    let before: Vec<(String, tch::Tensor)> = trainer
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    let untrained = validation_accuracy(trainer, data);
    trainer.train(&mut no_eval, &mut Silent, None).unwrap();
    let trained = validation_accuracy(trainer, data);
    let after = trainer.var_store().variables();
    let mut moved = Vec::new();
    for (name, old) in &before {
        let changed = after[name].ne_tensor(old).any().int64_value(&[]) != 0;
        if cfg.model.is_frozen_param(name) {
            assert!(!changed, "{name} is frozen but moved");
        } else if changed {
            moved.push(name.clone());
        }
    }
    Watched {
        untrained,
        trained,
        before,
        moved,
    }
}
