//! LoRA experts (`expert_kind = "lora"`): the bank against a loop-over-rows reference in f64,
//! the layer at step 0 equal to its base FFN, where gradients go, the merged FFN experts, and
//! the configuration's errors.

use taskmoe_experts::{DenseFfn, ExpertKind, Experts, LoraExpertBank, MoeConfig, MoeLayer};
use taskmoe_kernels::GemmPath;
use taskmoe_router::{RouterConfig, RouterKind};
use tch::{nn, Device, Kind, Tensor};

const D: usize = 8;
const F: usize = 16;
const R: usize = 4;
const E: usize = 4;
const TASKS: usize = 3;

fn lora_config(kind: RouterKind, k: usize) -> MoeConfig {
    MoeConfig {
        router: RouterConfig {
            kind,
            num_experts: E,
            k,
            renormalize: true,
            task_embedding_dim: 4,
            ..RouterConfig::default()
        },
        d_ff: F,
        expert_kind: ExpertKind::Lora,
        lora_rank: R,
        lora_alpha: 8.0,
        ..MoeConfig::default()
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
}

/// `erf` by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    y.copysign(x)
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// `x [n] @ w [n, m]` with `w` row-major.
fn vec_mat(x: &[f64], w: &[f64], m: usize) -> Vec<f64> {
    let mut y = vec![0.0; m];
    for (i, xi) in x.iter().enumerate() {
        for (j, yj) in y.iter_mut().enumerate() {
            *yj += xi * w[i * m + j];
        }
    }
    y
}

/// Expert `e` of the bank on one row, by the formula, in f64 from the bank's weights.
fn reference_row(bank: &LoraExpertBank, e: usize, x: &[f64]) -> Vec<f64> {
    let s = bank.scale();
    let [w1, b1, w2, b2] = bank.base().map(values);
    let expert = |t: &Tensor| values(&t.get(e as i64));
    let (a1, u1, a2, u2) = (
        expert(&bank.a1),
        expert(&bank.up1),
        expert(&bank.a2),
        expert(&bank.up2),
    );
    let base1 = vec_mat(x, &w1, F);
    let low1 = vec_mat(&vec_mat(x, &a1, R), &u1, F);
    let h: Vec<f64> = (0..F)
        .map(|j| gelu(base1[j] + b1[j] + s * low1[j]))
        .collect();
    let base2 = vec_mat(&h, &w2, D);
    let low2 = vec_mat(&vec_mat(&h, &a2, R), &u2, D);
    (0..D).map(|j| base2[j] + b2[j] + s * low2[j]).collect()
}

/// A bank with every factor drawn (B non-zero, as after training).
fn trained_bank(vs: &nn::VarStore) -> LoraExpertBank {
    let bank = LoraExpertBank::new(vs.root() / "experts", E, D, F, R, 2.0, 0.0).unwrap();
    tch::no_grad(|| {
        for t in bank.factors() {
            let _ = t.shallow_clone().normal_(0.0, 0.3);
        }
    });
    bank
}

#[test]
fn lora_bank_matches_a_loop_over_rows_reference_on_both_gemm_paths() {
    crate::threads();
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let bank = trained_bank(&vs);
    // Expert 1 gets no row.
    let counts = [3usize, 0, 2, 4];
    let rows = Tensor::randn([9, D as i64], (Kind::Float, Device::Cpu));
    let x = values(&rows);
    let mut expected = Vec::new();
    let mut row = 0;
    for (e, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            expected.extend(reference_row(&bank, e, &x[row * D..(row + 1) * D]));
            row += 1;
        }
    }
    for path in [GemmPath::Grouped, GemmPath::Loop] {
        bank.set_gemm_path(path);
        let got = values(&bank.forward(&rows, &counts, false).unwrap());
        assert_eq!(got.len(), expected.len());
        for (i, (g, r)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - r).abs() <= 1e-5 + 1e-4 * r.abs(),
                "{path:?} element {i}: {g} vs reference {r}"
            );
        }
    }
}

#[test]
fn merged_ffn_experts_compute_what_the_lora_experts_compute() {
    crate::threads();
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let bank = trained_bank(&vs);
    let counts = [2usize, 3, 1, 2];
    let rows = Tensor::randn([8, D as i64], (Kind::Float, Device::Cpu));
    let lora = bank.forward(&rows, &counts, false).unwrap();
    let merged = bank.merged().unwrap();
    assert_eq!(merged.w1.size(), [E as i64, D as i64, F as i64]);
    let ffn = merged.forward(&rows, &counts, false).unwrap();
    assert!(lora.allclose(&ffn, 1e-5, 1e-5, false));
}

#[test]
fn a_lora_layer_starts_as_its_base_ffn_for_every_router_and_k() {
    crate::threads();
    let _rng = taskmoe_device::lock_global_rng();
    for (kind, k) in [
        (RouterKind::PerTask, 1),
        (RouterKind::Token, 2),
        (RouterKind::TaskLevel, 1),
        (RouterKind::TaskConcat, 2),
    ] {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = MoeLayer::new(vs.root() / "moe", &lora_config(kind, k), D, TASKS).unwrap();
        let dense = DenseFfn::new(vs.root() / "dense", D, F, 0.0).unwrap();
        layer.experts().upcycle(&dense, Default::default()).unwrap();
        let x = Tensor::randn([12, D as i64], (Kind::Float, Device::Cpu));
        let tasks = Tensor::arange(12, (Kind::Int64, Device::Cpu)).remainder(TASKS as i64);
        for train in [false, true] {
            let y = layer.forward(&x, &tasks, train).unwrap().y;
            let want = dense.forward(&x, false);
            assert!(
                y.allclose(&want, 1e-6, 1e-6, false),
                "{kind:?} k={k} train={train}: max diff {}",
                (&y - &want).abs().max().double_value(&[])
            );
        }
    }
}

#[test]
fn gradients_reach_the_factors_and_the_router_and_never_the_base() {
    crate::threads();
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = lora_config(RouterKind::PerTask, 1);
    let layer = MoeLayer::new(vs.root() / "moe", &cfg, D, TASKS).unwrap();
    let Experts::Lora(bank) = layer.experts() else {
        panic!("expert_kind = lora builds a LoRA bank");
    };
    let vars = vs.variables();
    for name in ["w1", "b1", "w2", "b2"] {
        assert!(!vars[&format!("moe.experts.base.{name}")].requires_grad());
    }
    // At step 0 the B factors are zero: B gets a gradient, A does not yet (LoRA's start).
    let x = Tensor::randn([16, D as i64], (Kind::Float, Device::Cpu));
    let tasks = Tensor::arange(16, (Kind::Int64, Device::Cpu)).remainder(TASKS as i64);
    let loss = |layer: &MoeLayer| {
        let y = layer.forward(&x, &tasks, true).unwrap().y;
        (y - 1.0).square().mean(Kind::Float)
    };
    loss(&layer).backward();
    let norm = |t: &Tensor| t.grad().norm().double_value(&[]);
    assert!(norm(&bank.up1) > 0.0 && norm(&bank.up2) > 0.0);
    assert_eq!(norm(&bank.a1), 0.0);
    assert!(norm(&vars["moe.router.weight"]) > 0.0);
    for t in bank.base() {
        assert!(!t.grad().defined(), "a frozen base weight got a gradient");
    }
    // Once B moved, A gets one too.
    for mut g in vs.trainable_variables().iter().map(Tensor::grad) {
        let _ = g.zero_();
    }
    tch::no_grad(|| {
        let _ = bank.up1.shallow_clone().normal_(0.0, 0.1);
        let _ = bank.up2.shallow_clone().normal_(0.0, 0.1);
    });
    loss(&layer).backward();
    assert!(norm(&bank.a1) > 0.0 && norm(&bank.a2) > 0.0);
    for t in bank.base() {
        assert!(!t.grad().defined());
    }
    // The trainable variables are exactly the router and the four factors.
    let mut trainable: Vec<String> = vars
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, _)| n.clone())
        .collect();
    trainable.sort();
    assert_eq!(
        trainable,
        [
            "moe.experts.lora_a1",
            "moe.experts.lora_a2",
            "moe.experts.lora_b1",
            "moe.experts.lora_b2",
            "moe.router.weight",
        ]
    );
}

#[test]
fn lora_experts_follow_their_rows_under_task_level_routing_and_export_merged() {
    crate::threads();
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = MoeLayer::new(
        vs.root() / "moe",
        &lora_config(RouterKind::TaskLevel, 2),
        D,
        TASKS,
    )
    .unwrap();
    if let Experts::Lora(bank) = layer.experts() {
        tch::no_grad(|| {
            for t in bank.factors() {
                let _ = t.shallow_clone().normal_(0.0, 0.3);
            }
        });
    }
    let x = Tensor::randn([6, D as i64], (Kind::Float, Device::Cpu));
    let tasks = Tensor::full([6], 1, (Kind::Int64, Device::Cpu));
    let y = layer.forward(&x, &tasks, false).unwrap().y;
    let sub = layer.task_subnetwork(1).unwrap();
    assert!(sub.forward(&x).unwrap().allclose(&y, 1e-5, 1e-5, false));
}

#[test]
fn lora_config_errors_name_the_key() {
    let mut cfg = lora_config(RouterKind::PerTask, 1);
    cfg.lora_rank = 0;
    let err = cfg.validate("model.moe").unwrap_err().to_string();
    assert!(err.contains("model.moe.lora_rank"), "{err}");
    let mut cfg = lora_config(RouterKind::PerTask, 1);
    cfg.lora_alpha = 0.0;
    let err = cfg.validate("model.moe").unwrap_err().to_string();
    assert!(err.contains("model.moe.lora_alpha"), "{err}");
    // The keys are ignored by FFN experts, whose default configuration is unchanged.
    let mut cfg = MoeConfig::default();
    assert_eq!(cfg.expert_kind, ExpertKind::Ffn);
    cfg.lora_rank = 0;
    cfg.validate("model.moe").unwrap();
}

#[test]
fn lora_experts_refuse_noisy_upcycling() {
    crate::threads();
    let _rng = taskmoe_device::lock_global_rng();
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = MoeLayer::new(
        vs.root() / "moe",
        &lora_config(RouterKind::PerTask, 1),
        D,
        TASKS,
    )
    .unwrap();
    let dense = DenseFfn::new(vs.root() / "dense", D, F, 0.0).unwrap();
    let noisy = taskmoe_experts::Upcycling {
        noise: 0.01,
        drop: 0.0,
    };
    assert!(layer.experts().upcycle(&dense, noisy).is_err());
}
