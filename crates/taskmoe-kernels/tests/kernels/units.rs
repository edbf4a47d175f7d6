//! Unit tests of the kernels' documented edge cases and errors.

use crate::common::*;
use taskmoe_kernels::stats::{entropy, router_entropy, task_expert_counts, RoutingStats};
use taskmoe_kernels::{
    aux, grouped_matmul, top_k, top_k_biased, Capacity, DispatchPlan, KernelError,
};
use tch::{Kind, Tensor};

#[test]
fn capacity_formula_and_validation() {
    assert_eq!(Capacity::from_factor(0.0).unwrap(), Capacity::Dropless);
    assert_eq!(Capacity::Dropless.slots(100, 2, 8), None);
    // ceil(1.25 * 100 * 2 / 8) = ceil(31.25) = 32
    assert_eq!(Capacity::Factor(1.25).slots(100, 2, 8), Some(32));
    assert_eq!(Capacity::Factor(0.01).slots(4, 1, 8), Some(1), "never zero");
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let err = Capacity::from_factor(bad).unwrap_err().to_string();
        assert!(err.contains("capacity_factor"), "{err}");
    }
}

#[test]
fn load_balance_is_one_when_balanced_and_e_when_collapsed() {
    for (k, e) in [(1usize, 4usize), (2, 4), (2, 8), (3, 6)] {
        let t = 24;
        let probs = Tensor::full(
            [t, e as i64],
            1.0 / e as f64,
            (Kind::Float, tch::Device::Cpu),
        );
        // Round-robin choices: every expert gets the same share of slots.
        let experts = (Tensor::arange(t * k as i64, (Kind::Int64, tch::Device::Cpu))
            .remainder(e as i64))
        .view([t, k as i64]);
        let loss = scalar(&aux::load_balance_loss(&probs, &experts).unwrap());
        assert!((loss - 1.0).abs() < 1e-6, "k={k} E={e}: {loss}");
        // Everything to expert 0 with probability 1.
        let collapsed_probs = Tensor::zeros([t, e as i64], (Kind::Float, tch::Device::Cpu));
        let _ = collapsed_probs.narrow(1, 0, 1).fill_(1.0);
        let collapsed = Tensor::zeros([t, 1], (Kind::Int64, tch::Device::Cpu));
        let loss = scalar(&aux::load_balance_loss(&collapsed_probs, &collapsed).unwrap());
        assert!((loss - e as f32).abs() < 1e-5, "collapsed: {loss}");
    }
}

#[test]
fn task_balance_counts_tasks_not_tokens() {
    // Task 0 (3 tokens) always on expert 0, task 1 (1 token) on expert 1, both with
    // certainty: the tasks split the experts evenly, their tokens do not.
    let probs = tensor2(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0], 4, 2);
    let experts = Tensor::from_slice(&[0i64, 0, 0, 1]).view([4, 1]);
    let tasks = Tensor::from_slice(&[0i64, 0, 0, 1]);
    let by_tokens = scalar(&aux::load_balance_loss(&probs, &experts).unwrap());
    assert!((by_tokens - 1.25).abs() < 1e-6, "{by_tokens}");
    let by_tasks = scalar(&aux::task_load_balance_loss(&probs, &experts, &tasks, 3).unwrap());
    assert!(
        (by_tasks - 1.0).abs() < 1e-6,
        "{by_tasks} (task 2 is absent)"
    );
    // Both tasks on expert 0: collapsed, E.
    let both = Tensor::zeros([4, 1], (Kind::Int64, tch::Device::Cpu));
    let probs0 = tensor2(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 4, 2);
    let collapsed = scalar(&aux::task_load_balance_loss(&probs0, &both, &tasks, 2).unwrap());
    assert!((collapsed - 2.0).abs() < 1e-6, "{collapsed}");
}

#[test]
fn mutual_information_is_log_tasks_when_tasks_own_experts() {
    // Two tasks, each routed with certainty to its own expert: I = H(task) = ln 2.
    let probs = tensor2(&[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0], 4, 2);
    let tasks = Tensor::from_slice(&[0i64, 0, 1, 1]);
    let loss = scalar(&aux::mutual_information_loss(&probs, &tasks, 2).unwrap());
    assert!((loss + std::f32::consts::LN_2).abs() < 1e-5, "{loss}");
    // Same routing for both tasks: no information.
    let shared = tensor2(&[0.5; 8], 4, 2);
    let loss = scalar(&aux::mutual_information_loss(&shared, &tasks, 2).unwrap());
    assert!(loss.abs() < 1e-6, "{loss}");
}

#[test]
fn z_loss_of_zero_logits_is_log_e_squared() {
    let logits = Tensor::zeros([5, 8], (Kind::Float, tch::Device::Cpu));
    let z = scalar(&aux::z_loss(&logits).unwrap());
    assert!((z - 8f32.ln().powi(2)).abs() < 1e-5);
}

#[test]
fn routing_stats_and_counts() {
    let experts = Tensor::from_slice(&[0i64, 1, 0, 2, 0, 1]).view([3, 2]);
    let plan = DispatchPlan::new(&experts, 4, Capacity::Factor(1.0)).unwrap(); // ceil(1.5) = 2 slots each
    let stats = RoutingStats::from_plan(&plan);
    assert_eq!(plan.requested, vec![3, 2, 1, 0]);
    assert_eq!(plan.counts, vec![2, 2, 1, 0]);
    assert_eq!(stats.load, vec![0.5, 2.0 / 6.0, 1.0 / 6.0, 0.0]);
    assert!((stats.dropped_fraction - 1.0 / 6.0).abs() < 1e-12);
    assert!((stats.load_entropy - entropy(&stats.load)).abs() < 1e-12);
    // The third token's first choice is dropped: expert 0 took tokens 0 and 1 first.
    let kept: Vec<bool> = Vec::try_from(&plan.kept.reshape([-1])).unwrap();
    assert_eq!(kept, vec![true, true, true, true, false, true]);

    let tasks = Tensor::from_slice(&[1i64, 0, 1]);
    let counts = task_expert_counts(&experts, &tasks, 2, 4).unwrap();
    let counts: Vec<i64> = Vec::try_from(&counts.reshape([-1])).unwrap();
    assert_eq!(counts, vec![1, 0, 1, 0, 2, 2, 0, 0]);
    assert!(
        task_expert_counts(&experts, &tasks, 1, 4).is_err(),
        "task 1 of 1"
    );

    let uniform = Tensor::full([3, 4], 0.25, (Kind::Float, tch::Device::Cpu));
    assert!((scalar(&router_entropy(&uniform).unwrap()) - 4f32.ln()).abs() < 1e-6);
}

#[test]
fn bad_inputs_are_errors_that_name_the_argument() {
    let logits = Tensor::zeros([4, 3], (Kind::Float, tch::Device::Cpu));
    assert!(matches!(
        top_k(&logits, 4, true),
        Err(KernelError::Invalid { .. })
    ));
    assert!(matches!(
        top_k(&logits, 0, true),
        Err(KernelError::Invalid { .. })
    ));
    let err = top_k(&logits.view([12]), 1, true).unwrap_err().to_string();
    assert!(err.contains("logits") && err.contains("2-D"), "{err}");

    let ids = Tensor::from_slice(&[0i64, 5]).view([2, 1]);
    let err = DispatchPlan::new(&ids, 3, Capacity::Dropless)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0..3"), "{err}");
    let negative = Tensor::from_slice(&[0i64, -1]).view([2, 1]);
    assert!(DispatchPlan::new(&negative, 3, Capacity::Dropless).is_err());
    let floats = Tensor::zeros([2, 1], (Kind::Float, tch::Device::Cpu));
    assert!(DispatchPlan::new(&floats, 3, Capacity::Dropless).is_err());

    let x = Tensor::zeros([5, 2], (Kind::Float, tch::Device::Cpu));
    let w = Tensor::zeros([3, 2, 4], (Kind::Float, tch::Device::Cpu));
    let err = grouped_matmul(&x, &w, None, &[1, 1, 1])
        .unwrap_err()
        .to_string();
    assert!(err.contains("counts sum to 3"), "{err}");
    let err = grouped_matmul(&x, &w, None, &[5, 0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`w`") || err.contains("w has shape"), "{err}");
}

#[test]
fn bf16_logits_route_in_fp32() {
    let raw = normal(3, 16 * 8);
    let logits = tensor2(&raw, 16, 8);
    let routed = top_k(&logits.to_kind(Kind::BFloat16), 2, true).unwrap();
    assert_eq!(routed.probs.kind(), Kind::Float);
    assert_eq!(routed.weights.kind(), Kind::Float);
}

#[test]
fn empty_batch_plans_nothing() {
    let experts = Tensor::zeros([0, 2], (Kind::Int64, tch::Device::Cpu));
    let plan = DispatchPlan::new(&experts, 4, Capacity::Factor(1.0)).unwrap();
    assert_eq!(plan.num_rows(), 0);
    assert_eq!(plan.counts, vec![0; 4]);
}

#[test]
fn biased_top_k_chooses_by_the_bias_and_weighs_by_the_probabilities() {
    let logits = tensor2(&[2.0, 1.0, 0.0, 0.0, 1.0, 3.0], 2, 3);
    let zero = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu));
    for (k, renormalize) in [(1, true), (2, true), (2, false)] {
        let plain = top_k(&logits, k, renormalize).unwrap();
        let biased = top_k_biased(&logits, &zero, k, renormalize).unwrap();
        assert!(plain.experts.equal(&biased.experts));
        assert!(plain.weights.allclose(&biased.weights, 1e-6, 1e-7, false));
    }
    // A bias of +5 on expert 1 makes it everyone's first choice; its raw weight is still
    // softmax(logits)[1].
    let bias = Tensor::from_slice(&[0.0f32, 5.0, 0.0]);
    let biased = top_k_biased(&logits, &bias, 1, false).unwrap();
    assert_eq!(
        Vec::<i64>::try_from(biased.experts.flatten(0, -1)).unwrap(),
        vec![1, 1]
    );
    let probs = logits.softmax(-1, Kind::Float);
    let expected = probs.narrow(1, 1, 1);
    assert!(biased.weights.allclose(&expected, 1e-6, 1e-7, false));
    assert!(top_k_biased(
        &logits,
        &Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)),
        1,
        true
    )
    .is_err());
}
