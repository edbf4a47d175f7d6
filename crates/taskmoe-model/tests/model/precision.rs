//! bf16 mixed precision on the CPU: the same autocast path CUDA takes. Logits stay close to
//! fp32, the weights and their gradients stay fp32, and training steps work.

use tch::{nn, Device, Kind, Tensor};

use taskmoe_device::{autocast, Precision};
use taskmoe_model::{
    per_example_loss, HeadSpec, ModelConfig, ModelInput, MultiTaskModel, NormPlacement, Variant,
    MISSING_CLASS_LOGIT,
};

fn heads() -> Vec<HeadSpec> {
    (0..3)
        .map(|i| HeadSpec::classification(format!("t{i}"), 2 + i))
        .collect()
}

fn configs() -> Vec<ModelConfig> {
    let tiny = ModelConfig::tiny();
    let mut pre = tiny.with_variant(Variant::TokenMoe);
    pre.norm = NormPlacement::Pre;
    let mut shared = tiny.clone();
    shared.moe.num_shared_experts = 1;
    shared.moe.router.k = 2;
    vec![tiny.with_variant(Variant::Dense), tiny.clone(), pre, shared]
}

#[test]
fn bf16_logits_agree_with_fp32_and_training_works() {
    let _rng = taskmoe_device::lock_global_rng();
    for cfg in configs() {
        tch::manual_seed(11);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = MultiTaskModel::new(&vs.root(), &cfg, &heads()).unwrap();
        let (b, l) = (12, 10);
        let ids = Tensor::randint_low(5, cfg.vocab_size as i64, [b, l], (Kind::Int64, Device::Cpu));
        let mask = Tensor::ones([b, l], (Kind::Int64, Device::Cpu));
        let tasks = Tensor::arange(b, (Kind::Int64, Device::Cpu)).remainder(3);
        let input = ModelInput {
            input_ids: &ids,
            attention_mask: &mask,
            token_type_ids: None,
            task_ids: &tasks,
        };
        let fp32 = tch::no_grad(|| model.forward(&input, false)).unwrap();
        let bf16 = tch::no_grad(|| {
            autocast(Device::Cpu, Precision::Bf16, || {
                model.forward(&input, false)
            })
        })
        .unwrap();
        assert_eq!(bf16.logits.kind(), Kind::Float);
        let real = fp32.logits.gt(MISSING_CLASS_LOGIT / 2.0);
        let per_example: Vec<f64> = Vec::try_from(
            (&fp32.logits - &bf16.logits)
                .abs()
                .masked_fill(&real.logical_not(), 0.0)
                .amax([1].as_slice(), false)
                .to_kind(Kind::Double),
        )
        .unwrap();
        let scale = fp32
            .logits
            .abs()
            .masked_fill(&real.logical_not(), 0.0)
            .max()
            .double_value(&[]);
        let mut rel: Vec<f64> = per_example.iter().map(|d| d / scale).collect();
        rel.sort_by(f64::total_cmp);
        // Top-1 routing is discrete: where bf16 rounding upstream of a router flips a token's
        // choice, that token gets another expert at full scale (straight-through gates), so a
        // few examples may move further. Most must agree to bf16 precision.
        let median = rel[rel.len() / 2];
        assert!(
            median < 5e-2,
            "{:?}: bf16 logits off by {median} (median over examples; all: {rel:?})",
            cfg.variant
        );
        assert!(
            rel.last().copied().unwrap_or(0.0) > 0.0,
            "{:?}: bf16 was not used",
            cfg.variant
        );

        // A training step: forward in bf16, loss and backward outside, fp32 gradients.
        let labels = Tensor::zeros([b], (Kind::Int64, Device::Cpu));
        let targets = Tensor::zeros([b], (Kind::Float, Device::Cpu));
        let no_reg = Tensor::zeros([b], (Kind::Bool, Device::Cpu));
        let out = autocast(Device::Cpu, Precision::Bf16, || model.forward(&input, true)).unwrap();
        let mut loss = per_example_loss(&out.logits, &labels, &targets, &no_reg).mean(Kind::Float);
        if let Some(aux) = &out.aux {
            loss += aux.weighted(&cfg.moe.router);
            assert_eq!(aux.load_balance.kind(), Kind::Float);
        }
        assert!(loss.double_value(&[]).is_finite());
        loss.backward();
        for (name, p) in vs.variables() {
            assert_eq!(p.kind(), Kind::Float, "{name}");
            let g = p.grad();
            if g.defined() {
                assert_eq!(g.kind(), Kind::Float, "{name}");
            }
        }
    }
}
