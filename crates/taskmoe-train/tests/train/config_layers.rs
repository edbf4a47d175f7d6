//! The layering rule of run configurations: preset, then file, then `--set`, merged key by
//! key. A partial table keeps the preset's other keys; a `--set` changes only its key; every
//! shipped configuration resolves.

use std::path::{Path, PathBuf};

use taskmoe_model::ModelConfig;
use taskmoe_router::RouterKind;
use taskmoe_train::RunConfig;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskmoe-layers-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load_text(name: &str, text: &str, sets: &[&str]) -> RunConfig {
    let path = scratch(name).join("run.toml");
    std::fs::write(&path, text).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    RunConfig::load(Some(&path), &sets).unwrap()
}

/// The lines of `a`'s TOML that differ from `b`'s.
fn changed_lines(a: &RunConfig, b: &RunConfig) -> Vec<String> {
    let (a, b) = (a.to_toml(), b.to_toml());
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    assert_eq!(la.len(), lb.len(), "same keys:\n{a}\n---\n{b}");
    la.iter()
        .zip(&lb)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.to_string())
        .collect()
}

#[test]
fn a_set_on_a_nested_key_changes_only_that_key() {
    let base = RunConfig::load(None, &[]).unwrap();
    for (set, line) in [
        ("model.moe.router.kind=task-level", "kind = \"task-level\""),
        ("model.moe.router.kind=per-task", ""),
        ("model.moe.router.num_experts=16", "num_experts = 16"),
        ("schedule.peak_lr=5e-4", "peak_lr = 0.0005"),
        ("data.synthetic.vocab_size=48", "vocab_size = 48"),
    ] {
        let cfg = RunConfig::load(None, &[set.to_string()]).unwrap();
        let changed = changed_lines(&cfg, &base);
        let expected: Vec<String> = if line.is_empty() {
            vec![]
        } else {
            vec![line.to_string()]
        };
        assert_eq!(changed, expected, "--set {set}");
    }
}

#[test]
fn partial_tables_keep_the_presets_other_keys() {
    let base = RunConfig::load(None, &[]).unwrap();
    let cfg = load_text(
        "partial",
        "[model.moe.router]\nkind = \"task-concat\"\n\n[model.moe]\nexpert_dropout = 0.1\n\n\
         [schedule]\npeak_lr = 5e-4\n",
        &[],
    );
    let mut expected = base.clone();
    expected.model.moe.router.kind = RouterKind::TaskConcat;
    expected.model.moe.expert_dropout = 0.1;
    expected.schedule.peak_lr = 5e-4;
    assert_eq!(cfg, expected);
    // In particular the router keeps top-1 straight-through, dropless, 8 experts; the experts
    // keep the preset's width; the schedule decays over the run's own steps.
    let r = &cfg.model.moe.router;
    assert_eq!((r.k, r.renormalize, r.num_experts), (1, true, 8));
    assert_eq!(r.capacity_factor_train, 0.0);
    assert_eq!(cfg.model.moe.d_ff, ModelConfig::small().moe.d_ff);
    assert_eq!(cfg.schedule.total_steps, 0);
    assert_eq!(cfg.optimizer_schedule().total_steps, cfg.train.steps);
}

#[test]
fn a_variant_without_a_router_kind_routes_as_that_variant() {
    let cfg = RunConfig::load(None, &["model.variant=token-moe".into()]).unwrap();
    assert_eq!(cfg.model.moe.router.kind, RouterKind::Token);
    let cfg = load_text("variant", "[model]\nvariant = \"token-moe\"\n", &[]);
    assert_eq!(cfg.model.moe.router.kind, RouterKind::Token);
    // A kind that is given stays given (and a wrong one is an error naming the key).
    let err = RunConfig::load(
        None,
        &[
            "model.variant=token-moe".into(),
            "model.moe.router.kind=per-task".into(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("model.moe.router.kind"), "{err}");
    let cfg = RunConfig::load(None, &["model.moe.router.kind=task-level".into()]).unwrap();
    assert_eq!(cfg.model.moe.router.kind, RouterKind::TaskLevel);
}

#[test]
fn the_model_preset_is_the_layer_beneath_the_file() {
    let cfg = RunConfig::load(None, &["model.preset=tiny".into()]).unwrap();
    assert_eq!(cfg.model, ModelConfig::tiny());
    let cfg = load_text(
        "preset",
        "[model]\npreset = \"medium\"\nnum_layers = 2\n",
        &["model.moe.router.k=2"],
    );
    let mut expected = ModelConfig::medium();
    expected.num_layers = 2;
    expected.moe.router.k = 2;
    assert_eq!(cfg.model, expected);
    let err = RunConfig::load(None, &["model.preset=huge".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.preset") && err.contains("small, medium, tiny"),
        "{err}"
    );
}

#[test]
fn a_tagged_table_whose_kind_changes_is_replaced() {
    let cfg = load_text("mixture", "[data.mixture]\nkind = \"uniform\"\n", &[]);
    assert_eq!(cfg.data.mixture, taskmoe_data::MixtureSpec::Uniform {});
    let cfg = RunConfig::load(None, &["data.mixture.kind=uniform".into()]).unwrap();
    assert_eq!(cfg.data.mixture, taskmoe_data::MixtureSpec::Uniform {});
    // Same kind: the table merges, the default temperature (2) stays.
    let cfg = load_text("mixture-cap", "[data.mixture]\ncap = 500.0\n", &[]);
    assert_eq!(
        cfg.data.mixture,
        taskmoe_data::MixtureSpec::ExamplesProportional {
            cap: Some(500.0),
            temperature: 2.0,
            scale: 1.0
        }
    );
}

#[test]
fn unknown_keys_in_partial_tables_are_still_errors() {
    let path = scratch("unknown").join("run.toml");
    std::fs::write(&path, "[model.moe.router]\nkindd = \"token\"\n").unwrap();
    let err = RunConfig::load(Some(&path), &[]).unwrap_err().to_string();
    assert!(
        err.contains("unknown key `model.moe.router.kindd`"),
        "{err}"
    );
    let err = RunConfig::load(None, &["schedule.peak=1".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("schedule.peak"), "{err}");
    // A decay that would end before its warmup names both keys.
    let err = RunConfig::load(None, &["train.steps=50".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schedule.warmup_steps") && err.contains("`train.steps` = 50"),
        "{err}"
    );
}

/// Every configuration this repository ships, relative to the workspace root.
fn shipped_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in [
        "configs",
        "configs/experiments",
        "crates/taskmoe-experiments/profiles",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // Experiment settings (not run configurations) are read by taskmoe-experiments.
            let settings = matches!(name.as_str(), "quick.toml" | "full.toml")
                || (dir == "configs/experiments" && !name.ends_with("-run.toml"));
            if name.ends_with(".toml") && !settings {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_shipped_run_configuration_resolves_and_reads_back_the_same() {
    let files = shipped_configs();
    assert!(files.len() >= 5, "{files:?}");
    let out = scratch("shipped");
    for file in files {
        // Registry runs need a tokenizer; any path does for resolving.
        let sets = ["data.tokenizer=tokenizer.json".to_string()];
        let cfg = RunConfig::load(Some(&file), &sets)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let saved = out.join("saved.toml");
        std::fs::write(&saved, cfg.to_toml()).unwrap();
        assert_eq!(
            RunConfig::load(Some(&saved), &[]).unwrap(),
            cfg,
            "{}",
            file.display()
        );
        let sched = cfg.optimizer_schedule();
        assert!(
            sched.total_steps <= cfg.train.steps,
            "{}: the schedule decays over {} steps, the run has {}",
            file.display(),
            sched.total_steps,
            cfg.train.steps
        );
    }
}
