//! Golden tests: `MoeLayer` against a straightforward PyTorch reference
//! (`tests/golden/generate.py`), for every router kind, top-1 and top-2, with and without
//! capacity drops, and with shared experts: outputs, aux losses and every gradient.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use taskmoe_experts::{MoeConfig, MoeLayer};
use taskmoe_router::{RouterConfig, RouterKind};
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    kind: RouterKind,
    k: usize,
    capacity_factor: f64,
    renormalize: bool,
    shared_experts: usize,
    dropped_slots: usize,
    tokens: usize,
    d_model: usize,
    d_ff: usize,
    experts: usize,
    tasks: usize,
    task_embedding_dim: usize,
    coefficients: HashMap<String, f64>,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn config(case: &Case) -> MoeConfig {
    MoeConfig {
        router: RouterConfig {
            kind: case.kind,
            num_experts: case.experts,
            k: case.k,
            capacity_factor_train: case.capacity_factor,
            capacity_factor_eval: case.capacity_factor,
            renormalize: case.renormalize,
            jitter_eps: 0.0,
            noise_std: 0.0,
            task_embedding_dim: case.task_embedding_dim,
            gate_start: taskmoe_router::GateStart::Independent,
            load_balance_coef: case.coefficients["load_balance"],
            balance_over: taskmoe_router::BalanceOver::Tokens,
            bias_update_rate: 0.0,
            z_loss_coef: case.coefficients["z_loss"],
            mutual_information_coef: case.coefficients["mutual_information"],
            ..RouterConfig::default()
        },
        d_ff: case.d_ff,
        expert_dropout: 0.0,
        num_shared_experts: case.shared_experts,
        ..MoeConfig::default()
    }
}

/// Largest |a - b| / (atol + rtol |b|); at most 1 means within tolerance.
fn tolerance_ratio(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    ((&a - &b).abs() / (b.abs() * 1e-4 + 1e-5))
        .max()
        .double_value(&[])
}

#[test]
fn moe_layer_matches_pytorch_reference() {
    // Building each layer draws its (then overwritten) initial weights.
    let _rng = taskmoe_device::lock_global_rng();
    crate::threads();
    let index = std::fs::read_to_string(golden_dir().join("cases.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&index).unwrap();
    assert_eq!(
        cases.len(),
        18,
        "every router kind x k x capacity, plus shared experts"
    );
    let mut worst = 0.0f64;
    for case in &cases {
        let path = golden_dir().join(format!("{}.safetensors", case.name));
        let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
            .unwrap()
            .into_iter()
            .collect();
        let get = |name: &str| {
            tensors
                .get(name)
                .unwrap_or_else(|| panic!("{}: no tensor {name}", case.name))
                .shallow_clone()
        };

        let cfg = config(case);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = MoeLayer::new(vs.root(), &cfg, case.d_model, case.tasks).unwrap();
        let mut names: Vec<String> = vs.variables().keys().cloned().collect();
        names.sort();
        let mut expected: Vec<String> = tensors
            .keys()
            .filter_map(|n| n.strip_prefix("param.").map(String::from))
            .collect();
        expected.sort();
        assert_eq!(names, expected, "{}: parameter names", case.name);
        tch::no_grad(|| {
            for (name, mut var) in vs.variables() {
                var.copy_(&get(&format!("param.{name}")));
            }
        });

        let x = get("input.x").set_requires_grad(true);
        let task_ids = get("input.task_ids");
        let out = layer.forward(&x, &task_ids, true).unwrap();
        let loss = (&out.y * get("input.g")).sum(Kind::Float) + out.aux.weighted(&cfg.router);
        loss.backward();

        let mut check = |what: &str, got: &Tensor, want: &Tensor| {
            let r = tolerance_ratio(got, want);
            worst = worst.max(r);
            assert!(
                r <= 1.0,
                "{}: {what} differs from PyTorch (ratio {r})",
                case.name
            );
        };
        check("y", &out.y, &get("expected.y"));
        check(
            "load balance",
            &out.aux.load_balance.reshape([1]),
            &get("expected.load_balance"),
        );
        check(
            "z-loss",
            &out.aux.z_loss.reshape([1]),
            &get("expected.z_loss"),
        );
        check(
            "mutual information",
            &out.aux.mutual_information.reshape([1]),
            &get("expected.mutual_information"),
        );
        check("grad x", &x.grad(), &get("grad.x"));
        for (name, var) in vs.variables() {
            check(
                &format!("grad {name}"),
                &var.grad(),
                &get(&format!("grad.{name}")),
            );
        }
        let slots = (case.tokens * case.k) as f64;
        let dropped = (out.stats.routing.dropped_fraction * slots).round() as usize;
        assert_eq!(dropped, case.dropped_slots, "{}: dropped slots", case.name);
    }
    eprintln!("worst |diff| / (1e-5 + 1e-4 |ref|) over all cases: {worst:.3}");
}
