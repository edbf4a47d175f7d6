//! `model.tower_layers`: feed-forward blocks on the pooled vectors. A dense tower block is
//! `x + FFN(LN(x))` of the pooled vector (checked by hand against the model without it), a MoE
//! tower routes one row per example and reports as block `num_layers + j`, gradients reach
//! every tower parameter, the accounting matches the built model, and the HF export refuses a
//! tower by name.

use tch::{nn, Device, Kind, Tensor};

use taskmoe_model::{
    hf_export, param_report, per_example_loss, HeadSpec, ModelConfig, MultiTaskModel, Variant,
};

fn heads() -> Vec<HeadSpec> {
    ["a", "b", "c"]
        .iter()
        .map(|n| HeadSpec::classification(n.to_string(), 3))
        .collect()
}

fn config(variant: Variant, tower: usize) -> ModelConfig {
    let mut cfg = ModelConfig::preset("tiny").unwrap().with_variant(variant);
    cfg.tower_layers = tower;
    cfg
}

fn build(cfg: &ModelConfig) -> (nn::VarStore, MultiTaskModel) {
    crate::seeded_model(cfg, &heads(), 3)
}

fn batch() -> crate::Batch {
    let ids = (Tensor::arange(30, (Kind::Int64, Device::Cpu)) * 5).remainder(60) + 2;
    let ids = ids.view([6, 5]);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 0, 0]).repeat([6, 1]);
    crate::Batch {
        ids: &ids * &mask,
        mask,
        tasks: Tensor::from_slice(&[0i64, 1, 2, 0, 1, 1]),
    }
}

#[test]
fn a_dense_tower_block_adds_its_ffn_of_the_normalised_pooled_vector() {
    crate::threads();
    let (vs0, plain) = build(&config(Variant::Dense, 0));
    let (vs1, towered) = build(&config(Variant::Dense, 1));
    // The same encoder and heads in both.
    let v1 = vs1.variables();
    tch::no_grad(|| {
        for (name, t) in vs0.variables() {
            t.shallow_clone().copy_(&v1[&name]);
        }
    });
    let b = batch();
    let x = tch::no_grad(|| plain.forward(&b.input(), false))
        .unwrap()
        .pooled;
    let out = tch::no_grad(|| towered.forward(&b.input(), false)).unwrap();
    let v = vs1.variables();
    let d = x.size()[1];
    let ln = x.layer_norm(
        [d],
        Some(&v["tower.0.LayerNorm.weight"]),
        Some(&v["tower.0.LayerNorm.bias"]),
        1e-12,
        false,
    );
    let h = ln
        .linear(
            &v["tower.0.intermediate.dense.weight"],
            Some(&v["tower.0.intermediate.dense.bias"]),
        )
        .gelu("none");
    let y = h.linear(
        &v["tower.0.output.dense.weight"],
        Some(&v["tower.0.output.dense.bias"]),
    );
    let want = &x + y;
    let diff = (&want - &out.pooled).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{diff}");
    assert!(out.stats.is_empty(), "a dense tower routes nothing");
}

#[test]
fn a_moe_tower_routes_one_row_per_example_and_trains_every_parameter() {
    crate::threads();
    let cfg = config(Variant::TaskMoe, 2);
    let (vs, model) = build(&cfg);
    let layers: Vec<usize> = model.moe_layers().iter().map(|(i, _)| *i).collect();
    assert_eq!(
        layers,
        vec![0, 1, 2, 3],
        "encoder blocks 0, 1, then the tower as 2, 3"
    );
    assert_eq!(cfg.moe_prefix(3), "tower.1.moe.");
    assert_eq!(cfg.moe_prefix(1), "encoder.layer.1.moe.");
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(names.iter().any(|n| n.starts_with("tower.1.moe.router")));
    let b = batch();
    let _rng = taskmoe_device::lock_global_rng();
    let out = model.forward(&b.input(), true).unwrap();
    let tower_stats: Vec<_> = out.stats.iter().filter(|(i, _)| *i >= 2).collect();
    assert_eq!(tower_stats.len(), 2);
    for (_, s) in tower_stats {
        let count: f64 = s.task_expert.sum(Kind::Double).double_value(&[]);
        assert_eq!(count, 6.0, "one row per example, top-1");
    }
    // Task loss plus the aux losses (as training weighs them) reach every tower parameter an
    // example used: its LayerNorm, every router gate of a present task, and used experts.
    let labels = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
    let zeros = Tensor::zeros([6], (Kind::Float, Device::Cpu));
    let loss = per_example_loss(&out.logits, &labels, &zeros, &zeros.to_kind(Kind::Bool))
        .mean(Kind::Float)
        + out.aux.as_ref().unwrap().load_balance.shallow_clone() * 0.01;
    loss.backward();
    for (name, t) in vs.variables() {
        if !name.starts_with("tower.") || !t.requires_grad() {
            continue;
        }
        let g = t.grad();
        assert!(g.defined(), "{name} has no gradient");
        let norm = g.abs().sum(Kind::Float).double_value(&[]);
        assert!(norm > 0.0, "{name} got a zero gradient");
    }
}

#[test]
fn the_accounting_counts_the_tower_and_the_export_refuses_it() {
    for variant in [Variant::Dense, Variant::TaskMoe] {
        let cfg = config(variant, 2);
        let (vs, model) = build(&cfg);
        let built: i64 = vs
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64;
        let report = param_report(&cfg, &heads(), 5);
        assert_eq!(report.total as i64, built, "{variant:?}\n{report}");
        let without = param_report(&config(variant, 0), &heads(), 5);
        assert!(report.flops_per_token > without.flops_per_token);
        let err = hf_export(&model, &vs, None).unwrap_err().to_string();
        assert!(err.contains("model.tower_layers"), "{err}");
    }
}
