//! The MoE layer under the multi-task gate families: each token's output is the weighted sum
//! of its experts' FFNs computed one token at a time (an independent reference of the
//! dispatch), for the dense mixtures (`mmoe`, `cgc`), `dselect-k` and `expert-choice`, whose
//! experts take tokens instead of tokens taking experts.

use taskmoe_experts::{MoeConfig, MoeLayer};
use taskmoe_router::{RouterConfig, RouterKind};
use tch::{nn, Device, Kind, Tensor};

const D: usize = 6;
const TASKS: usize = 3;

fn layer(kind: RouterKind, experts: usize, k: usize, seed: i64) -> (nn::VarStore, MoeLayer) {
    tch::manual_seed(seed);
    let cfg = MoeConfig {
        router: RouterConfig {
            kind,
            num_experts: experts,
            k,
            ..RouterConfig::default()
        },
        d_ff: 10,
        num_shared_experts: 1,
        ..MoeConfig::default()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = MoeLayer::new(vs.root(), &cfg, D, TASKS).unwrap();
    (vs, layer)
}

/// Expert `e` of the layer on one token `x [1, d]`.
fn expert_on(layer: &MoeLayer, e: usize, x: &Tensor) -> Tensor {
    let mut counts = vec![0; layer.experts().num_experts()];
    counts[e] = 1;
    layer.experts().forward(x, &counts, false).unwrap()
}

/// `sum over (token, expert, weight) of weight * expert(x_token)` plus the shared experts.
fn reference(layer: &MoeLayer, x: &Tensor, slots: &[(usize, usize, f64)]) -> Tensor {
    let mut y = layer.shared().unwrap().forward(x, false);
    for &(i, e, w) in slots {
        let xi = x.narrow(0, i as i64, 1);
        let add = expert_on(layer, e, &xi) * w;
        y = y.index_add(0, &Tensor::from_slice(&[i as i64]), &add);
    }
    y
}

fn inputs() -> (Tensor, Tensor) {
    let x = Tensor::randn([10, D as i64], (Kind::Float, Device::Cpu));
    let ids = Tensor::from_slice(&[0i64, 1, 2, 2, 1, 0, 0, 2, 1, 0]);
    (x, ids)
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{what}: max |difference| {diff}");
}

#[test]
fn token_choice_families_combine_the_experts_their_gates_weigh() {
    let _rng = taskmoe_device::lock_global_rng();
    for (kind, experts, k) in [
        (RouterKind::Mmoe, 4, 4),
        (RouterKind::Cgc, 5, 3),
        (RouterKind::DselectK, 4, 2),
    ] {
        let (_vs, layer) = layer(kind, experts, k, 1);
        let (x, ids) = inputs();
        let out = layer.forward(&x, &ids, false).unwrap();
        let decision = layer.router().forward(&x, &ids, false).unwrap();
        let (w, e) = (&decision.routed.weights, &decision.routed.experts);
        let mut slots = Vec::new();
        for i in 0..10 {
            for j in 0..e.size()[1] {
                let (i, j) = (i as i64, j);
                slots.push((
                    i as usize,
                    e.int64_value(&[i, j]) as usize,
                    w.double_value(&[i, j]),
                ));
            }
        }
        assert_close(&out.y, &reference(&layer, &x, &slots), &format!("{kind:?}"));
    }
}

#[test]
fn expert_choice_runs_each_expert_on_the_tokens_it_took() {
    let _rng = taskmoe_device::lock_global_rng();
    for k in [1, 2] {
        let (_vs, layer) = layer(RouterKind::ExpertChoice, 4, k, 2);
        let (x, ids) = inputs();
        let out = layer.forward(&x, &ids, false).unwrap();
        let decision = layer.router().forward(&x, &ids, false).unwrap();
        let choice = decision.expert_choice.unwrap();
        let tokens: Vec<i64> = Vec::try_from(&choice.tokens).unwrap();
        let weights: Vec<f64> = Vec::try_from(&choice.weights.to_kind(Kind::Double)).unwrap();
        let slots: Vec<(usize, usize, f64)> = tokens
            .iter()
            .zip(&weights)
            .enumerate()
            .map(|(s, (&i, &w))| (i as usize, s / choice.per_expert, w))
            .collect();
        assert_close(&out.y, &reference(&layer, &x, &slots), "expert-choice");
        // Tasks of 4, 3 and 3 tokens: ceil(k n_t / 4) slots each, per expert.
        let per_task: usize = [4, 3, 3].iter().map(|n| (k * n).div_ceil(4)).sum();
        assert_eq!(choice.per_expert, per_task);
        let untouched = (0..10).filter(|i| !tokens.contains(i)).count();
        let dropped = out.stats.routing.dropped_fraction;
        assert!(
            (dropped - untouched as f64 / 10.0).abs() < 1e-12,
            "{dropped}"
        );
        // Every slot is counted for its token's task.
        let counts: i64 = out.stats.task_expert.sum(Kind::Int64).int64_value(&[]);
        assert_eq!(counts as usize, 4 * per_task);
    }
}

#[test]
fn gradients_reach_the_router_and_the_experts_under_expert_choice() {
    let _rng = taskmoe_device::lock_global_rng();
    let (vs, layer) = layer(RouterKind::ExpertChoice, 4, 2, 3);
    let (x, ids) = inputs();
    let out = layer.forward(&x, &ids, true).unwrap();
    (out.y * x.randn_like()).sum(Kind::Float).backward();
    for (name, v) in vs.variables() {
        let g = v.grad();
        assert!(
            g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "no gradient reaches {name}"
        );
    }
}

#[test]
fn a_task_representation_layer_tracks_task_states_in_training_only() {
    let _rng = taskmoe_device::lock_global_rng();
    let (_vs, layer) = layer(RouterKind::TaskRepresentation, 4, 1, 4);
    let (x, ids) = inputs();
    let state = layer.router().task_states().unwrap().shallow_clone();
    layer.forward(&x, &ids, false).unwrap();
    assert_eq!(
        state.abs().sum(Kind::Float).double_value(&[]),
        0.0,
        "evaluation observes nothing"
    );
    layer.forward(&x, &ids, true).unwrap();
    let m = layer.config().router.task_state_momentum;
    for t in 0..TASKS as i64 {
        let mine = ids.eq(t).nonzero().squeeze_dim(1);
        let mean = x
            .index_select(0, &mine)
            .mean_dim([0].as_slice(), false, Kind::Float);
        assert_close(&state.get(t), &(mean * m), &format!("task {t}'s state"));
    }
    // Calibrating, evaluation observes: the exact means.
    layer.router().begin_calibration();
    layer.forward(&x, &ids, false).unwrap();
    layer.router().end_calibration();
    let mean0 = x
        .index_select(0, &ids.eq(0).nonzero().squeeze_dim(1))
        .mean_dim([0].as_slice(), false, Kind::Float);
    assert_close(&state.get(0), &mean0, "calibrated state");
}
