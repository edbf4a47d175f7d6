//! LoRA experts in the trainer: only what trains has optimizer state, the frozen base FFNs and
//! (with `train.freeze_pretrained`) the pretrained encoder never move, checkpoints hold the
//! new parameters and a resumed run equals the uninterrupted one, and the configuration's
//! errors name their key.

use crate::no_eval;
use std::path::{Path, PathBuf};

use taskmoe_train::{RunConfig, RunData, Silent, Trainer};

const LORA: [&str; 3] = [
    "model.moe.expert_kind=\"lora\"",
    "model.moe.lora_rank=4",
    "model.moe.lora_alpha=8",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny(out: &Path, name: &str, extra: &[&str]) -> taskmoe_train::Result<RunConfig> {
    let mut sets = vec![
        format!("output.dir={}", out.display()),
        format!("output.name={name}"),
    ];
    sets.extend(LORA.iter().chain(extra).map(|s| s.to_string()));
    RunConfig::load(Some(&root().join("configs/tiny.toml")), &sets)
}

fn snapshot(trainer: &Trainer) -> Vec<(String, tch::Tensor)> {
    let mut vars: Vec<(String, tch::Tensor)> = trainer
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn moved(before: &[(String, tch::Tensor)], trainer: &Trainer) -> Vec<String> {
    let after = trainer.var_store().variables();
    before
        .iter()
        .filter(|(n, old)| after[n].ne_tensor(old).any().int64_value(&[]) != 0)
        .map(|(n, _)| n.clone())
        .collect()
}

fn losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string())
        .collect()
}

#[test]
fn lora_experts_train_only_their_factors_checkpoint_and_resume_exactly() {
    let out = std::env::temp_dir().join(format!("taskmoe-lora-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let sets = ["train.steps=6", "checkpoint.every=3"];
    let cfg = tiny(&out, "straight", &sets).unwrap();
    let data = RunData::load(&cfg).unwrap();
    let mut straight = Trainer::new(&cfg, &data, false).unwrap();
    // The optimizer holds exactly the variables that require a gradient: no base FFN.
    let mut names: Vec<String> = straight.optimizer().names().map(String::from).collect();
    names.sort();
    let mut wanted: Vec<String> = straight
        .var_store()
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, _)| n)
        .collect();
    wanted.sort();
    assert_eq!(names, wanted);
    assert!(names.iter().all(|n| !n.contains(".experts.base.")));
    assert_eq!(names.iter().filter(|n| n.contains(".lora_")).count(), 8);
    let before = snapshot(&straight);
    straight.train(&mut no_eval, &mut Silent, None).unwrap();
    let moved = moved(&before, &straight);
    assert!(
        moved.iter().all(|n| !n.contains(".experts.base.")),
        "{moved:?}"
    );
    for factor in ["lora_a1", "lora_b1", "lora_a2", "lora_b2"] {
        assert!(
            moved.iter().any(|n| n.ends_with(factor)),
            "{factor} never moved: {moved:?}"
        );
    }
    // The checkpoint holds the base and the factors; the optimizer state only the factors.
    let ckpt = out.join("straight/checkpoint-6");
    let model: Vec<String> = tch::Tensor::read_safetensors(ckpt.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(model.iter().any(|n| n.ends_with(".experts.base.w1")));
    assert!(model.iter().any(|n| n.ends_with(".experts.lora_b2")));
    let state: Vec<String> = tch::Tensor::read_safetensors(ckpt.join("optimizer.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(state.iter().any(|n| n.contains("lora_a1")), "{state:?}");
    assert!(state.iter().all(|n| !n.contains(".base.")), "{state:?}");
    let final_vars = snapshot(&straight);
    drop(straight);

    // Interrupted at step 3 and resumed: the same losses and the same weights, bit for bit.
    let cfg = tiny(&out, "resumed", &sets).unwrap();
    let resumed = crate::stopped_at_3_and_resumed(&cfg, &data);
    assert_eq!(losses(&out.join("resumed")), losses(&out.join("straight")));
    for (name, t) in &final_vars {
        assert!(
            resumed.var_store().variables()[name].equal(t),
            "{name} differs after resume"
        );
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn freeze_pretrained_keeps_the_encoder_and_trains_routers_factors_and_heads() {
    let out = std::env::temp_dir().join(format!("taskmoe-lora-freeze-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    // A "pretrained" encoder: a short run, then LoRA experts with it frozen.
    let base = tiny(&out, "base", &["train.steps=2", "checkpoint.every=2"]).unwrap();
    let data = RunData::load(&base).unwrap();
    Trainer::new(&base, &data, false)
        .unwrap()
        .train(&mut no_eval, &mut Silent, None)
        .unwrap();
    let from = format!("init.checkpoint={}", out.join("base").display());
    let cfg = tiny(
        &out,
        "frozen",
        &["train.steps=3", &from, "train.freeze_pretrained=true"],
    )
    .unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    let names: Vec<String> = trainer.optimizer().names().map(String::from).collect();
    for name in &names {
        assert!(
            name.contains(".moe.router.") || name.contains(".lora_") || name.starts_with("heads."),
            "{name} trains under freeze_pretrained"
        );
    }
    let before = snapshot(&trainer);
    trainer.train(&mut no_eval, &mut Silent, None).unwrap();
    let moved = moved(&before, &trainer);
    assert!(!moved.is_empty());
    for name in &moved {
        assert!(names.contains(name), "{name} moved but is frozen");
    }
    // The measured trainable count is what `param_report` predicts.
    let report = taskmoe_model::param_report(&cfg.model, &data.heads(), data.seq_len)
        .with_frozen_pretrained();
    let trainable: i64 = names
        .iter()
        .map(|n| trainer.var_store().variables()[n].numel() as i64)
        .sum();
    assert_eq!(report.trainable as i64, trainable);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn lora_configuration_errors_name_the_key() {
    let out = std::env::temp_dir().join(format!("taskmoe-lora-errors-{}", std::process::id()));
    let err = |extra: &[&str]| tiny(&out, "x", extra).unwrap_err().to_string();
    let e = err(&["train.freeze_pretrained=true"]);
    assert!(e.contains("train.freeze_pretrained"), "{e}");
    let e = err(&["init.upcycle_noise=0.1"]);
    assert!(e.contains("init.upcycle_noise"), "{e}");
    let e = err(&["runtime.expert_parallel=2"]);
    assert!(e.contains("runtime.expert_parallel"), "{e}");
    let e = err(&["model.moe.lora_rank=0"]);
    assert!(e.contains("model.moe.lora_rank"), "{e}");
    let e = err(&["model.moe.expert_kind=\"adapter\""]);
    assert!(e.contains("expert_kind"), "{e}");
}

#[test]
fn the_trainable_set_is_what_the_optimizer_holds() {
    // taskmoe_train::trainable applies freeze_pretrained and train_only by name.
    let out = std::env::temp_dir().join(format!("taskmoe-lora-set-{}", std::process::id()));
    let mut cfg = tiny(&out, "x", &[]).unwrap();
    let data = RunData::load(&cfg).unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _model = taskmoe_device::seeded(0, || {
        taskmoe_model::MultiTaskModel::new(&vs.root(), &cfg.model, &data.heads()).unwrap()
    });
    cfg.train.freeze_pretrained = true;
    cfg.train.train_only = vec!["lora_".into()];
    let kept = taskmoe_train::trainable(&vs, &cfg).unwrap();
    assert!(kept.iter().all(|(n, _)| n.contains(".lora_")));
    for (name, t) in vs.variables() {
        assert_eq!(t.requires_grad(), name.contains(".lora_"), "{name}");
    }
}
