//! `taskmoe check`: the one-shot GPU check (also runs on the CPU, at small sizes, in tests).
//!
//! Three measurements, printed as one table:
//! 1. **logits**: a checkpoint (given, or a seeded random model written to a temporary
//!    checkpoint) is loaded on the CPU and on the device; the device's logits in fp32 and in
//!    bf16 are compared with the CPU fp32 logits (`max |a - b| / max |a|` over real classes;
//!    targets 1e-4 and 1e-2);
//! 2. **moe-vs-dense**: forward + backward time of a MoE layer (token router, top-`k`, experts
//!    of width `2d`, dropless) against a dense FFN of width `k * 2d` (equal active FLOPs), in
//!    bf16, at each `TxDxE` size (target: at most 1.15x from 32k tokens);
//! 3. **train**: optimizer steps of the GPU preset (`ModelConfig::gpu`, the `gpu` preset: d = 1024, 12 blocks, 6 of
//!    them MoE with 8 experts, top-2) on random full-length batches in bf16: tokens/s and model
//!    FLOP utilisation `tokens/s * 3 * forward FLOPs per token / peak` (target: at least 35%).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::{nn, Device, Kind, Tensor};

use taskmoe_data::TensorBatch;
use taskmoe_device::{autocast, DeviceRequest, Precision};
use taskmoe_experts::{DenseFfn, MoeConfig, MoeLayer};
use taskmoe_model::{
    load_card, load_weights, param_report, save_card, save_weights, ExportDtype, HeadSpec,
    ModelCard, ModelConfig, ModelInput, MultiTaskModel, MISSING_CLASS_LOGIT,
};
use taskmoe_optim::{AdamW, AdamWConfig};
use taskmoe_router::{RouterConfig, RouterKind};
use taskmoe_train::{Objective, Unguarded};

/// Settings of `taskmoe check`.
#[derive(clap::Args, Clone, Debug)]
pub struct CheckArgs {
    /// The device to check.
    #[arg(long, value_enum, default_value_t = crate::DeviceArg::Cuda)]
    pub device: crate::DeviceArg,
    /// A checkpoint folder (with model.safetensors and config.json) for the logits check;
    /// default: a seeded random GPU-preset model.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// MoE-vs-dense sizes as TOKENSxDxEXPERTS, comma-separated. Default
    /// 32768x1024x8,131072x1024x8,32768x2048x64,131072x2048x64 (with --tiny: 64x16x4,128x16x8).
    #[arg(long)]
    pub moe_sizes: Option<String>,
    /// Choices per token of the MoE layers.
    #[arg(long, default_value_t = 2)]
    pub k: usize,
    /// Timed repetitions per measurement (after one warm-up). Default 10 (with --tiny: 1).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Training steps timed for throughput (after two warm-up steps). Default 20 (with
    /// --tiny: 2).
    #[arg(long)]
    pub train_steps: Option<usize>,
    /// Batch size x sequence length of the training check and the logits batch. Default
    /// 64x512 (with --tiny: 4x16).
    #[arg(long)]
    pub batch: Option<String>,
    /// Peak dense bf16 throughput of the device in TFLOP/s, for MFU (H200 SXM: 989).
    #[arg(long, default_value_t = 989.0)]
    pub peak_tflops: f64,
    /// Use the tiny model preset and toy sizes instead of the GPU preset (a CPU smoke test of
    /// a few seconds).
    #[arg(long)]
    pub tiny: bool,
    /// Skip parts: any of logits, moe, train, comma-separated.
    #[arg(long, default_value = "")]
    pub skip: String,
}

/// A device as `runtime.device` spells it (`cpu`, `cuda:0`).
fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// One table row.
struct Row {
    check: String,
    setting: String,
    result: String,
    target: String,
    pass: Option<bool>,
}

fn parse_pair(s: &str, what: &str) -> Result<(i64, i64)> {
    let (a, b) = s
        .split_once('x')
        .with_context(|| format!("{what} `{s}`: expected AxB"))?;
    Ok((a.trim().parse()?, b.trim().parse()?))
}

fn parse_sizes(s: &str) -> Result<Vec<(i64, i64, usize)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let parts: Vec<&str> = p.trim().split('x').collect();
            let [t, d, e] = parts.as_slice() else {
                bail!("--moe-sizes `{p}`: expected TOKENSxDxEXPERTS");
            };
            Ok((t.parse()?, d.parse()?, e.parse()?))
        })
        .collect()
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Median seconds of `reps` runs of `f` after one warm-up, synchronising the device around
/// each.
fn time(device: Device, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut samples = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        sync(device);
        let start = Instant::now();
        f()?;
        sync(device);
        samples.push(start.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

impl CheckArgs {
    fn moe_sizes(&self) -> &str {
        match (&self.moe_sizes, self.tiny) {
            (Some(s), _) => s,
            (None, true) => "64x16x4,128x16x8",
            (None, false) => "32768x1024x8,131072x1024x8,32768x2048x64,131072x2048x64",
        }
    }

    fn reps(&self) -> usize {
        self.reps.unwrap_or(if self.tiny { 1 } else { 10 })
    }

    fn train_steps(&self) -> usize {
        self.train_steps.unwrap_or(if self.tiny { 2 } else { 20 })
    }

    fn batch(&self) -> &str {
        match (&self.batch, self.tiny) {
            (Some(s), _) => s,
            (None, true) => "4x16",
            (None, false) => "64x512",
        }
    }
}

/// Runs the check and prints the table; fails when a check misses its target.
pub fn run(args: &CheckArgs) -> Result<()> {
    let selected = taskmoe_device::select_device(args.device.as_str().parse::<DeviceRequest>()?)?;
    if let Some(note) = &selected.note {
        eprintln!("taskmoe: {note}");
    }
    let device = selected.device;
    taskmoe_device::check_precision(Precision::Bf16)?;
    let lib = taskmoe_device::libtorch_lib_dir()
        .map_or("unknown".to_string(), |p| p.display().to_string());
    eprintln!("check: device {}, libtorch {lib}", device_name(device));
    let skip: Vec<&str> = args.skip.split(',').map(str::trim).collect();
    let model_cfg = if args.tiny {
        ModelConfig::tiny()
    } else {
        ModelConfig::gpu()
    };
    let (batch, seq) = parse_pair(args.batch(), "--batch")?;
    let mut rows = Vec::new();
    if !skip.contains(&"logits") {
        rows.extend(logits_check(args, device, &model_cfg, batch, seq)?);
    }
    if !skip.contains(&"moe") {
        for (t, d, e) in parse_sizes(args.moe_sizes())? {
            rows.push(moe_check(device, t, d, e, args.k, args.reps())?);
        }
    }
    if !skip.contains(&"train") {
        rows.push(train_check(args, device, &model_cfg, batch, seq)?);
    }
    println!("| check | setting | result | target | verdict |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        let verdict = match r.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "-",
        };
        println!(
            "| {} | {} | {} | {} | {verdict} |",
            r.check, r.setting, r.result, r.target
        );
    }
    let failed = rows.iter().filter(|r| r.pass == Some(false)).count();
    if failed > 0 {
        bail!("{failed} check(s) missed their target");
    }
    Ok(())
}

fn heads() -> Vec<HeadSpec> {
    (0..4)
        .map(|i| HeadSpec::classification(format!("task{i}"), 2))
        .collect()
}

/// A seeded batch of `b` full-length sequences for `heads.len()` tasks.
fn random_batch(
    cfg: &ModelConfig,
    num_tasks: usize,
    b: i64,
    l: i64,
    device: Device,
) -> [Tensor; 4] {
    let l = l.min(cfg.max_position as i64);
    let ids = Tensor::randint_low(5, cfg.vocab_size as i64, [b, l], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([b, l], (Kind::Int64, Device::Cpu));
    let tasks = Tensor::arange(b, (Kind::Int64, Device::Cpu)).remainder(num_tasks as i64);
    let labels = Tensor::randint(2, [b], (Kind::Int64, Device::Cpu));
    [ids, mask, tasks, labels].map(|t| t.to_device(device))
}

fn logits(
    model: &MultiTaskModel,
    batch: &[Tensor; 4],
    device: Device,
    p: Precision,
) -> Result<Tensor> {
    let out = tch::no_grad(|| {
        autocast(device, p, || {
            model.forward(
                &ModelInput {
                    input_ids: &batch[0],
                    attention_mask: &batch[1],
                    token_type_ids: None,
                    task_ids: &batch[2],
                },
                false,
            )
        })
    })?;
    Ok(out.logits.to_device(Device::Cpu).to_kind(Kind::Double))
}

/// `max |a - b| / max |a|` over the real classes (padding logits excluded).
fn relative_error(reference: &Tensor, other: &Tensor) -> f64 {
    let real = reference.gt(MISSING_CLASS_LOGIT / 2.0);
    let diff = (reference - other)
        .abs()
        .masked_fill(&real.logical_not(), 0.0);
    let scale = reference.abs().masked_fill(&real.logical_not(), 0.0).max();
    diff.max().double_value(&[]) / scale.double_value(&[]).max(1e-30)
}

fn logits_check(
    args: &CheckArgs,
    device: Device,
    cfg: &ModelConfig,
    batch: i64,
    seq: i64,
) -> Result<Vec<Row>> {
    let tmp;
    let dir: &Path = match &args.checkpoint {
        Some(dir) => dir,
        None => {
            // A seeded random model, written as a checkpoint so loading is checked too.
            tch::manual_seed(0);
            let vs = nn::VarStore::new(Device::Cpu);
            let card = ModelCard {
                model: cfg.clone(),
                heads: heads(),
            };
            MultiTaskModel::new(&vs.root(), &card.model, &card.heads)?;
            tmp = std::env::temp_dir().join(format!("taskmoe-check-{}", std::process::id()));
            std::fs::create_dir_all(&tmp)?;
            save_weights(&vs, &tmp.join("model.safetensors"), ExportDtype::F32)?;
            save_card(&card, &tmp.join("config.json"))?;
            &tmp
        }
    };
    let card = load_card(&dir.join("config.json"))?;
    let load = |device: Device| -> Result<(nn::VarStore, MultiTaskModel)> {
        let vs = nn::VarStore::new(device);
        let model = MultiTaskModel::new(&vs.root(), &card.model, &card.heads)?;
        load_weights(&vs, &dir.join("model.safetensors"))?;
        Ok((vs, model))
    };
    let (_cpu_vs, cpu_model) = load(Device::Cpu)?;
    let (_dev_vs, dev_model) = load(device)?;
    tch::manual_seed(1);
    let b = batch.min(16);
    let cpu_batch = random_batch(&card.model, card.heads.len(), b, seq, Device::Cpu);
    let dev_batch = cpu_batch.each_ref().map(|t| t.to_device(device));
    let reference = logits(&cpu_model, &cpu_batch, Device::Cpu, Precision::Fp32)?;
    let fp32 = logits(&dev_model, &dev_batch, device, Precision::Fp32)?;
    let bf16 = logits(&dev_model, &dev_batch, device, Precision::Bf16)?;
    if args.checkpoint.is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let setting = format!(
        "{} examples x {} tokens, {}",
        b,
        seq.min(card.model.max_position as i64),
        args.checkpoint
            .as_ref()
            .map_or("random model".to_string(), |p| p.display().to_string())
    );
    let (e32, e16) = (
        relative_error(&reference, &fp32),
        relative_error(&reference, &bf16),
    );
    Ok(vec![
        Row {
            check: format!("logits fp32, CPU vs {}", device_name(device)),
            setting: setting.clone(),
            result: format!("max rel err {e32:.2e}"),
            target: "<= 1e-4".into(),
            pass: device.is_cuda().then_some(e32 <= 1e-4),
        },
        Row {
            check: format!("logits bf16 on {} vs CPU fp32", device_name(device)),
            setting,
            result: format!("max rel err {e16:.2e}"),
            target: "<= 1e-2".into(),
            // Targets are for the GPU; on the CPU (smoke test) the numbers are reported only.
            pass: device.is_cuda().then_some(e16 <= 1e-2),
        },
    ])
}

fn moe_check(device: Device, t: i64, d: i64, e: usize, k: usize, reps: usize) -> Result<Row> {
    tch::manual_seed(2);
    let vs = nn::VarStore::new(device);
    let f = 2 * d as usize;
    let moe_cfg = MoeConfig {
        router: RouterConfig {
            kind: RouterKind::Token,
            num_experts: e,
            k,
            capacity_factor_train: 0.0,
            capacity_factor_eval: 0.0,
            renormalize: true,
            ..RouterConfig::default()
        },
        d_ff: f,
        expert_dropout: 0.0,
        ..MoeConfig::default()
    };
    let moe = MoeLayer::new(vs.root() / "moe", &moe_cfg, d as usize, 1)?;
    let dense = DenseFfn::new(vs.root() / "dense", d as usize, k * f, 0.0)?;
    let x = Tensor::randn([t, d], (Kind::Float, device)).set_requires_grad(true);
    let task_ids = Tensor::zeros([t], (Kind::Int64, device));
    let moe_s = time(device, reps, || {
        let y = autocast(device, Precision::Bf16, || moe.forward(&x, &task_ids, true))?;
        y.y.to_kind(Kind::Float).sum(Kind::Float).backward();
        Ok(())
    })?;
    let dense_s = time(device, reps, || {
        let y = autocast(device, Precision::Bf16, || dense.forward(&x, true));
        y.to_kind(Kind::Float).sum(Kind::Float).backward();
        Ok(())
    })?;
    let ratio = moe_s / dense_s;
    Ok(Row {
        check: "MoE layer vs dense FFN (fwd+bwd, bf16)".into(),
        setting: format!("T={t} d={d} E={e} k={k}, expert {f} vs dense {}", k * f),
        result: format!(
            "{ratio:.2}x ({:.2} ms vs {:.2} ms)",
            moe_s * 1e3,
            dense_s * 1e3
        ),
        target: "<= 1.15x from 32k tokens".into(),
        pass: (t >= 32768).then_some(ratio <= 1.15),
    })
}

fn train_check(
    args: &CheckArgs,
    device: Device,
    cfg: &ModelConfig,
    batch: i64,
    seq: i64,
) -> Result<Row> {
    tch::manual_seed(3);
    let heads = heads();
    let vs = nn::VarStore::new(device);
    let model = MultiTaskModel::new(&vs.root(), cfg, &heads)?;
    let mut opt = AdamW::new(vs.variables().into_iter().collect(), AdamWConfig::default())?;
    let seq = seq.min(cfg.max_position as i64);
    let data = random_batch(cfg, heads.len(), batch, seq, device);
    // The trainer's own step (`Objective::step`), under bf16 autocast, without clipping.
    let batch_tensors = TensorBatch {
        input_ids: data[0].shallow_clone(),
        attention_mask: data[1].shallow_clone(),
        token_type_ids: data[0].zeros_like(),
        task_ids: data[2].shallow_clone(),
        class_labels: data[3].shallow_clone(),
        regression_targets: Tensor::zeros([batch], (Kind::Float, device)),
        regression_mask: Tensor::zeros([batch], (Kind::Bool, device)),
        example_ids: Tensor::arange(batch, (Kind::Int64, device)),
    };
    let objective =
        Objective::with_weights(cfg, &vec![1.0; heads.len()], Precision::Bf16, 0.0, device);
    let mut step = || -> Result<()> {
        objective.step(&model, &mut opt, &batch_tensors, 1e-4, &mut Unguarded)?;
        Ok(())
    };
    step()?;
    let seconds = time(device, args.train_steps(), &mut step)?;
    let tokens_per_s = (batch * seq) as f64 / seconds;
    let report = param_report(cfg, &heads, seq as usize);
    let flops = tokens_per_s * 3.0 * report.flops_per_token as f64;
    let mfu = flops / (args.peak_tflops * 1e12);
    Ok(Row {
        check: "training, bf16".into(),
        setting: format!(
            "{} preset ({:.0}M params, {:.0}M active), batch {batch}x{seq}",
            if args.tiny { "tiny" } else { "gpu" },
            report.total as f64 / 1e6,
            report.active_per_token as f64 / 1e6
        ),
        result: format!(
            "{:.0} tokens/s, {:.1} TFLOP/s, MFU {:.1}% of {} TFLOP/s",
            tokens_per_s,
            flops / 1e12,
            mfu * 100.0,
            args.peak_tflops
        ),
        target: ">= 35% MFU (H200)".into(),
        pass: device.is_cuda().then_some(mfu >= 0.35),
    })
}
