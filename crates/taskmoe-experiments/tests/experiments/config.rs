//! Experiment settings: profiles, a user file over a profile, overrides, and errors that name
//! the file and key.

use taskmoe_data::synthetic::{Generator, SyntheticBenchmark};
use taskmoe_experiments::{Arm, ExperimentConfig, Profile};
use taskmoe_model::{TaskEmbedding, Variant};
use taskmoe_router::RouterKind;

use crate::scratch;

#[test]
fn both_profiles_load_and_their_arms_have_equal_active_ffn_width() {
    for profile in [Profile::Quick, Profile::Full] {
        let dir = scratch(profile.name());
        let loaded = ExperimentConfig::load(profile, None, &[], &[], &dir).unwrap();
        assert!(dir.join("base-run.toml").is_file());
        let run = &loaded.run;
        // Equal active parameters: top-1 experts as wide as the dense FFN.
        assert_eq!(run.model.moe.router.k, 1);
        assert_eq!(run.model.moe.d_ff, run.model.d_ff, "{}", profile.name());
        for v in &loaded.settings.low_resource.variants {
            Arm::parse(v).unwrap();
        }
        // Both run on generator v2, and its checks (64 dimensions, a skill of their own for
        // unrelated tasks, ...) pass; the model's vocabulary covers the unrelated words.
        let syn = &run.data.synthetic;
        assert_eq!(syn.generator, Generator::V2, "{}", profile.name());
        let bench = SyntheticBenchmark::generate(syn).unwrap();
        assert!(
            bench.vocab().len() <= run.model.vocab_size,
            "{}",
            profile.name()
        );
        assert_eq!(syn.test_split_examples(), 2500);
    }
    let quick = ExperimentConfig::load(Profile::Quick, None, &[], &[], &scratch("q")).unwrap();
    // The protocol's 64 reported seeds (about 1.2 points detectable at the spread measured
    // with 16), 3 for tuning; every run early-stopped on 10 validation evaluations.
    assert_eq!(quick.settings.seeds, 64);
    assert_eq!(quick.settings.tuning_seeds, 3);
    assert_eq!(quick.settings.evals_per_run, 10);
    // Trained to their best: up to three times the steps, ended by patience (protocol v3).
    assert_eq!(
        (quick.settings.budget_factor, quick.settings.patience),
        (3, 3)
    );
    assert_eq!(
        quick.run.runtime.threads, 1,
        "quick runs two 1-thread runs at a time"
    );
}

#[test]
fn a_user_file_overrides_only_what_it_names() {
    let dir = scratch("user");
    std::fs::write(
        dir.join("run.toml"),
        "[train]\nsteps = 700\n[data.synthetic]\nseed = 3\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("exp.toml"),
        "seeds = 2\nrun_config = \"run.toml\"\n[unseen]\nk = [4]\n",
    )
    .unwrap();
    let loaded = ExperimentConfig::load(
        Profile::Quick,
        Some(&dir.join("exp.toml")),
        &["unrelated.extra_steps=9".into()],
        &["train.seed=4".into()],
        &dir.join("out"),
    )
    .unwrap();
    let s = &loaded.settings;
    assert_eq!((s.seeds, s.unseen.k.clone()), (2, vec![4]));
    assert_eq!(s.unseen.steps, 150, "kept from the quick profile");
    assert_eq!(s.unrelated.extra_steps, 9);
    assert_eq!(
        loaded.run.train.steps, 700,
        "run_config is relative to the file"
    );
    assert!(loaded.settings_toml.contains("extra_steps = 9"));
}

#[test]
fn errors_name_the_file_and_key() {
    let dir = scratch("errors");
    std::fs::write(dir.join("exp.toml"), "[unseen]\nshots = [4]\n").unwrap();
    let err = ExperimentConfig::load(Profile::Quick, Some(&dir.join("exp.toml")), &[], &[], &dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exp.toml") && err.contains("unseen.shots"),
        "{err}"
    );
    let err = ExperimentConfig::load(Profile::Quick, None, &["seeds=0".into()], &[], &dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`seeds`"), "{err}");
    // Claim 3 needs its baseline and its task-MoE arm.
    for arms in [
        "[\"task-dense\", \"task-moe\"]",
        "[\"dense\", \"token-moe\"]",
    ] {
        let err = ExperimentConfig::load(
            Profile::Quick,
            None,
            &[format!("unrelated.variants={arms}")],
            &[],
            &dir,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`unrelated.variants`"), "{arms}: {err}");
    }
    let err = format!(
        "{:#}",
        ExperimentConfig::load(Profile::Quick, None, &[], &["train.stepz=3".into()], &dir)
            .unwrap_err()
    );
    assert!(err.contains("train.stepz"), "{err}");
}

#[test]
fn arms_parse_variants_and_router_kinds() {
    let a = Arm::parse("task-moe:task-level").unwrap();
    assert_eq!(
        (a.variant, a.router),
        (Variant::TaskMoe, Some(RouterKind::TaskLevel))
    );
    assert_eq!(Arm::parse("dense").unwrap().router, None);
    assert!(Arm::parse("dense:per-task").is_err());
    assert!(Arm::parse("task-dense:per-task").is_err());
    assert!(Arm::parse("task-moe:token").is_err());
    assert!(Arm::parse("moe").is_err());
}

#[test]
fn the_task_dense_arm_is_dense_with_an_added_task_embedding_over_a_frozen_bottom() {
    let arm = Arm::parse("task-dense").unwrap();
    assert_eq!(arm.label, "task-dense");
    assert_eq!(
        (arm.variant, arm.router, arm.task_embedding),
        (Variant::Dense, None, Some(TaskEmbedding::Added))
    );
    assert!(!arm.is_plain_dense());
    assert!(Arm::parse("dense").unwrap().is_plain_dense());
    // The shape of configs/wordnet-minilm-frozen.toml without its files: a task-MoE block on
    // top of five frozen dense blocks.
    let base = taskmoe_train::RunConfig::load(
        None,
        &[
            "model.variant=task-moe".into(),
            "model.num_layers=6".into(),
            "model.moe_every=6".into(),
            "model.frozen_layers=5".into(),
        ],
    )
    .unwrap();
    assert_eq!(base.model.task_embedding, TaskEmbedding::None);
    let cfg = arm.apply(&base);
    assert_eq!(cfg.model.variant, Variant::Dense);
    assert_eq!(cfg.model.task_embedding, TaskEmbedding::Added);
    assert_eq!(cfg.model.frozen_layers, 5);
    cfg.validate().unwrap();
    // The other arms leave the task embedding as configured.
    for other in ["dense", "task-moe", "single-task"] {
        let cfg = Arm::parse(other).unwrap().apply(&base);
        assert_eq!(cfg.model.task_embedding, TaskEmbedding::None, "{other}");
        cfg.validate().unwrap();
    }
    // An experiment file may list it.
    let dir = scratch("task-dense");
    let set = ["low_resource.variants=[\"dense\", \"task-dense\", \"task-moe\"]".to_string()];
    let loaded = ExperimentConfig::load(Profile::Quick, None, &set, &[], &dir).unwrap();
    assert!(loaded
        .settings
        .low_resource
        .variants
        .contains(&"task-dense".to_string()));
}
