//! all-MiniLM-L6-v2 imported into the dense encoder reproduces HF transformers' hidden states
//! (`tests/golden/minilm_reference.py`), and upcycling starts the experts at the pretrained FFN.
//!
//! Needs the model: `cargo xtask test` fetches it and sets `TASKMOE_MINILM_DIR`; by hand, run
//! `cargo xtask fetch-model minilm` first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use taskmoe_model::{
    bert_config, import_bert, HeadSpec, ModelConfig, ModelInput, MultiTaskModel, Upcycling, Variant,
};
use tch::{nn, Device, Kind, Tensor};

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("TASKMOE_MINILM_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/taskmoe/models/all-MiniLM-L6-v2"))
        })
        .expect("TASKMOE_MINILM_DIR or HOME");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} has no model.safetensors: run `cargo xtask fetch-model minilm` (or `cargo xtask test`)",
        dir.display()
    );
    dir
}

fn fixture() -> HashMap<String, Tensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/minilm_hidden.safetensors");
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

fn heads() -> Vec<HeadSpec> {
    vec![HeadSpec::classification("probe", 2)]
}

/// Hidden states of the fixture's inputs, and the mask of real tokens.
fn hidden(model: &MultiTaskModel, f: &HashMap<String, Tensor>) -> (Tensor, Tensor) {
    let tasks = Tensor::zeros([f["input_ids"].size()[0]], (Kind::Int64, Device::Cpu));
    let input = ModelInput {
        input_ids: &f["input_ids"],
        attention_mask: &f["attention_mask"],
        token_type_ids: Some(&f["token_type_ids"]),
        task_ids: &tasks,
    };
    let out = tch::no_grad(|| model.forward(&input, false).unwrap());
    (
        out.hidden,
        f["attention_mask"].to_kind(Kind::Bool).unsqueeze(-1),
    )
}

/// Largest absolute difference on real tokens (padding positions are not defined the same
/// way: HF runs the FFN on them, taskmoe skips them).
fn max_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    ((a - b).abs() * mask.to_kind(Kind::Float))
        .max()
        .double_value(&[])
}

#[test]
fn imported_minilm_matches_transformers() {
    // Building the model and the upcycling noise draw from the global generator.
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    let dir = model_dir();
    let f = fixture();
    let cfg = bert_config(&dir, &ModelConfig::small()).unwrap();
    assert_eq!(
        (cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff),
        (384, 6, 12, 1536)
    );
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
    let report = import_bert(&model, &vs, &dir, Upcycling::default()).unwrap();
    assert_eq!(report.loaded.len(), 5 + 6 * 16);
    assert!(report.upcycled_blocks.is_empty());
    assert!(
        report.ignored.iter().any(|n| n.starts_with("pooler.")),
        "{:?}",
        report.ignored
    );
    assert!(
        report.fresh.iter().all(|n| n.starts_with("heads.")),
        "{:?}",
        report.fresh
    );

    let (ours, mask) = hidden(&model, &f);
    let diff = max_diff(&ours, &f["last_hidden_state"], &mask);
    eprintln!("MiniLM hidden states: max |taskmoe - transformers| = {diff:.2e}");
    assert!(diff < 1e-4, "max difference {diff}");
}

#[test]
fn upcycled_minilm_starts_at_the_pretrained_model() {
    // Building the model and the upcycling noise draw from the global generator.
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    let dir = model_dir();
    let f = fixture();
    let dense = bert_config(&dir, &ModelConfig::small()).unwrap();
    // Top-1 with renormalised weights: every token gets weight 1 on one expert, so experts
    // equal to the pretrained FFN give exactly the dense model.
    let mut cfg = dense.with_variant(Variant::TokenMoe);
    cfg.moe.router.k = 1;
    cfg.moe.router.renormalize = true;
    cfg.moe.router.capacity_factor_eval = 0.0;

    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
    let report = import_bert(&model, &vs, &dir, Upcycling::default()).unwrap();
    assert_eq!(report.upcycled_blocks, vec![1, 3, 5]);
    assert!(report.fresh.iter().any(|n| n.contains(".moe.router.")));
    let (ours, mask) = hidden(&model, &f);
    let diff = max_diff(&ours, &f["last_hidden_state"], &mask);
    assert!(
        diff < 1e-4,
        "noise-free upcycling changes the model by {diff}"
    );

    // With noise, each expert is the pretrained FFN plus about 1% of its weight scale.
    import_bert(
        &model,
        &vs,
        &dir,
        Upcycling {
            noise: 0.01,
            drop: 0.0,
        },
    )
    .unwrap();
    let pretrained: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let w = &pretrained["encoder.layer.1.intermediate.dense.weight"];
    let experts = &vs.variables()["encoder.layer.1.moe.experts.w1"];
    let std = w.std(true).double_value(&[]);
    for e in 0..experts.size()[0] {
        let rel = (experts.get(e) - w.tr()).std(true).double_value(&[]) / std;
        assert!((0.008..0.012).contains(&rel), "expert {e}: noise {rel}");
    }
    let (noisy, _) = hidden(&model, &f);
    let drift = max_diff(&noisy, &f["last_hidden_state"], &mask);
    assert!(
        drift > 1e-4 && drift < 0.5,
        "1% noise moves hidden states by {drift}"
    );

    // Drop-Upcycling at 0.5: every expert keeps half of the pretrained hidden units (its own
    // half), so the experts differ from one another and the model moves further.
    import_bert(
        &model,
        &vs,
        &dir,
        Upcycling {
            noise: 0.0,
            drop: 0.5,
        },
    )
    .unwrap();
    let kept = |e: i64| -> i64 {
        experts
            .get(e)
            .eq_tensor(&w.tr())
            .all_dim(0, false)
            .sum(tch::Kind::Int64)
            .int64_value(&[])
    };
    let units = experts.size()[2];
    for e in 0..experts.size()[0] {
        assert_eq!(kept(e), units / 2, "expert {e} keeps half its units");
    }
    assert!(!experts.get(0).equal(&experts.get(1)));
    let (dropped, _) = hidden(&model, &f);
    let moved = max_diff(&dropped, &f["last_hidden_state"], &mask);
    assert!(moved > drift, "drop 0.5 moves hidden states by {moved}");
}

#[test]
fn lora_experts_on_minilm_start_at_the_pretrained_model_and_freeze_its_ffn() {
    // Building the models draws their initial weights.
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    let dir = model_dir();
    let f = fixture();
    let dense_cfg = bert_config(&dir, &ModelConfig::small()).unwrap();
    let dense_vs = nn::VarStore::new(Device::Cpu);
    let dense = MultiTaskModel::new(&dense_vs.root(), &dense_cfg, &heads()).unwrap();
    import_bert(&dense, &dense_vs, &dir, Upcycling::default()).unwrap();
    let (want, mask) = hidden(&dense, &f);

    // Task-MoE with per-task top-1 straight-through gates and LoRA experts of rank 8.
    let mut cfg = dense_cfg.with_variant(Variant::TaskMoe);
    cfg.moe.expert_kind = taskmoe_experts::ExpertKind::Lora;
    cfg.moe.lora_rank = 8;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
    let report = import_bert(&model, &vs, &dir, Upcycling::default()).unwrap();
    assert_eq!(report.upcycled_blocks, vec![1, 3, 5]);
    let (ours, _) = hidden(&model, &f);
    let diff = max_diff(&ours, &want, &mask);
    eprintln!("MiniLM with LoRA experts at step 0: max |lora - dense| = {diff:.2e}");
    assert!(
        diff < 1e-5,
        "LoRA-MoE differs from the dense import by {diff}"
    );

    // The base FFN is the pretrained one and does not train; the factors do.
    let pretrained: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let vars = vs.variables();
    let base = &vars["encoder.layer.3.moe.experts.base.w1"];
    assert!(base.equal(&pretrained["encoder.layer.3.intermediate.dense.weight"].tr()));
    assert!(!base.requires_grad());
    assert!(vars["encoder.layer.3.moe.experts.lora_a1"].requires_grad());
    // Noise would change the shared base, not make experts differ: refused.
    let noisy = Upcycling {
        noise: 0.01,
        drop: 0.0,
    };
    assert!(import_bert(&model, &vs, &dir, noisy).is_err());
}
