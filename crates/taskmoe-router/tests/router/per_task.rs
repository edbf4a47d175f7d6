//! The `per-task` router's grouped dispatch by task id equals the two formulations it replaced
//! (all tasks scored in one matmul, and a gathered `[T, E, d]` gate tensor), in logits and in
//! the gradients of the tokens and of every task's gate, and its backward is deterministic.

use tch::{nn, Device, Kind, Tensor};

use taskmoe_kernels::TaskGroups;
use taskmoe_router::{Router, RouterConfig, RouterKind};

const D: i64 = 32;

/// The old formulation for up to 16 tasks: every task's logits, then each token keeps its own.
fn all_task_matmul(x: &Tensor, weight: &Tensor, ids: &Tensor) -> Tensor {
    let (nt, e) = (weight.size()[0], weight.size()[1]);
    let all = x
        .matmul(&weight.reshape([nt * e, D]).tr())
        .view([-1, nt, e]);
    let index = ids.view([-1, 1, 1]).expand([-1, 1, e], false);
    all.gather(1, &index, false).squeeze_dim(1)
}

/// The old formulation above 16 tasks: each token's gate gathered, one small product each.
fn gathered_gates(x: &Tensor, weight: &Tensor, ids: &Tensor) -> Tensor {
    weight
        .index_select(0, ids)
        .bmm(&x.unsqueeze(2))
        .squeeze_dim(2)
}

fn router(tasks: usize, experts: usize) -> (nn::VarStore, Router) {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = RouterConfig {
        kind: RouterKind::PerTask,
        num_experts: experts,
        k: 2,
        ..RouterConfig::default()
    };
    let r = Router::new(vs.root() / "router", &cfg, D as usize, tasks).unwrap();
    (vs, r)
}

/// Logits and the gradients of `sum(logits * probe)` with respect to `x` and the gates.
fn with_grads(
    vs: &nn::VarStore,
    x: &Tensor,
    f: impl Fn(&Tensor, &Tensor) -> Tensor,
) -> (Tensor, Tensor, Tensor) {
    let weight = vs.variables()["router.weight"].shallow_clone();
    let x = x.detach().set_requires_grad(true);
    let logits = f(&x, &weight);
    tch::manual_seed(11);
    let probe = logits.randn_like();
    let grads = Tensor::run_backward(
        &[(&logits * probe).sum(Kind::Float)],
        &[&x, &weight],
        false,
        false,
    );
    (
        logits.detach(),
        grads[0].shallow_clone(),
        grads[1].shallow_clone(),
    )
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{what}: max difference {diff}");
}

#[test]
fn grouped_dispatch_equals_all_task_scoring_and_gathered_gates() {
    let _rng = taskmoe_device::lock_global_rng();
    // Few tasks (the old matmul path), many (the old gather path), experts not a multiple of 4
    // (the grouped GEMM's stride rule: the per-task loop runs), and tasks absent from the batch.
    for (tasks, experts, tokens, present) in [
        (3, 8, 50, 3),
        (20, 8, 70, 20),
        (5, 6, 40, 5),
        (12, 16, 30, 4),
    ] {
        tch::manual_seed(tasks as i64);
        let (vs, r) = router(tasks, experts);
        let x = Tensor::randn([tokens, D], (Kind::Float, Device::Cpu));
        // Tasks shuffled over the tokens, so grouping really permutes.
        let ids =
            (Tensor::arange(tokens, (Kind::Int64, Device::Cpu)) * 7).remainder(present as i64);
        let ours = with_grads(&vs, &x, |x, _| r.forward(x, &ids, false).unwrap().logits);
        let groups = TaskGroups::new(&ids, tasks).unwrap();
        let given = with_grads(&vs, &x, |x, _| {
            r.forward_grouped(x, &ids, Some(&groups), false)
                .unwrap()
                .logits
        });
        for (name, old) in [
            (
                "all-task matmul",
                with_grads(&vs, &x, |x, w| all_task_matmul(x, w, &ids)),
            ),
            (
                "gathered gates",
                with_grads(&vs, &x, |x, w| gathered_gates(x, w, &ids)),
            ),
        ] {
            for (new, label) in [(&ours, "own groups"), (&given, "given groups")] {
                let at = format!("{tasks} tasks, {experts} experts, {label} vs {name}");
                assert_close(&new.0, &old.0, &format!("{at}: logits"));
                assert_close(&new.1, &old.1, &format!("{at}: token gradient"));
                assert_close(&new.2, &old.2, &format!("{at}: gate gradient"));
            }
        }
        // Gates of absent tasks get exactly zero gradient.
        for t in present..tasks {
            assert_eq!(ours.2.get(t as i64).abs().max().double_value(&[]), 0.0);
        }
        // Deterministic backward: a second run is bit-identical.
        let again = with_grads(&vs, &x, |x, _| r.forward(x, &ids, false).unwrap().logits);
        assert!(
            again.1.equal(&ours.1) && again.2.equal(&ours.2),
            "{tasks} tasks: rerun"
        );
    }
}

#[test]
fn mismatched_groups_are_errors() {
    let _rng = taskmoe_device::lock_global_rng();
    let (_vs, r) = router(3, 8);
    let x = Tensor::zeros([6, D], (Kind::Float, Device::Cpu));
    let ids = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
    let wrong = TaskGroups::new(&ids.narrow(0, 0, 4), 3).unwrap();
    let err = r
        .forward_grouped(&x, &ids, Some(&wrong), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task groups of 4 rows"), "{err}");
}
