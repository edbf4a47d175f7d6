//! A small multi-task model end to end: built from the `tiny` preset as a task-MoE (per-task
//! routers in both blocks) with two classification heads and a regression head, one forward
//! and backward on a toy batch that mixes the three tasks, then its weights saved to
//! safetensors and loaded into a second model, which computes the same logits.
//!
//! Run with `cargo run -p taskmoe-model --example build_save_load`.

use taskmoe_model::{
    load_weights, param_report, per_example_loss, save_weights, ExportDtype, HeadSpec, ModelConfig,
    ModelInput, MultiTaskModel, Variant, IGNORE_INDEX,
};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let cfg = ModelConfig::tiny().with_variant(Variant::TaskMoe);
    let heads = vec![
        HeadSpec::classification("sentiment", 2),
        HeadSpec::classification("topic", 3),
        HeadSpec::regression("similarity"),
    ];
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads)?;
    let report = param_report(&cfg, &heads, 8);
    println!(
        "{:?} model: {} parameters, {} active per token",
        cfg.variant, report.total, report.active_per_token
    );

    // A toy batch of 6 sequences of up to 8 tokens, two per task; the last two are padded.
    let ids = Tensor::randint_low(5, cfg.vocab_size as i64, [6, 8], (Kind::Int64, Device::Cpu));
    let lengths = Tensor::from_slice(&[8i64, 8, 8, 8, 5, 3]).unsqueeze(1);
    let mask = Tensor::arange(8, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&lengths)
        .to_kind(Kind::Int64);
    let ids = ids * &mask;
    let tasks = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
    let input = ModelInput {
        input_ids: &ids,
        attention_mask: &mask,
        token_type_ids: None,
        task_ids: &tasks,
    };
    // Class labels for the classification rows, a target for the regression rows.
    let class_labels = Tensor::from_slice(&[1i64, 2, IGNORE_INDEX, 0, 0, IGNORE_INDEX]);
    let targets = Tensor::from_slice(&[0f32, 0.0, 0.7, 0.0, 0.0, -0.2]);
    let regression = tasks.eq(2);

    let mut opt = nn::AdamW::default().build(&vs, 1e-3)?;
    let out = model.forward(&input, true)?;
    println!("logits {:?} (padded to the widest head)", out.logits.size());
    let task_loss =
        per_example_loss(&out.logits, &class_labels, &targets, &regression).mean(Kind::Float);
    let aux = out.aux.expect("a task-MoE model has MoE blocks");
    let loss = &task_loss + aux.weighted(&cfg.moe.router);
    opt.zero_grad();
    loss.backward();
    let grad_norm: f64 = vs
        .trainable_variables()
        .iter()
        .map(|v| v.grad().square().sum(Kind::Double).double_value(&[]))
        .sum::<f64>()
        .sqrt();
    println!(
        "task loss {:.4}, load balance {:.3}, gradient norm {grad_norm:.4}",
        task_loss.double_value(&[]),
        aux.load_balance.double_value(&[])
    );
    opt.step();

    // Save the updated weights and load them into a freshly initialised model.
    let dir = std::env::temp_dir().join(format!("taskmoe-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("model.safetensors");
    save_weights(&vs, &file, ExportDtype::F32)?;
    let vs2 = nn::VarStore::new(Device::Cpu);
    let copy = MultiTaskModel::new(&vs2.root(), &cfg, &heads)?;
    load_weights(&vs2, &file)?;
    let (a, b) = tch::no_grad(|| -> taskmoe_model::Result<_> {
        Ok((
            model.forward(&input, false)?.logits,
            copy.forward(&input, false)?.logits,
        ))
    })?;
    println!(
        "saved {} tensors to {}; the loaded copy's logits equal the original's: {}",
        vs.variables().len(),
        file.display(),
        a.equal(&b)
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
