//! Starting a new task from a seen one: after `init_task_from` the new task computes exactly
//! what the source computes (head, task embedding, routing), or keeps its own routing when
//! asked to.

use tch::{nn, Device, Kind, Tensor};

use taskmoe_model::{HeadSpec, ModelConfig, ModelInput, MultiTaskModel, TaskEmbedding, Variant};
use taskmoe_router::RouterKind;

fn heads() -> Vec<HeadSpec> {
    vec![
        HeadSpec::classification("seen", 2),
        HeadSpec::classification("three-way", 3),
        HeadSpec::classification("new", 2),
    ]
}

fn model(kind: RouterKind, seed: i64) -> (nn::VarStore, MultiTaskModel) {
    let mut cfg = ModelConfig::tiny().with_variant(Variant::TaskMoe);
    cfg.moe.router.kind = kind;
    cfg.task_embedding = TaskEmbedding::Added;
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
    (vs, m)
}

fn logits_as(model: &MultiTaskModel, task: i64) -> Tensor {
    tch::manual_seed(7);
    let ids = Tensor::randint_low(5, 64, [6, 8], (Kind::Int64, Device::Cpu));
    let mask = ids.ones_like();
    let tasks = Tensor::full([6], task, (Kind::Int64, Device::Cpu));
    model
        .forward(
            &ModelInput {
                input_ids: &ids,
                attention_mask: &mask,
                token_type_ids: None,
                task_ids: &tasks,
            },
            false,
        )
        .unwrap()
        .logits
}

#[test]
fn a_new_task_computes_what_its_source_computes() {
    let _rng = taskmoe_device::lock_global_rng();
    for kind in [
        RouterKind::PerTask,
        RouterKind::TaskConcat,
        RouterKind::TaskLevel,
    ] {
        let (_vs, m) = model(kind, 1);
        assert!(
            !logits_as(&m, 2).allclose(&logits_as(&m, 0), 1e-6, 1e-6, false),
            "{kind:?}: tasks differ before"
        );
        let report = m.init_task_from(2, 0, true).unwrap();
        assert!(report.head && report.task_embedding, "{kind:?}: {report:?}");
        assert_eq!(report.routers, 2, "{kind:?}: both blocks are MoE");
        let diff = (logits_as(&m, 2) - logits_as(&m, 0))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6, "{kind:?}: max |diff| {diff}");
    }
}

#[test]
fn fresh_routing_keeps_the_new_tasks_own_router() {
    let _rng = taskmoe_device::lock_global_rng();
    let (_vs, m) = model(RouterKind::PerTask, 2);
    let report = m.init_task_from(2, 0, false).unwrap();
    assert_eq!(report.routers, 0);
    // Same head and task embedding, but the per-task gate still differs: other experts, other
    // outputs.
    assert!(!logits_as(&m, 2).allclose(&logits_as(&m, 0), 1e-6, 1e-6, false));
}

#[test]
fn incompatible_heads_and_unknown_tasks_are_errors() {
    let _rng = taskmoe_device::lock_global_rng();
    let (_vs, m) = model(RouterKind::PerTask, 3);
    let err = m.init_task_from(1, 0, true).unwrap_err().to_string();
    assert!(
        err.contains("`three-way`") && err.contains("heads differ"),
        "{err}"
    );
    let err = m.init_task_from(5, 0, true).unwrap_err().to_string();
    assert!(err.contains("task 5 is out of range"), "{err}");
}
