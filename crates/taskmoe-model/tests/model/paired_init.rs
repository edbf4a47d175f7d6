//! Paired initialisation (`taskmoe_device::keyed_initialisation`): models of one seed that
//! name a module alike start with it equal bit for bit, whatever else they hold.

use std::collections::HashMap;

use taskmoe_model::{HeadSpec, HeadStart, HeadStyle, ModelConfig, MultiTaskModel, Variant};
use taskmoe_router::RouterKind;
use tch::{nn, Device, Tensor};

fn heads() -> Vec<HeadSpec> {
    ["a", "b", "c"]
        .iter()
        .map(|n| HeadSpec::classification(*n, 3))
        .collect()
}

/// Every parameter of `cfg`'s model built under keyed initialisation with `seed`.
fn build(cfg: &ModelConfig, seed: u64) -> HashMap<String, Tensor> {
    let vs = nn::VarStore::new(Device::Cpu);
    taskmoe_device::keyed_initialisation(seed, || {
        // A draw before the model must not move anything keyed.
        let _ = Tensor::randn([7], (tch::Kind::Float, Device::Cpu));
        MultiTaskModel::new(&vs.root(), cfg, &heads()).unwrap()
    });
    vs.variables()
}

#[test]
fn dense_and_moe_arms_of_one_seed_share_every_common_parameter() {
    let mut base = ModelConfig::tiny();
    base.moe_every = 2; // block 0 dense in every arm, block 1 MoE in the MoE arms
    let arms = [
        base.with_variant(Variant::Dense),
        base.with_variant(Variant::TokenMoe),
        base.with_variant(Variant::TaskMoe),
        {
            let mut c = base.with_variant(Variant::TaskMoe);
            c.moe.router.kind = RouterKind::TaskLevel;
            c.moe.router.num_experts = 8;
            c
        },
    ];
    let dense = build(&arms[0], 11);
    for arm in &arms[1..] {
        let moe = build(arm, 11);
        let common: Vec<&String> = dense.keys().filter(|k| moe.contains_key(*k)).collect();
        // Everything but block 1's FFN is common: embeddings, attention and norms of both
        // blocks, block 0's FFN, the final norm and the heads.
        assert!(
            common.len() + 4 == dense.len(),
            "{:?}: only {} of {} dense parameters are common",
            arm.variant,
            common.len(),
            dense.len()
        );
        for name in common {
            assert!(
                dense[name].equal(&moe[name]),
                "{:?}: `{name}` differs from the dense arm's",
                arm.variant
            );
        }
    }
    // Token-MoE and task-MoE of one seed also share their experts.
    let (token, task) = (build(&arms[1], 11), build(&arms[2], 11));
    let experts = "encoder.layer.1.moe.experts.w1";
    assert!(token[experts].equal(&task[experts]));
}

#[test]
fn keyed_draws_differ_between_seeds_and_between_modules() {
    let cfg = ModelConfig::tiny();
    let (a, b) = (build(&cfg, 1), build(&cfg, 2));
    let q = "encoder.layer.0.attention.self.query.weight";
    assert!(!a[q].equal(&b[q]), "another seed draws other values");
    let k = "encoder.layer.0.attention.self.key.weight";
    assert!(
        !a[q].equal(&a[k]),
        "two modules of one shape draw differently"
    );
    // And one seed draws the same model again.
    let again = build(&cfg, 1);
    for (name, t) in &a {
        assert!(t.equal(&again[name]), "`{name}` changed between two builds");
    }
}

#[test]
fn a_linear_head_starts_as_the_output_layer_of_the_mlp_head() {
    let mut mlp = ModelConfig::tiny();
    mlp.head = HeadStyle::Mlp;
    let linear = ModelConfig {
        head: HeadStyle::Linear,
        ..mlp.clone()
    };
    let (a, b) = (build(&mlp, 5), build(&linear, 5));
    let out = "heads.0.out.weight";
    assert!(a[out].equal(&b[out]));
}

#[test]
fn shared_heads_start_as_the_first_head_of_their_shape_and_nothing_else_moves() {
    let specs = |labels: &[usize]| -> Vec<HeadSpec> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &n)| HeadSpec::classification(format!("t{i}"), n))
            .collect()
    };
    let build_with = |cfg: &ModelConfig| {
        let vs = nn::VarStore::new(Device::Cpu);
        taskmoe_device::keyed_initialisation(3, || {
            MultiTaskModel::new(&vs.root(), cfg, &specs(&[2, 3, 2, 3, 2])).unwrap()
        });
        vs.variables()
    };
    let independent = ModelConfig::tiny();
    let shared = ModelConfig {
        head_start: HeadStart::Shared,
        ..independent.clone()
    };
    let (a, b) = (build_with(&independent), build_with(&shared));
    for part in ["dense.weight", "dense.bias", "out.weight", "out.bias"] {
        let head = |m: &HashMap<String, Tensor>, i: usize| m[&format!("heads.{i}.{part}")].copy();
        assert!(!head(&a, 0).equal(&head(&a, 2)), "independent heads differ");
        // Two-label heads 0, 2, 4 start as head 0; three-label heads 1, 3 as head 1.
        for (i, first) in [(2, 0), (4, 0), (3, 1)] {
            assert!(head(&b, i).equal(&head(&b, first)), "heads.{i}.{part}");
        }
        assert!(head(&b, 0).equal(&head(&a, 0)));
        assert!(head(&b, 1).equal(&head(&a, 1)));
    }
    for (name, t) in &a {
        if !name.starts_with("heads.") {
            assert!(t.equal(&b[name]), "`{name}` moved with the head start");
        }
    }
}
