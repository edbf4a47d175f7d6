//! Expert parallelism on 2 processes over loopback (Gloo): a MoE layer whose 4 experts are
//! split over the ranks (2 each, token rows exchanged by all-to-all) gives the output and the
//! gradients (router, experts, input) of the single-process layer on the same tokens, to 1e-5,
//! and the aux losses of all tokens (load balance and mutual information over the group);
//! with the experts sharded (each rank storing its 2), the same in training and evaluation,
//! and gathering them back gives the single-process weights.

use std::sync::Arc;
use std::time::Duration;

use tch::{nn, Device, Kind, Tensor};

use taskmoe_dist::{expect_all_ok, run_local, worker_test, DistEnv, ProcessGroup};
use taskmoe_experts::{MoeConfig, MoeLayer, MoeOutput};
use taskmoe_router::{RouterConfig, RouterKind};
use taskmoe_train::ExpertGroup;

const CASE: &str = "TMT_EP_CASE";
const TOKENS: i64 = 12;
const D: i64 = 8;

fn layer(vs: &nn::VarStore) -> MoeLayer {
    let cfg = MoeConfig {
        router: RouterConfig {
            kind: RouterKind::Token,
            num_experts: 4,
            k: 2,
            capacity_factor_train: 8.0, // nothing dropped, on one rank or two
            noise_std: 0.0,
            ..RouterConfig::default()
        },
        d_ff: 16,
        expert_dropout: 0.0,
        num_shared_experts: 0,
        ..MoeConfig::default()
    };
    // Same seed, same weights, in every rank's process and beside the binary's other tests.
    taskmoe_device::seeded(7, || {
        MoeLayer::new(vs.root() / "moe", &cfg, D as usize, 2).unwrap()
    })
}

fn inputs() -> (Tensor, Tensor) {
    let opts = (Kind::Float, Device::Cpu);
    let x = (Tensor::arange(TOKENS * D, opts) * 0.37)
        .sin()
        .reshape([TOKENS, D]);
    let c = (Tensor::arange(TOKENS * D, opts) * 0.11)
        .cos()
        .reshape([TOKENS, D]);
    (x, c)
}

fn close(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.size(), b.size(), "{what}");
    let d = (a - b).abs().max().double_value(&[]);
    assert!(d <= 1e-5, "{what}: max difference {d}");
}

/// What one rank's half of the tokens gave: the layer output, the input (with its gradient)
/// and every rank's output stacked in token order.
struct RankPass {
    out: MoeOutput,
    x: Tensor,
    y_all: Tensor,
}

/// Rank `r`'s half of the tokens through `layer` in training, backward through the output
/// against `c` plus this rank's share of the group-wide aux losses, outputs all-gathered.
fn rank_pass(
    layer: &MoeLayer,
    world: &ProcessGroup,
    (x, c, tasks): (&Tensor, &Tensor, &Tensor),
) -> RankPass {
    let (r, half) = (world.rank() as i64, TOKENS / 2);
    let x = x.narrow(0, r * half, half).copy().set_requires_grad(true);
    let out = layer
        .forward(&x, &tasks.narrow(0, r * half, half), true)
        .unwrap();
    // Every rank holds the same group-wide aux losses: each adds its share of them.
    let aux = (&out.aux.load_balance + &out.aux.mutual_information) / 2.0;
    ((&out.y * c.narrow(0, r * half, half)).sum(Kind::Float) + aux).backward();
    let y_all = world
        .all_gather(&out.y.detach())
        .unwrap()
        .reshape([TOKENS, D]);
    RankPass { out, x, y_all }
}

#[test]
fn worker() {
    if std::env::var(CASE).is_err() {
        return; // run as a plain test: nothing to do
    }
    let env = DistEnv::from_env().unwrap().expect("torchrun variables");
    let world = ProcessGroup::connect(&env).unwrap();
    let r = world.rank() as i64;
    let half = TOKENS / 2;
    let (x, c) = inputs();
    // Two tasks, unevenly spread over the ranks' halves.
    let tasks = Tensor::from_slice(&[0i64, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 1]);

    // The single-process layer on all tokens.
    let vs_one = nn::VarStore::new(Device::Cpu);
    let one = layer(&vs_one);
    let x_one = x.copy().set_requires_grad(true);
    let out_one = one.forward(&x_one, &tasks, true).unwrap();
    let y_one = out_one.y.shallow_clone();
    let aux_one = &out_one.aux;
    ((&y_one * &c).sum(Kind::Float) + &aux_one.load_balance + &aux_one.mutual_information)
        .backward();

    // The same weights, experts split over the two ranks, each rank with its half of the tokens.
    let vs_ep = nn::VarStore::new(Device::Cpu);
    let ep = layer(&vs_ep);
    let group = Arc::new(ExpertGroup(world.subgroup("ep", &[0, 1]).unwrap().unwrap()));
    ep.set_expert_parallel(group.clone()).unwrap();
    let pass = rank_pass(&ep, &world, (&x, &c, &tasks));
    let out = &pass.out;
    close("load balance", &out.aux.load_balance, &aux_one.load_balance);
    close(
        "mutual information",
        &out.aux.mutual_information,
        &aux_one.mutual_information,
    );
    close("output", &pass.y_all, &y_one.detach());
    close(
        "input gradient",
        &pass.x.grad(),
        &x_one.grad().narrow(0, r * half, half),
    );
    let one_vars = vs_one.variables();
    let mut names: Vec<_> = vs_ep.variables().into_iter().collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in names {
        let mut g = var.grad().copy();
        world.all_reduce_sum(&mut g).unwrap();
        close(&format!("gradient of {name}"), &g, &one_vars[&name].grad());
    }
    // Rows out and back in the forward pass, the mirrored pair in the backward pass; the
    // routing statistics' all-reduce forward and backward.
    let [reduce, a2a, _] = group.0.stats();
    assert_eq!(a2a.calls, 4);
    assert_eq!(reduce.calls, 2);

    // Sharded: the rank keeps its 2 experts in memory; training and evaluation go through
    // the group and give the single process's output, and the shard's gradients are the
    // single process's gradients of those experts.
    // (A fresh layer: sharding happens before any backward pass, as in the trainer.)
    let vs_ep = nn::VarStore::new(Device::Cpu);
    let ep = layer(&vs_ep);
    ep.set_expert_parallel(group.clone()).unwrap();
    ep.shard_experts().unwrap();
    assert!(ep.experts_sharded());
    assert_eq!(ep.experts().num_experts(), 2);
    assert_eq!(vs_ep.variables()["moe.experts.w1"].size(), [2, D, 16]);
    let sharded = rank_pass(&ep, &world, (&x, &c, &tasks));
    close("sharded output", &sharded.y_all, &y_one.detach());
    for name in ["w1", "b1", "w2", "b2"] {
        let key = format!("moe.experts.{name}");
        let mine = vs_ep.variables()[&key].grad();
        let full = one_vars[&key].grad().narrow(0, 2 * r, 2);
        close(&format!("sharded gradient of {name}"), &mine, &full);
    }
    let eval = tch::no_grad(|| {
        ep.forward(
            &x.narrow(0, r * half, half),
            &tasks.narrow(0, r * half, half),
            false,
        )
        .unwrap()
    });
    let eval_one = tch::no_grad(|| one.forward(&x, &tasks, false).unwrap());
    let eval_all = world.all_gather(&eval.y).unwrap().reshape([TOKENS, D]);
    close("sharded evaluation output", &eval_all, &eval_one.y);

    // Gathered again: all 4 experts, equal to the single process's weights; then back to
    // the same shard storage.
    let shard_ptr = vs_ep.variables()["moe.experts.w1"].data_ptr();
    ep.gather_experts().unwrap();
    assert!(!ep.experts_sharded());
    for name in ["w1", "b1", "w2", "b2"] {
        let key = format!("moe.experts.{name}");
        close(
            &format!("gathered {name}"),
            &vs_ep.variables()[&key],
            &one_vars[&key],
        );
    }
    ep.shard_experts().unwrap();
    assert_eq!(vs_ep.variables()["moe.experts.w1"].data_ptr(), shard_ptr);
    println!("WORKER OK");
}

#[test]
fn an_expert_parallel_layer_equals_the_single_process_layer() {
    let outs = run_local(2, Duration::from_secs(20), Duration::from_secs(60), |_| {
        let mut c = worker_test(module_path!(), "worker");
        c.env(CASE, "layer");
        c
    })
    .unwrap();
    expect_all_ok(&outs, "WORKER OK");
}
