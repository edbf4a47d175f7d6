//! Starting a run from another: `init.checkpoint`, `init.task_init` and
//! `data.train_examples`, and the errors that name their keys.

use crate::no_eval;
use std::path::{Path, PathBuf};

use taskmoe_train::{RunConfig, RunData, Silent, Trainer};

fn tiny(out: &Path, name: &str, extra: &[&str]) -> taskmoe_train::Result<RunConfig> {
    let mut sets = vec![
        format!("output.dir={}", out.display()),
        format!("output.name={name}"),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    RunConfig::load(Some(&path), &sets)
}

fn scratch(name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("taskmoe-transfer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    out
}

#[test]
fn train_examples_keeps_a_nested_subsample_per_seed() {
    let out = scratch("subsample");
    let load = |n: usize, seed: u64| {
        let cfg = tiny(
            &out,
            "run",
            &[
                &format!("data.train_examples={{ lexicon_lo0 = {n} }}"),
                &format!("train.seed={seed}"),
            ],
        )
        .unwrap();
        let data = RunData::load(&cfg).unwrap();
        let id = data.id("lexicon_lo0").unwrap();
        data.train[id]
            .examples
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let (small, large) = (load(4, 0), load(8, 0));
    assert_eq!((small.len(), large.len()), (4, 8));
    assert!(small.iter().all(|id| large.contains(id)), "nested");
    assert_ne!(load(8, 1), large, "another seed, another subsample");

    let cfg = tiny(&out, "run", &["data.train_examples={ lexicon_lo0 = 1000 }"]).unwrap();
    let err = RunData::load(&cfg).unwrap_err().to_string();
    assert!(err.contains("data.train_examples.lexicon_lo0"), "{err}");
    let cfg = tiny(&out, "run", &["data.train_examples={ nope = 3 }"]).unwrap();
    let err = RunData::load(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("data.train_examples") && err.contains("`nope`"),
        "{err}"
    );
}

#[test]
fn init_checkpoint_starts_from_the_trained_weights_and_task_init_copies_a_task() {
    let out = scratch("init");
    let cfg = tiny(&out, "base", &[]).unwrap();
    let data = RunData::load(&cfg).unwrap();
    let mut base = Trainer::new(&cfg, &data, false).unwrap();
    base.train(&mut no_eval, &mut Silent, None).unwrap();

    let from = format!("init.checkpoint={}", out.join("base").display());
    let cfg = tiny(
        &out,
        "fine-tune",
        &[
            &from,
            "data.tasks=[\"lexicon_unseen0\"]",
            "init.task_init={ lexicon_unseen0 = \"lexicon_hi0\" }",
        ],
    )
    .unwrap();
    let data = RunData::load(&cfg).unwrap();
    let tuned = Trainer::new(&cfg, &data, false).unwrap();
    let before = base.var_store().variables();
    let after = tuned.var_store().variables();
    let (new, seen) = (
        data.id("lexicon_unseen0").unwrap(),
        data.id("lexicon_hi0").unwrap(),
    );
    for (name, tensor) in &after {
        let expected = if name.starts_with(&format!("heads.{new}.")) {
            before[&name.replacen(&format!("heads.{new}."), &format!("heads.{seen}."), 1)]
                .shallow_clone()
        } else if name.ends_with("router.weight") && tensor.dim() == 3 {
            // Per-task gates: the new task's slice is the seen task's, the rest unchanged.
            let w = before[name].copy();
            w.get(new as i64).copy_(&before[name].get(seen as i64));
            w
        } else {
            before[name].shallow_clone()
        };
        assert!(tensor.equal(&expected), "{name}");
    }

    // A head from one task, routing from another (`init.routing_from`, after `task_init`).
    let cfg = tiny(
        &out,
        "split-sources",
        &[
            &from,
            "data.tasks=[\"lexicon_unseen0\"]",
            "init.task_init={ lexicon_unseen0 = \"lexicon_hi0\" }",
            "init.routing_from={ lexicon_unseen0 = \"order_hi0\" }",
        ],
    )
    .unwrap();
    let data = RunData::load(&cfg).unwrap();
    let split = Trainer::new(&cfg, &data, false).unwrap();
    let routing_source = data.id("order_hi0").unwrap();
    let mut gates = 0;
    for (name, tensor) in &split.var_store().variables() {
        if name.starts_with(&format!("heads.{new}.")) {
            let head = name.replacen(&format!("heads.{new}."), &format!("heads.{seen}."), 1);
            assert!(
                tensor.equal(&before[&head]),
                "{name}: the head is lexicon_hi0's"
            );
        } else if name.ends_with("router.weight") && tensor.dim() == 3 {
            let own = tensor.get(new as i64);
            assert!(
                own.equal(&before[name].get(routing_source as i64)),
                "{name}"
            );
            gates += 1;
        }
    }
    assert!(gates > 0, "the tiny model has per-task gates");
    let unknown = tiny(
        &out,
        "w",
        &["init.routing_from={ lexicon_unseen0 = \"nope\" }"],
    )
    .unwrap();
    let err = RunData::load(&unknown).unwrap_err().to_string();
    assert!(err.contains("init.routing_from.lexicon_unseen0"), "{err}");

    let missing = tiny(&out, "x", &["init.checkpoint=/nonexistent/run"]).unwrap();
    let data = RunData::load(&missing).unwrap();
    let err = Trainer::new(&missing, &data, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent/run"), "{err}");
    let unknown = tiny(
        &out,
        "y",
        &["init.task_init={ lexicon_unseen0 = \"nope\" }"],
    )
    .unwrap();
    let err = RunData::load(&unknown).unwrap_err().to_string();
    assert!(
        err.contains("init.task_init.lexicon_unseen0") && err.contains("`nope`"),
        "{err}"
    );
    let both = tiny(&out, "z", &[&from, "init.from=/some/bert"]);
    let err = both.unwrap_err().to_string();
    assert!(err.contains("exclude each other"), "{err}");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn checkpoints_without_optimizer_state_start_runs_but_do_not_resume() {
    let out = scratch("no-optimizer");
    let cfg = tiny(&out, "base", &["checkpoint.save_optimizer=false"]).unwrap();
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, Some(3)).unwrap();
    let ckpt = trainer.last_checkpoint().unwrap().to_path_buf();
    assert!(ckpt.join(taskmoe_train::MODEL_FILE).is_file());
    assert!(!ckpt.join(taskmoe_train::OPTIMIZER_FILE).exists());
    drop(trainer); // releases the run folder's lock
    let err = Trainer::new(&cfg, &data, true).err().unwrap().to_string();
    assert!(
        err.contains("no optimizer state") && err.contains("init.checkpoint"),
        "{err}"
    );
    let from = format!("init.checkpoint={}", out.join("base").display());
    let next = tiny(&out, "next", &[&from]).unwrap();
    Trainer::new(&next, &RunData::load(&next).unwrap(), false).unwrap();
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn calibrate_routing_sets_the_task_states_of_the_tasks_it_did_not_copy() {
    let out = scratch("calibrate");
    let states = |extra: &[&str]| {
        let mut sets = vec![
            "model.variant=task-moe",
            "model.moe.router.kind=task-representation",
        ];
        sets.extend_from_slice(extra);
        let cfg = tiny(&out, "run", &sets).unwrap();
        let data = RunData::load(&cfg).unwrap();
        let trainer = Trainer::new(&cfg, &data, false).unwrap();
        let (_, layer) = trainer.model().moe_layers()[0];
        let state = layer.router().task_states().unwrap().copy();
        let ids: Vec<usize> = data.train_tasks.clone();
        (state, ids, data)
    };
    let (cold, ids, _) = states(&[]);
    assert_eq!(cold.abs().sum(tch::Kind::Float).double_value(&[]), 0.0);
    let (warm, ids2, data) = states(&["init.calibrate_routing=true"]);
    assert_eq!(ids, ids2);
    for &t in &ids {
        assert!(
            warm.get(t as i64)
                .abs()
                .sum(tch::Kind::Float)
                .double_value(&[])
                > 0.0,
            "task {} calibrated",
            data.specs[t].name
        );
    }
    // A task whose routing task_init copies keeps the copy (here: the zero state of its source,
    // a held-out task that never trained).
    let held_out = data
        .specs
        .iter()
        .position(|s| s.held_out)
        .expect("tiny has one");
    let target = data.specs[ids[0]].name.clone();
    let source = data.specs[held_out].name.clone();
    let init = format!("init.task_init={{ {target} = \"{source}\" }}");
    let (copied, _, _) = states(&["init.calibrate_routing=true", &init]);
    assert_eq!(
        copied
            .get(ids[0] as i64)
            .abs()
            .sum(tch::Kind::Float)
            .double_value(&[]),
        0.0
    );
    assert!(
        copied
            .get(ids[1] as i64)
            .abs()
            .sum(tch::Kind::Float)
            .double_value(&[])
            > 0.0
    );
    let _ = std::fs::remove_dir_all(&out);
}
