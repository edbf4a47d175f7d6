//! Gradient affinity (`taskmoe_eval::gradient_affinity`): its grouping and arithmetic on the
//! toy families' model as training starts it.

use taskmoe_eval::{gradient_affinity, AffinityOptions, EvalData, GradientAffinity};
use taskmoe_train::{trainable, Trainer};
use tch::{Device, Kind};

/// The affinity of `tasks` (task ids, repeats allowed) of the toy families' fresh model with
/// `sets`, and the model's trained parameters afterwards (to check their gradients).
fn affinity(name: &str, sets: &[&str], tasks: &[usize]) -> (GradientAffinity, Vec<f64>) {
    crate::threads();
    let (dir, cfg, data) =
        crate::scratch_run(&format!("affinity-{name}"), crate::TOY_FAMILIES, sets);
    let trainer = Trainer::new(&cfg, &data, false).unwrap();
    let params = trainable(trainer.var_store(), &cfg).unwrap();
    let split = EvalData {
        specs: &data.specs,
        split: &data.train,
        seq_len: data.seq_len,
        pad_id: data.pad_id,
    };
    let options = AffinityOptions {
        examples_per_task: 96,
        batch_size: 40,
    };
    let result = gradient_affinity(
        trainer.model(),
        &split,
        tasks,
        &params,
        options,
        Device::Cpu,
    )
    .unwrap();
    let left: Vec<f64> = params
        .iter()
        .map(|(_, t)| match t.grad().defined() {
            true => t.grad().abs().sum(Kind::Double).double_value(&[]),
            false => 0.0,
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (result, left)
}

#[test]
fn a_task_against_itself_has_cosine_one_in_every_group_and_no_gradient_is_left_behind() {
    // Task 0 twice, then task 2 (the other family).
    let (a, left) = affinity("self", &[], &[0, 0, 2]);
    assert_eq!(a.tasks[0], a.tasks[1]);
    assert_eq!(a.examples, vec![96, 96, 96]);
    let names: Vec<&str> = a.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names, ["shared", "experts", "router 0", "router 1"]);
    for g in &a.groups {
        assert!(
            (g.cosine[0][1] - 1.0).abs() < 1e-9,
            "{}: {:?}",
            g.group,
            g.cosine
        );
        assert!(
            (g.norm[0] - g.norm[1]).abs() <= 1e-9 * g.norm[0],
            "{}",
            g.group
        );
        assert!(g.norm[0] > 0.0, "{}: no gradient", g.group);
        assert!(
            g.cosine[0][2] < 1.0 - 1e-6,
            "{}: another task is not the same",
            g.group
        );
        for i in 0..3 {
            assert!((g.cosine[i][i] - 1.0).abs() < 1e-9);
            for j in 0..3 {
                assert_eq!(g.cosine[i][j], g.cosine[j][i]);
            }
        }
    }
    // d = 32, 4 experts: a per-task gate row is 4 x 32 entries (with `gate_start = "shared"`
    // the shared gate's 4 x 32 besides); the experts of both blocks 2 x 4 x (32 x 64 + 64 +
    // 64 x 32 + 32).
    let entries = |name: &str| a.groups.iter().find(|g| g.group == name).unwrap().entries;
    assert_eq!(entries("router 0"), 2 * 4 * 32);
    assert_eq!(entries("experts"), 2 * 4 * (32 * 64 + 64 + 64 * 32 + 32));
    assert!(
        left.iter().all(|&g| g == 0.0),
        "gradients left in the parameters"
    );
}

#[test]
fn independent_gates_compare_each_tasks_own_row() {
    let (a, _) = affinity(
        "independent",
        &["model.moe.router.gate_start=independent"],
        &[0, 1, 2, 3],
    );
    let router = a.groups.iter().find(|g| g.group == "router 1").unwrap();
    // Only the task's own `[E, d]` row of the `[tasks, E, d]` gate.
    assert_eq!(router.entries, 4 * 32);
    // Rows of different tasks, each nonzero: no two tasks' gradients coincide.
    for i in 0..4 {
        assert!(router.norm[i] > 0.0);
        for j in 0..4 {
            if i != j {
                assert!(router.cosine[i][j].abs() < 1.0 - 1e-6);
            }
        }
    }
    assert_eq!(a.families, ["lexicon", "lexicon", "order", "order"]);
    assert!(router.family.within_family.is_some() && router.family.across_family.is_some());
}

#[test]
fn task_embeddings_are_a_group_of_their_own_compared_row_by_row() {
    let (plain, _) = affinity("plain", &[], &[0, 1, 2, 3]);
    let (added, _) = affinity("added", &["model.task_embedding=added"], &[0, 1, 2, 3]);
    let group = |a: &taskmoe_eval::GradientAffinity, name: &str| {
        a.groups.iter().find(|g| g.group == name).map(|g| g.entries)
    };
    // d = 32: each task's own row of the `[tasks, d]` table, and not in `shared`.
    assert_eq!(group(&added, "task embeddings"), Some(32));
    assert_eq!(group(&plain, "task embeddings"), None);
    assert_eq!(group(&added, "shared"), group(&plain, "shared"));
    let rows = added
        .groups
        .iter()
        .find(|g| g.group == "task embeddings")
        .unwrap();
    assert!(rows.norm.iter().all(|&n| n > 0.0), "{:?}", rows.norm);
}
