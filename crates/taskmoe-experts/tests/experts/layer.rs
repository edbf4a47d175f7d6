//! Properties of the MoE layer: eval determinism, task-level sparsity, per-example task
//! routing, the dense limit, gradient locality, upcycling, task routing transfer.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use taskmoe_experts::{DenseFfn, MoeConfig, MoeLayer};
use taskmoe_router::{RouterConfig, RouterKind};
use tch::{nn, Device, Kind, Tensor};

const D: usize = 6;
const TASKS: usize = 3;
const KINDS: [RouterKind; 4] = [
    RouterKind::Token,
    RouterKind::TaskConcat,
    RouterKind::PerTask,
    RouterKind::TaskLevel,
];

fn config(kind: RouterKind, experts: usize, k: usize, capacity: f64) -> MoeConfig {
    MoeConfig {
        router: RouterConfig {
            kind,
            num_experts: experts,
            k,
            capacity_factor_train: capacity,
            capacity_factor_eval: capacity,
            renormalize: k > 1,
            task_embedding_dim: 4,
            ..RouterConfig::default()
        },
        d_ff: 10,
        ..MoeConfig::default()
    }
}

fn layer(cfg: &MoeConfig, seed: i64) -> (nn::VarStore, MoeLayer) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = MoeLayer::new(vs.root(), cfg, D, TASKS).unwrap();
    // Sharper routers than the near-uniform default, so choices are well separated.
    tch::no_grad(|| {
        let mut w = vs.variables()["router.weight"].shallow_clone();
        let _ = w.normal_(0.0, 1.0);
    });
    (vs, layer)
}

fn inputs(t: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let x = Tensor::randn([t, D as i64], (Kind::Float, Device::Cpu));
    let tasks = Tensor::randint(TASKS as i64, [t], (Kind::Int64, Device::Cpu));
    (x, tasks)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        // Failing cases are saved beside this file (`layer.proptest-regressions`) and rerun
        // first.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn eval_is_noise_free_and_training_is_not(kind_i in 0usize..4, seed in 0i64..1000) {
        let _rng = taskmoe_device::lock_global_rng();
        let mut cfg = config(KINDS[kind_i], 4, 2, 0.0);
        cfg.router.noise_std = 1.0;
        cfg.router.jitter_eps = 0.2;
        let (_vs, layer) = layer(&cfg, seed);
        let (x, tasks) = inputs(20, seed + 1);
        let a = layer.forward(&x, &tasks, false).unwrap().y;
        let b = layer.forward(&x, &tasks, false).unwrap().y;
        prop_assert!(a.equal(&b), "eval twice gives the same output");
        let noisy: Vec<bool> = (0..4)
            .map(|_| layer.forward(&x, &tasks, true).unwrap().y.equal(&a))
            .collect();
        prop_assert!(noisy.iter().any(|same| !same), "training adds noise");
    }

    #[test]
    fn mixed_task_batches_route_each_token_by_its_own_task(kind_i in 0usize..4, seed in 0i64..1000) {
        let _rng = taskmoe_device::lock_global_rng();
        // Dropless eval: a token's output must not depend on the other tokens or their tasks.
        let cfg = config(KINDS[kind_i], 4, 2, 0.0);
        let (_vs, layer) = layer(&cfg, seed);
        let (x, tasks) = inputs(24, seed + 2);
        let together = layer.forward(&x, &tasks, false).unwrap().y;
        for t in 0..24 {
            let alone = layer
                .forward(&x.narrow(0, t, 1), &tasks.narrow(0, t, 1), false)
                .unwrap()
                .y;
            // Up to fp32 reassociation: the experts' matmuls over 1 row and over the batch
            // sum in other orders (seed 736 of the token-and-task router: 2.0e-6 on an output
            // near 0, the same experts and gates). A token routed otherwise differs by ~0.1.
            prop_assert!(alone.allclose(&together.narrow(0, t, 1), 1e-5, 1e-5, false));
        }
        if KINDS[kind_i].is_task_aware() {
            // And the task matters: the same tokens under another task route differently.
            let shifted = (&tasks + 1).remainder(TASKS as i64);
            let other = layer.forward(&x, &shifted, false).unwrap().y;
            prop_assert!(!other.allclose(&together, 1e-5, 1e-6, false));
        }
    }

    #[test]
    fn dropless_top_all_equals_the_dense_mixture(kind_i in 0usize..4, seed in 0i64..1000) {
        let _rng = taskmoe_device::lock_global_rng();
        let (e, k) = (3usize, 3usize);
        let mut cfg = config(KINDS[kind_i], e, k, 0.0);
        cfg.router.renormalize = false;
        let (_vs, layer) = layer(&cfg, seed);
        let (x, tasks) = inputs(10, seed + 3);
        let y = layer.forward(&x, &tasks, false).unwrap().y;
        let probs = layer.router().forward(&x, &tasks, false).unwrap().routed.probs;
        let mut dense = x.zeros_like();
        for j in 0..e {
            let mut counts = vec![0; e];
            counts[j] = 10;
            let out = layer.experts().forward(&x, &counts, false).unwrap();
            dense += out * probs.narrow(1, j as i64, 1);
        }
        prop_assert!(y.allclose(&dense, 1e-5, 1e-6, false));
    }

    #[test]
    fn experts_get_gradients_only_from_their_tokens(kind_i in 0usize..4, seed in 0i64..1000) {
        let _rng = taskmoe_device::lock_global_rng();
        let cfg = config(KINDS[kind_i], 4, 2, 0.75);
        let (t, e) = (16i64, 4usize);
        let (vs, layer) = layer(&cfg, seed);
        let (x, tasks) = inputs(t, seed + 4);
        let w1 = vs.variables()["experts.w1"].shallow_clone();
        let decision = layer.router().forward(&x, &tasks, false).unwrap();
        let plan = taskmoe_kernels::DispatchPlan::new(
            &decision.routed.experts, e, cfg.router.capacity(false)).unwrap();
        // Eval mode: no noise, so both passes route identically.
        let grad = |mask: Option<&Tensor>| {
            let mut w = w1.shallow_clone();
            w.zero_grad();
            let y = layer.forward(&x, &tasks, false).unwrap().y;
            let g = Tensor::ones([t, D as i64], (Kind::Float, Device::Cpu));
            let g = match mask { Some(m) => g * m.unsqueeze(1), None => g };
            (y * g).sum(Kind::Float).backward();
            w1.grad().copy()
        };
        let full = grad(None);
        for expert in 0..e {
            // Tokens with a kept slot on this expert.
            let mine = (decision.routed.experts.eq(expert as i64).logical_and(&plan.kept))
                .any_dim(1, false)
                .to_kind(Kind::Float);
            let only_mine = grad(Some(&mine));
            let (a, b) = (full.get(expert as i64), only_mine.get(expert as i64));
            prop_assert!(a.allclose(&b, 1e-5, 1e-6, false));
            if plan.counts[expert] == 0 {
                prop_assert_eq!(a.abs().sum(Kind::Float).double_value(&[]), 0.0);
            }
        }
    }
}

#[test]
fn task_level_routing_computes_only_the_selected_experts() {
    let _rng = taskmoe_device::lock_global_rng();
    let cfg = config(RouterKind::TaskLevel, 8, 2, 0.0);
    let (vs, layer) = layer(&cfg, 7);
    let (x, _) = inputs(12, 8);
    let tasks = Tensor::from_slice(&[1i64; 12]);
    let selected = layer.router().task_experts(1).unwrap().unwrap();
    assert_eq!(selected.len(), 2);
    let out = layer
        .forward(&x.set_requires_grad(true), &tasks, true)
        .unwrap();
    let load: Vec<usize> = out
        .stats
        .routing
        .load
        .iter()
        .map(|&l| (l * 24.0).round() as usize)
        .collect();
    for (expert, &n) in load.iter().enumerate() {
        let expected = if selected.contains(&expert) { 12 } else { 0 };
        assert_eq!(n, expected, "expert {expert}");
    }
    out.y.sum(Kind::Float).backward();
    let w1 = vs.variables()["experts.w1"].grad();
    for expert in 0..8 {
        let norm = w1
            .get(expert as i64)
            .abs()
            .sum(Kind::Float)
            .double_value(&[]);
        assert_eq!(
            selected.contains(&expert),
            norm > 0.0,
            "expert {expert} computed"
        );
    }
    // The exported sub-network reproduces the layer for this task.
    let sub = layer.task_subnetwork(1).unwrap();
    assert_eq!(sub.experts, selected);
    let y = tch::no_grad(|| layer.forward(&x, &tasks, false).unwrap().y);
    assert!(sub.forward(&x).unwrap().allclose(&y, 1e-5, 1e-6, false));
    assert!(config_layer_error(RouterKind::Token));
}

fn config_layer_error(kind: RouterKind) -> bool {
    let (_vs, layer) = layer(&config(kind, 4, 1, 0.0), 1);
    layer.task_subnetwork(0).is_err()
}

#[test]
fn a_new_task_can_take_the_routing_of_a_seen_task() {
    let _rng = taskmoe_device::lock_global_rng();
    for kind in [
        RouterKind::TaskConcat,
        RouterKind::PerTask,
        RouterKind::TaskLevel,
    ] {
        let cfg = config(kind, 4, 2, 0.0);
        let (_vs, layer) = layer(&cfg, 11);
        let (x, _) = inputs(9, 12);
        let route = |task: i64| {
            let tasks = Tensor::full([9], task, (Kind::Int64, Device::Cpu));
            layer.router().forward(&x, &tasks, false).unwrap().logits
        };
        assert!(!route(2).allclose(&route(0), 1e-6, 1e-6, false));
        assert!(layer.router().init_task_from(2, &[(0, 1.0)]).unwrap());
        assert!(
            route(2).allclose(&route(0), 1e-6, 1e-6, false),
            "{kind:?}: copy"
        );
        // A weighted mix of two tasks' parameters.
        assert!(layer
            .router()
            .init_task_from(2, &[(0, 1.0), (1, 3.0)])
            .unwrap());
        let mixed = route(2);
        assert!(!mixed.allclose(&route(0), 1e-6, 1e-6, false));
        assert!(!mixed.allclose(&route(1), 1e-6, 1e-6, false));
        if kind == RouterKind::PerTask {
            // Logits are linear in the gate matrix: the mix of the logits.
            let expected = route(0) * 0.25 + route(1) * 0.75;
            assert!(mixed.allclose(&expected, 1e-5, 1e-6, false));
        }
    }
    let (_vs, token) = layer(&config(RouterKind::Token, 4, 1, 0.0), 1);
    assert!(!token.router().init_task_from(1, &[(0, 1.0)]).unwrap());
    assert!(token.router().init_task_from(5, &[(0, 1.0)]).is_err());
    assert!(token.router().init_task_from(1, &[]).is_err());
}

#[test]
fn experts_start_independent_and_upcycling_starts_them_at_the_dense_ffn() {
    let _rng = taskmoe_device::lock_global_rng();
    let cfg = config(RouterKind::Token, 4, 2, 0.0);
    let (vs, layer) = layer(&cfg, 3);
    let w1 = &layer.experts().ffn().unwrap().w1;
    for a in 0..4 {
        for b in a + 1..4 {
            assert!(
                !w1.get(a).allclose(&w1.get(b), 1e-3, 1e-3, false),
                "experts {a} and {b}"
            );
        }
    }
    let dense_vs = nn::VarStore::new(Device::Cpu);
    let dense = DenseFfn::new(dense_vs.root(), D, 10, 0.0).unwrap();
    let (x, tasks) = inputs(8, 4);

    // No noise: every expert is the dense FFN, so the renormalised mixture is the dense output.
    layer
        .experts()
        .ffn()
        .unwrap()
        .upcycle_from(&dense, 0.0)
        .unwrap();
    let y = layer.forward(&x, &tasks, false).unwrap().y;
    assert!(y.allclose(&dense.forward(&x, false), 1e-5, 1e-6, false));

    // With noise: each expert differs from the dense weights by about noise * std(W).
    layer
        .experts()
        .ffn()
        .unwrap()
        .upcycle_from(&dense, 0.01)
        .unwrap();
    let (w_dense, ..) = dense.weights();
    let std = w_dense.std(true).double_value(&[]);
    for e in 0..4 {
        let diff = layer.experts().ffn().unwrap().w1.get(e) - w_dense.tr();
        let rel = diff.std(true).double_value(&[]) / std;
        assert!(
            (0.005..0.02).contains(&rel),
            "expert {e}: noise {rel} of std"
        );
    }
    assert!(!layer
        .experts()
        .ffn()
        .unwrap()
        .w1
        .get(0)
        .equal(&layer.experts().ffn().unwrap().w1.get(1)));
    drop(vs);
}

#[test]
fn shared_experts_add_a_dense_path_for_every_token() {
    let _rng = taskmoe_device::lock_global_rng();
    let mut cfg = config(RouterKind::Token, 4, 1, 0.0);
    cfg.num_shared_experts = 2;
    let (_vs, layer) = layer(&cfg, 5);
    let shared = layer.shared().expect("configured");
    assert_eq!(shared.weights().0.size(), [20, D as i64], "2 x d_ff wide");
    let (x, tasks) = inputs(6, 6);
    let y = layer.forward(&x, &tasks, false).unwrap().y;
    let routed_only = {
        let decision = layer.router().forward(&x, &tasks, false).unwrap();
        let plan = taskmoe_kernels::DispatchPlan::new(
            &decision.routed.experts,
            4,
            cfg.router.capacity(false),
        )
        .unwrap();
        let rows = taskmoe_kernels::permute(&x, &plan).unwrap();
        let out = layer.experts().forward(&rows, &plan.counts, false).unwrap();
        taskmoe_kernels::combine(&out, &decision.routed.weights, &plan).unwrap()
    };
    assert!(y.allclose(
        &(routed_only + shared.forward(&x, false)),
        1e-5,
        1e-6,
        false
    ));
}

#[test]
fn config_errors_name_the_key() {
    let _rng = taskmoe_device::lock_global_rng();
    let mut cfg = config(RouterKind::Token, 4, 5, 0.0);
    let vs = nn::VarStore::new(Device::Cpu);
    let err = MoeLayer::new(vs.root(), &cfg, D, TASKS)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("moe.router.k") && err.contains("1..=4"),
        "{err}"
    );
    cfg.router.k = 1;
    cfg.router.capacity_factor_train = -1.0;
    let err = MoeLayer::new(vs.root(), &cfg, D, TASKS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("moe.router.capacity_factor_train"), "{err}");
    cfg.router.capacity_factor_train = 1.0;
    cfg.expert_dropout = 1.0;
    let err = MoeLayer::new(vs.root(), &cfg, D, TASKS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("moe.expert_dropout"), "{err}");
    let unknown: Result<MoeConfig, _> = serde_json::from_str(r#"{"router": {"experts": 4}}"#);
    assert!(unknown
        .unwrap_err()
        .to_string()
        .contains("unknown field `experts`"));
    let parsed: MoeConfig =
        serde_json::from_str(r#"{"router": {"kind": "task-level", "num_experts": 16}}"#).unwrap();
    assert_eq!(parsed.router.kind, RouterKind::TaskLevel);
    assert_eq!(parsed.router.k, 1, "defaults fill the rest");
}

#[test]
fn wrong_shapes_are_errors() {
    let _rng = taskmoe_device::lock_global_rng();
    let (_vs, layer) = layer(&config(RouterKind::PerTask, 4, 1, 0.0), 1);
    let x = Tensor::zeros([5, D as i64 + 1], (Kind::Float, Device::Cpu));
    let tasks = Tensor::zeros([5], (Kind::Int64, Device::Cpu));
    let err = layer.forward(&x, &tasks, false).unwrap_err().to_string();
    assert!(err.contains("x has shape [5, 7]"), "{err}");
    let x = Tensor::zeros([5, D as i64], (Kind::Float, Device::Cpu));
    let err = layer
        .forward(&x, &tasks.narrow(0, 0, 4), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task_ids"), "{err}");
    let bad_task = Tensor::from_slice(&[0i64, 1, 2, 3, 0]);
    assert!(layer.forward(&x, &bad_task, false).is_err(), "task 3 of 3");
}

#[test]
fn per_task_router_with_many_tasks_scores_each_token_with_its_own_gate() {
    let _rng = taskmoe_device::lock_global_rng();
    // 20 tasks (more than the old all-task matmul's limit of 16): one grouped matmul by task.
    let tasks = 20;
    let cfg = config(RouterKind::PerTask, 4, 1, 0.0);
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = MoeLayer::new(vs.root(), &cfg, D, tasks).unwrap();
    let x = Tensor::randn([30, D as i64], (Kind::Float, Device::Cpu));
    let ids = Tensor::arange(30, (Kind::Int64, Device::Cpu)).remainder(tasks as i64);
    let logits = layer.router().forward(&x, &ids, false).unwrap().logits;
    let weight = &vs.variables()["router.weight"]; // (tasks, E, d)
    for t in 0..30 {
        let task = t % tasks as i64;
        let want = weight.get(task).matmul(&x.get(t));
        assert!(
            logits.get(t).allclose(&want, 1e-5, 1e-6, false),
            "token {t}"
        );
    }
}

#[test]
fn grouped_gemm_and_per_expert_loop_give_equal_outputs_and_gradients() {
    use taskmoe_kernels::GemmPath;
    let _rng = taskmoe_device::lock_global_rng();
    // Widths of 8 and 16 floats, which the grouped GEMM takes (D = 6 falls back to the loop).
    for (kind, k, capacity) in [(RouterKind::PerTask, 1, 0.0), (RouterKind::Token, 2, 0.75)] {
        let mut cfg = config(kind, 4, k, capacity);
        cfg.d_ff = 16;
        tch::manual_seed(9);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = MoeLayer::new(vs.root(), &cfg, 8, TASKS).unwrap();
        let x = Tensor::randn([40, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let tasks = Tensor::randint(TASKS as i64, [40], (Kind::Int64, Device::Cpu));
        let probe = x.randn_like();
        let vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        let mut inputs: Vec<&Tensor> = vars.iter().map(|(_, t)| t).collect();
        inputs.push(&x);
        let run = |path: GemmPath| {
            layer.experts().set_gemm_path(path);
            let y = layer.forward(&x, &tasks, false).unwrap().y;
            let g = Tensor::run_backward(&[(&y * &probe).sum(Kind::Float)], &inputs, false, true);
            (y, g)
        };
        let (y_loop, g_loop) = run(GemmPath::Loop);
        let (y_grouped, g_grouped) = run(GemmPath::Grouped);
        assert!(y_loop.equal(&y_grouped), "{kind:?}: outputs");
        for (i, (a, b)) in g_loop.iter().zip(&g_grouped).enumerate() {
            let name = vars.get(i).map_or("x", |(n, _)| n.as_str());
            assert_eq!(a.defined(), b.defined(), "{kind:?}: {name}");
            if a.defined() {
                let diff = (a - b).abs().max().double_value(&[]);
                assert!(
                    diff < 1e-6,
                    "{kind:?}: gradient of {name} differs by {diff}"
                );
            }
        }
    }
}

#[test]
fn bias_balancing_steers_tokens_to_unused_experts_without_touching_the_weights() {
    let _rng = taskmoe_device::lock_global_rng();
    let mut cfg = config(RouterKind::Token, 4, 1, 0.0);
    cfg.router.renormalize = true;
    cfg.router.bias_update_rate = 0.05;
    let (vs, layer) = layer(&cfg, 3);
    // Every token prefers expert 0 by a margin of 0.33 in the logits.
    tch::no_grad(|| {
        let w = vs.variables()["router.weight"].shallow_clone();
        let _ = w.shallow_clone().zero_();
        let _ = w.get(0).fill_(0.11);
    });
    let x = Tensor::ones([64, D as i64], (Kind::Float, Device::Cpu)) * 0.5;
    let tasks = Tensor::zeros([64], (Kind::Int64, Device::Cpu));
    let bias = layer.router().expert_bias().unwrap().shallow_clone();
    let load = |train: bool| {
        let out = layer.forward(&x, &tasks, train).unwrap();
        Vec::<i64>::try_from(&out.stats.task_expert.get(0)).unwrap()
    };
    assert_eq!(
        load(false),
        vec![64, 0, 0, 0],
        "evaluation: no update, no bias yet"
    );
    assert_eq!(Vec::<f32>::try_from(&bias).unwrap(), vec![0.0; 4]);
    assert_eq!(
        load(true),
        vec![64, 0, 0, 0],
        "the first step chooses before updating"
    );
    // After it: expert 0 was over-used, the others under-used.
    assert_eq!(
        Vec::<f32>::try_from(&bias).unwrap(),
        vec![-0.05, 0.05, 0.05, 0.05]
    );
    // The logit margin is 0.33, so four more steps (bias gap 0.4) move the tokens away.
    for _ in 0..4 {
        let _ = load(true);
    }
    let moved = load(false);
    assert_eq!(moved[0], 0, "{moved:?}");
    // The combine weights stay the unbiased probabilities' straight-through gate (1).
    let out = layer.forward(&x, &tasks, false).unwrap();
    let counts: Vec<usize> = moved.iter().map(|&c| c as usize).collect();
    let layout = taskmoe_kernels::GroupLayout::from_counts(&counts, Device::Cpu);
    let expected = layer.experts().forward_layout(&x, &layout, false).unwrap();
    assert!(out.y.allclose(&expected, 1e-5, 1e-6, false));
    // The bias is a variable of the layer (so checkpoints keep it) that no gradient trains.
    let stored = &vs.variables()["router.expert_bias"];
    assert!(!stored.requires_grad());
}

#[test]
fn drop_upcycling_keeps_the_rest_of_each_expert_and_makes_the_experts_differ() {
    let _rng = taskmoe_device::lock_global_rng();
    let mut cfg = config(RouterKind::Token, 4, 1, 0.0);
    cfg.d_ff = 20;
    let (_vs, layer) = layer(&cfg, 3);
    let dense_vs = nn::VarStore::new(Device::Cpu);
    let dense = DenseFfn::new(dense_vs.root(), D, 20, 0.0).unwrap();
    let upcycling = taskmoe_experts::Upcycling {
        noise: 0.0,
        drop: 0.5,
    };
    layer
        .experts()
        .ffn()
        .unwrap()
        .upcycle(&dense, upcycling)
        .unwrap();
    let (w1_dense, b1_dense, w2_dense, _) = dense.weights();
    let bank = layer.experts().ffn().unwrap();
    let mut kept_sets = Vec::new();
    for e in 0..4 {
        // A hidden unit is kept when its w1 column, b1 entry and w2 row are the FFN's.
        let w1_same = bank.w1.get(e).eq_tensor(&w1_dense.tr()).all_dim(0, false);
        let b1_same = bank.b1.get(e).eq_tensor(b1_dense);
        let w2_same = bank.w2.get(e).eq_tensor(&w2_dense.tr()).all_dim(1, false);
        let kept: Vec<bool> =
            Vec::try_from(w1_same.logical_and(&b1_same).logical_and(&w2_same)).unwrap();
        let changed: Vec<bool> = Vec::try_from(
            w1_same
                .logical_not()
                .logical_and(&b1_same.logical_not())
                .logical_and(&w2_same.logical_not()),
        )
        .unwrap();
        assert_eq!(
            kept.iter().filter(|&&k| k).count(),
            10,
            "expert {e}: half kept"
        );
        assert_eq!(
            changed.iter().filter(|&&c| c).count(),
            10,
            "expert {e}: the other half fully redrawn"
        );
        kept_sets.push(kept);
    }
    assert!(
        kept_sets.windows(2).any(|w| w[0] != w[1]),
        "each expert drops its own units"
    );
    // The redrawn weights follow the FFN's statistics.
    let std = w1_dense.std(true).double_value(&[]);
    let redrawn = bank.w1.std(true).double_value(&[]);
    assert!(
        (0.7 * std..1.3 * std).contains(&redrawn),
        "{redrawn} vs {std}"
    );
    // Out-of-range shares are errors; 0 changes nothing.
    assert!(bank.drop_units(1.5).is_err());
    layer
        .experts()
        .ffn()
        .unwrap()
        .upcycle(&dense, Default::default())
        .unwrap();
    assert!(bank.w1.get(2).equal(&w1_dense.tr()));
}

#[test]
fn in_place_weight_gradients_equal_autograd_and_skip_experts_without_tokens() {
    use taskmoe_kernels::{GemmPath, WeightGrads};
    let _rng = taskmoe_device::lock_global_rng();
    // 8 experts for 10 tokens of a per-task router: some experts get no token.
    let mut cfg = config(RouterKind::PerTask, 8, 1, 0.0);
    cfg.d_ff = 16;
    cfg.expert_dropout = 0.0;
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = MoeLayer::new(vs.root(), &cfg, 8, TASKS).unwrap();
    let x = Tensor::randn([10, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let tasks = Tensor::randint(TASKS as i64, [10], (Kind::Int64, Device::Cpu));
    let probe = x.randn_like();
    let vars = vs.variables();
    let grads = |path: GemmPath, grads: WeightGrads| {
        layer.experts().set_gemm_path(path);
        layer.experts().set_weight_grads(grads);
        for v in vars.values() {
            if v.grad().defined() {
                let _ = v.grad().zero_();
            }
        }
        tch::manual_seed(5);
        let out = layer.forward(&x, &tasks, true).unwrap();
        (&out.y * &probe).sum(Kind::Float).backward();
        let load = out.stats.task_expert.sum_dim_intlist(0, false, Kind::Int64);
        let g: Vec<(String, Tensor)> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.grad().copy()))
            .collect();
        (g, Vec::<i64>::try_from(load).unwrap())
    };
    for path in [GemmPath::Grouped, GemmPath::Loop] {
        let (autograd, _) = grads(path, WeightGrads::Autograd);
        let (in_place, load) = grads(path, WeightGrads::InPlace);
        assert!(load.contains(&0), "every expert got a token: {load:?}");
        for ((name, a), (_, b)) in autograd.iter().zip(&in_place) {
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(
                diff < 1e-6,
                "{path:?}: gradient of {name} differs by {diff}"
            );
            let total = b.abs().sum(Kind::Float).double_value(&[]);
            assert!(total > 0.0, "{path:?}: {name} got no gradient");
        }
        // The experts without tokens got exactly none; those with tokens got some.
        let w1 = &in_place.iter().find(|(n, _)| n == "experts.w1").unwrap().1;
        for (e, &n) in load.iter().enumerate() {
            let g = w1.get(e as i64).abs().sum(Kind::Float).double_value(&[]);
            assert_eq!(
                g == 0.0,
                n == 0,
                "{path:?}: expert {e} with {n} slots has |grad| {g}"
            );
        }
    }
}
