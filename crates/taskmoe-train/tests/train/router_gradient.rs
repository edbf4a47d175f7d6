//! The task loss reaches every router: for every shipped configuration and every model
//! preset, one batch's task loss (no aux losses) gives every MoE block's router parameters a
//! non-zero gradient. And the MiniLM upcycling of `configs/glue-minilm.toml` computes the
//! pretrained encoder exactly at step 0 while its routers get that gradient.

use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind};

use taskmoe_model::{per_example_loss, MultiTaskModel, Variant};
use taskmoe_train::{RunConfig, RunData, Trainer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("TASKMOE_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/taskmoe/models/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").exists(),
        "{} has no MiniLM: run `cargo xtask fetch-model minilm` (cargo xtask test does)",
        dir.display()
    );
    dir
}

/// Every run configuration the repository ships (experiment settings excluded).
fn shipped_run_configs() -> Vec<PathBuf> {
    let mut files = vec![
        root().join("configs/tiny.toml"),
        root().join("configs/glue-minilm.toml"),
        root().join("configs/toy-families.toml"),
        root().join("configs/experiments/tiny-run.toml"),
        root().join("crates/taskmoe-experiments/profiles/quick-run.toml"),
        root().join("crates/taskmoe-experiments/profiles/full-run.toml"),
    ];
    files.retain(|f| f.exists());
    assert_eq!(files.len(), 6, "a shipped config moved: {files:?}");
    files
}

/// Small batches and short runs: only the first batch is used.
fn resolve(file: Option<&Path>, extra: &[String]) -> RunConfig {
    let mut sets = vec![
        "data.batch_size=8".to_string(),
        "runtime.device=cpu".to_string(),
        "runtime.threads=1".to_string(),
    ];
    if file.is_some_and(|f| f.ends_with("glue-minilm.toml")) {
        sets.push(format!("init.from={}", minilm_dir().display()));
    }
    sets.extend(extra.iter().cloned());
    RunConfig::load(file, &sets).unwrap()
}

/// One training-mode forward pass of the first batch through `model` (parameters in `vs`),
/// the task loss alone backward; returns the summed |gradient| of each router parameter.
fn router_gradients(
    model: &MultiTaskModel,
    vs: &nn::VarStore,
    cfg: &RunConfig,
    data: &RunData,
) -> Vec<(String, f64)> {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(0);
    let batch = data.sampler(cfg).unwrap().batch(0);
    let t = batch.to_tensors(Device::Cpu).unwrap();
    let out = model
        .forward(&taskmoe_train::model_input(&t), true)
        .unwrap();
    per_example_loss(
        &out.logits,
        &t.class_labels,
        &t.regression_targets,
        &t.regression_mask,
    )
    .mean(Kind::Float)
    .backward();
    let mut grads: Vec<(String, f64)> = vs
        .variables()
        .into_iter()
        .filter(|(name, _)| name.contains(".router."))
        .map(|(name, v)| (name, v.grad().abs().sum(Kind::Double).double_value(&[])))
        .collect();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    grads
}

/// Builds `cfg`'s model from seed 0 and checks its routers.
fn assert_every_router_learns(label: &str, cfg: &RunConfig, data: &RunData) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = taskmoe_device::seeded(0, || {
        MultiTaskModel::new(&vs.root(), &cfg.model, &data.heads()).unwrap()
    });
    assert_routers_learn(label, &model, &vs, cfg, data);
}

fn assert_routers_learn(
    label: &str,
    model: &MultiTaskModel,
    vs: &nn::VarStore,
    cfg: &RunConfig,
    data: &RunData,
) {
    let grads = router_gradients(model, vs, cfg, data);
    let moe_blocks = (0..cfg.model.num_layers)
        .filter(|&i| cfg.model.is_moe_block(i))
        .count();
    assert!(moe_blocks > 0, "{label}: no MoE block");
    assert!(
        grads.len() >= moe_blocks,
        "{label}: {} router parameters for {moe_blocks} MoE blocks",
        grads.len()
    );
    for (name, g) in &grads {
        assert!(
            g.is_finite() && *g > 0.0,
            "{label}: `{name}` gets no gradient from the task loss ({g})"
        );
    }
}

#[test]
fn every_shipped_configuration_trains_its_routers_with_the_task_loss() {
    for file in shipped_run_configs() {
        let mut cfg = resolve(Some(&file), &[]);
        if !cfg.model.variant.is_moe() {
            cfg.model = cfg.model.with_variant(Variant::TaskMoe);
        }
        let data = RunData::load(&cfg).unwrap();
        assert_every_router_learns(&file.display().to_string(), &cfg, &data);
    }
}

#[test]
fn every_preset_and_router_kind_trains_its_routers_with_the_task_loss() {
    // The presets on the tiny benchmark's data (their width does not depend on it).
    let tiny = root().join("configs/tiny.toml");
    for preset in taskmoe_model::ModelConfig::PRESETS {
        // `gate_start = "shared"` zero-initialises the task part (per-task deltas, task
        // embeddings): its gradient must still reach every router parameter. (`task-level`
        // with a zero embedding has no token term to carry it at step 0, so it is left out.)
        for (variant, kind, start) in [
            ("token-moe", "token", "independent"),
            ("task-moe", "task-concat", "independent"),
            ("task-moe", "per-task", "independent"),
            ("task-moe", "task-level", "independent"),
            ("task-moe", "task-concat", "shared"),
            ("task-moe", "per-task", "shared"),
        ] {
            let mut sets = vec![
                format!("model.preset={preset}"),
                format!("model.variant={variant}"),
                format!("model.moe.router.kind={kind}"),
                format!("model.moe.router.gate_start={start}"),
            ];
            if preset == "medium" || preset == "gpu" {
                sets.push("model.num_layers=2".into());
            }
            // The tiny file's own model keys would sit on top of the preset: start from the
            // preset alone, with the tiny benchmark.
            let mut cfg = resolve(None, &sets);
            cfg.data = resolve(Some(&tiny), &[]).data;
            cfg.model.vocab_size = cfg.model.vocab_size.max(64);
            let data = RunData::load(&cfg).unwrap();
            assert_every_router_learns(&format!("{preset} {variant} {kind} {start}"), &cfg, &data);
        }
    }
}

#[test]
fn glue_minilm_upcycling_is_exact_at_step_zero_and_its_routers_learn() {
    let file = root().join("configs/glue-minilm.toml");
    let out = std::env::temp_dir().join(format!("taskmoe-upcycle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let pooled_of = |variant: &str| {
        let cfg = resolve(
            Some(&file),
            &[
                format!("model.variant={variant}"),
                format!("output.dir={}", out.display()),
                format!("output.name={variant}"),
            ],
        );
        let data = RunData::load(&cfg).unwrap();
        let trainer = Trainer::new(&cfg, &data, false).unwrap();
        let batch = data.sampler(&cfg).unwrap().batch(0);
        let t = batch.to_tensors(Device::Cpu).unwrap();
        let pooled = trainer
            .model()
            .forward(&taskmoe_train::model_input(&t), false)
            .unwrap()
            .pooled;
        (cfg, data, trainer, pooled)
    };
    let (_, _, _, dense) = pooled_of("dense");
    let (cfg, data, trainer, moe) = pooled_of("task-moe");
    // The encoder's output (what every head reads): heads are drawn fresh, everything else is
    // MiniLM's, and the upcycled MoE blocks must compute its FFNs exactly.
    let diff = (&moe - &dense).abs().max().double_value(&[]);
    let scale = dense.abs().max().double_value(&[]);
    assert!(
        diff.is_finite() && diff <= 1e-5 * scale.max(1.0),
        "upcycled task-MoE differs from the dense import by {diff} (values up to {scale})"
    );
    assert_routers_learn(
        "glue-minilm (upcycled)",
        trainer.model(),
        trainer.var_store(),
        &cfg,
        &data,
    );
    std::fs::remove_dir_all(out).unwrap();
}
