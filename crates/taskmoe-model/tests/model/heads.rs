//! The task heads, run on task-grouped examples without host-to-device copies, equal the
//! per-example formula (each example through its own task's head, padded with
//! `MISSING_CLASS_LOGIT`) in logits and in the gradient of every parameter.

use std::collections::BTreeMap;

use taskmoe_model::{
    HeadSpec, ModelConfig, ModelInput, MultiTaskModel, Variant, MISSING_CLASS_LOGIT,
};
use taskmoe_router::RouterKind;
use tch::{nn, Device, Kind, Tensor};

fn heads() -> Vec<HeadSpec> {
    vec![
        HeadSpec::classification("two", 2),
        HeadSpec::classification("three", 3),
        HeadSpec::regression("score"),
        HeadSpec::classification("absent", 4),
        HeadSpec::classification("five", 5),
    ]
}

/// `out(tanh(dense(pooled)))` per example, from the named parameters.
fn reference(vars: &BTreeMap<String, Tensor>, pooled: &Tensor, tasks: &[i64]) -> Tensor {
    let specs = heads();
    let width = specs.iter().map(HeadSpec::num_outputs).max().unwrap() as i64;
    let rows: Vec<Tensor> = tasks
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let p = |name: &str| &vars[&format!("heads.{t}.{name}")];
            let x = pooled.get(i as i64).unsqueeze(0);
            let h = x.linear(p("dense.weight"), Some(p("dense.bias"))).tanh();
            let out = h.linear(p("out.weight"), Some(p("out.bias")));
            let n = out.size()[1];
            let pad = Tensor::full(
                [1, width - n],
                MISSING_CLASS_LOGIT,
                (Kind::Float, Device::Cpu),
            );
            Tensor::cat(&[out, pad], 1)
        })
        .collect();
    Tensor::cat(&rows, 0)
}

#[test]
fn grouped_heads_equal_the_per_example_heads_in_logits_and_gradients() {
    let _rng = taskmoe_device::lock_global_rng();
    for kind in [RouterKind::PerTask, RouterKind::TaskConcat] {
        tch::manual_seed(7);
        let mut cfg = ModelConfig::tiny().with_variant(Variant::TaskMoe);
        cfg.moe.router.kind = kind;
        let vs = nn::VarStore::new(Device::Cpu);
        let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
        let (b, l) = (9i64, 7i64);
        // Tasks interleaved and task 3 absent; lengths varied (padding).
        let tasks: Vec<i64> = vec![4, 0, 2, 1, 0, 4, 2, 1, 0];
        let ids = Tensor::randint(cfg.vocab_size as i64, [b, l], (Kind::Int64, Device::Cpu));
        let lengths = Tensor::from_slice(&[7i64, 3, 5, 7, 2, 6, 4, 7, 1]);
        let mask = Tensor::arange(l, (Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .lt_tensor(&lengths.unsqueeze(1))
            .to_kind(Kind::Int64);
        let task_ids = Tensor::from_slice(&tasks);
        let input = ModelInput {
            input_ids: &ids,
            attention_mask: &mask,
            token_type_ids: None,
            task_ids: &task_ids,
        };
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let names: Vec<&String> = vars.keys().collect();
        let params: Vec<&Tensor> = vars.values().collect();
        let out = model.forward(&input, false).unwrap();
        let want = reference(&vars, &out.pooled, &tasks);
        let diff = (&out.logits - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{kind:?}: logits differ by {diff}");
        // The same loss on the real columns through both; every parameter's gradient.
        let real = want.gt(MISSING_CLASS_LOGIT / 2.0).to_kind(Kind::Float);
        let probe = want.randn_like() * &real;
        let grads = |logits: &Tensor| {
            Tensor::run_backward(&[(logits * &probe).sum(Kind::Float)], &params, true, false)
        };
        let (ours, theirs) = (grads(&out.logits), grads(&want));
        for ((name, a), b) in names.iter().zip(&ours).zip(&theirs) {
            // Parameters the batch does not reach (the absent task's head, unused positions).
            assert_eq!(
                a.defined(),
                b.defined(),
                "{kind:?}: {name} reached by one side only"
            );
            if !a.defined() {
                continue;
            }
            // fp32 sums in another order: the golden tests' tolerance, 1e-5 + 1e-4 |ref|.
            let excess = ((a - b).abs() - b.abs() * 1e-4).max().double_value(&[]);
            assert!(
                excess < 1e-5,
                "{kind:?}: gradient of {name} differs ({excess} over)"
            );
        }
        let absent = &ours[names
            .iter()
            .position(|n| *n == "heads.3.out.weight")
            .unwrap()];
        assert!(!absent.defined(), "an absent task's head gets no gradient");
    }
}
