//! `gate_start = "shared"`: every task starts on the same gate, and gradient makes them
//! diverge; `per-task` gates are a shared gate plus a per-task delta, both trained.

use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use taskmoe_router::{GateStart, Router, RouterConfig, RouterKind};

fn router(vs: &nn::VarStore, kind: RouterKind, start: GateStart) -> Router {
    let cfg = RouterConfig {
        kind,
        num_experts: 4,
        gate_start: start,
        ..RouterConfig::default()
    };
    Router::new(vs.root() / "router", &cfg, 8, 3).unwrap()
}

/// The router's logits for the same tokens as task 0 and as task 2.
fn logits_as_tasks(r: &Router, x: &Tensor) -> (Tensor, Tensor) {
    let n = x.size()[0];
    let as_task = |t: i64| {
        let ids = Tensor::full([n], t, (Kind::Int64, Device::Cpu));
        r.forward(x, &ids, false).unwrap().logits
    };
    (as_task(0), as_task(2))
}

#[test]
fn shared_gates_start_equal_for_every_task_and_independent_ones_do_not() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(5);
    let x = Tensor::randn([16, 8], (Kind::Float, Device::Cpu));
    for kind in [
        RouterKind::PerTask,
        RouterKind::TaskConcat,
        RouterKind::TaskLevel,
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let (a, b) = logits_as_tasks(&router(&vs, kind, GateStart::Shared), &x);
        assert!(a.equal(&b), "{kind:?}: shared gates start equal");
        let vs = nn::VarStore::new(Device::Cpu);
        let (a, b) = logits_as_tasks(&router(&vs, kind, GateStart::Independent), &x);
        assert!(!a.equal(&b), "{kind:?}: independent gates start apart");
    }
}

#[test]
fn shared_per_task_gates_train_the_shared_part_and_each_tasks_delta() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(6);
    let vs = nn::VarStore::new(Device::Cpu);
    let r = router(&vs, RouterKind::PerTask, GateStart::Shared);
    let names: Vec<String> = vs.variables().keys().cloned().collect();
    assert!(
        names.contains(&"router.shared_weight".to_string())
            && names.contains(&"router.weight".to_string()),
        "{names:?}"
    );
    // Tokens away from the origin, so that a linear gate can send them all to one expert.
    let x = Tensor::randn([24, 8], (Kind::Float, Device::Cpu)) + 2.0;
    // Tokens of task 0 learn to prefer expert 1; task 2 has no tokens in the batch.
    let ids = Tensor::zeros([24], (Kind::Int64, Device::Cpu));
    let target = Tensor::ones([24], (Kind::Int64, Device::Cpu));
    let mut opt = nn::Sgd::default().build(&vs, 0.5).unwrap();
    for _ in 0..100 {
        let logits = r.forward(&x, &ids, true).unwrap().logits;
        let loss = logits.cross_entropy_for_logits(&target);
        opt.backward_step(&loss);
    }
    let vars = vs.variables();
    let delta = &vars["router.weight"];
    let moved = |t: &Tensor| t.abs().sum(Kind::Float).double_value(&[]);
    assert!(moved(&delta.get(0)) > 0.0, "task 0's delta trained");
    assert_eq!(moved(&delta.get(2)), 0.0, "task 2's delta saw no tokens");
    // The shared part moved too, so task 2 (never seen) now also prefers expert 1.
    let (as0, as2) = logits_as_tasks(&r, &x);
    let prefers_1 = |l: &Tensor| {
        l.argmax(-1, false)
            .eq(1)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[])
    };
    assert!(prefers_1(&as0) > 0.9, "{}", prefers_1(&as0));
    assert!(
        prefers_1(&as2) > 0.5,
        "the shared gate carries it: {}",
        prefers_1(&as2)
    );
    assert!(!as0.equal(&as2), "and the tasks have diverged");
}
