//! A MoE block starts as strong as the dense block it replaces: on the same unit-variance
//! input, the output RMS of a freshly initialised MoE layer (the `small` preset's experts and
//! gates) is within 1.5x of the dense FFN's, for every router kind; and router jitter never
//! changes the caller's tensor.

use tch::{nn, Device, Kind, Tensor};

use taskmoe_experts::{DenseFfn, MoeConfig, MoeLayer};
use taskmoe_router::{RouterConfig, RouterKind};

const D: usize = 128;
const D_FF: usize = 512;
const TASKS: usize = 4;
const TOKENS: i64 = 1024;

const KINDS: [RouterKind; 4] = [
    RouterKind::Token,
    RouterKind::TaskConcat,
    RouterKind::PerTask,
    RouterKind::TaskLevel,
];

/// The `small` preset's MoE settings (8 experts of the dense width, top-1 straight-through,
/// dropless) with router `kind`.
fn moe_config(kind: RouterKind, renormalize: bool) -> MoeConfig {
    MoeConfig {
        router: RouterConfig {
            kind,
            num_experts: 8,
            k: 1,
            renormalize,
            capacity_factor_train: 0.0,
            ..RouterConfig::default()
        },
        d_ff: D_FF,
        ..MoeConfig::default()
    }
}

fn rms(t: &Tensor) -> f64 {
    t.square().mean(Kind::Double).sqrt().double_value(&[])
}

fn inputs() -> (Tensor, Tensor) {
    let x = Tensor::randn([TOKENS, D as i64], (Kind::Float, Device::Cpu));
    let tasks = Tensor::arange(TOKENS, (Kind::Int64, Device::Cpu)).remainder(TASKS as i64);
    (x, tasks)
}

/// Output RMS of the MoE layer over that of the dense FFN, both drawn from `seed`.
fn ratio(cfg: &MoeConfig, seed: i64) -> f64 {
    taskmoe_device::seeded(seed, || {
        let (x, tasks) = inputs();
        let vs = nn::VarStore::new(Device::Cpu);
        let dense = DenseFfn::new(vs.root() / "dense", D, D_FF, 0.0).unwrap();
        let moe = MoeLayer::new(vs.root() / "moe", cfg, D, TASKS).unwrap();
        let y_moe = tch::no_grad(|| moe.forward(&x, &tasks, true).unwrap().y);
        let y_dense = tch::no_grad(|| dense.forward(&x, true));
        rms(&y_moe) / rms(&y_dense)
    })
}

#[test]
fn a_fresh_moe_block_is_within_1_5x_of_the_dense_block_for_every_router() {
    for kind in KINDS {
        for seed in 0..3 {
            let r = ratio(&moe_config(kind, true), seed);
            eprintln!("{kind:?} seed {seed}: straight-through MoE / dense RMS {r:.3}");
            assert!(
                (1.0 / 1.5..=1.5).contains(&r),
                "{kind:?} seed {seed}: MoE / dense output RMS = {r:.3}"
            );
        }
    }
}

#[test]
fn raw_top1_gates_start_the_block_at_about_one_over_e() {
    // Why the preset uses straight-through gates: raw Switch weights p ~ 1 / E scale the
    // block down by about E (8) at initialisation.
    for kind in KINDS {
        let r = ratio(&moe_config(kind, false), 0);
        eprintln!("{kind:?}: raw top-1 MoE / dense RMS {r:.3}");
        assert!(
            (0.08..0.2).contains(&r),
            "{kind:?}: raw top-1 MoE / dense RMS = {r:.3}"
        );
    }
}

#[test]
fn shared_experts_are_drawn_like_the_dense_ffn() {
    let mut cfg = moe_config(RouterKind::PerTask, true);
    cfg.num_shared_experts = 1;
    let r = taskmoe_device::seeded(3, || {
        let (x, _) = inputs();
        let vs = nn::VarStore::new(Device::Cpu);
        let dense = DenseFfn::new(vs.root() / "dense", D, D_FF, 0.0).unwrap();
        let moe = MoeLayer::new(vs.root() / "moe", &cfg, D, TASKS).unwrap();
        let shared = moe.shared().expect("one shared expert");
        tch::no_grad(|| rms(&shared.forward(&x, false)) / rms(&dense.forward(&x, false)))
    });
    assert!(
        (1.0 / 1.5..=1.5).contains(&r),
        "shared / dense RMS = {r:.3}"
    );
}

#[test]
fn router_jitter_leaves_the_callers_tensor_unchanged_in_fp32_and_bf16() {
    for kind in KINDS {
        let mut cfg = moe_config(kind, true);
        cfg.router.jitter_eps = 0.3;
        taskmoe_device::seeded(4, || {
            let (x, tasks) = inputs();
            let before = x.copy();
            let vs = nn::VarStore::new(Device::Cpu);
            let moe = MoeLayer::new(vs.root(), &cfg, D, TASKS).unwrap();
            let _ = moe.forward(&x, &tasks, true).unwrap();
            assert!(x.equal(&before), "{kind:?}: fp32 input changed by jitter");
            let xb = x.to_kind(Kind::BFloat16);
            let before = xb.copy();
            let _ = moe.router().forward(&xb, &tasks, true).unwrap();
            assert!(xb.equal(&before), "{kind:?}: bf16 input changed by jitter");
        });
    }
}
