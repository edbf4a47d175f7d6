//! End-to-end training step (forward, losses, backward, gradient clipping, AdamW) and
//! evaluation forward of the whole multi-task model, per variant, in tokens per second.
//!
//! Every point runs in its own process (so its peak RSS is its own) on a fixed batch of
//! random token ids with every token real, tasks assigned round-robin over the batch, three
//! classes per task. The step is `taskmoe_train::Objective::step`, the function
//! `taskmoe_train::Trainer` takes its steps with: model forward in training mode, task loss
//! plus the weighted aux losses, the host reads the trainer logs, `zero_grad`, backward,
//! clipping at 1.0, `AdamW::step`. Only the data sampling and the run's guard (non-finite
//! checks on values already read) are left out (sampling is measured by `benches/data.rs`).
//!
//! - `cargo bench -p taskmoe-train --bench train_step -- --point SPEC [--runs N]
//!   [--aten-adamw] [--autograd-expert-grads]`: one point, printing `POINT <spec> <step ms>
//!   <fwd+bwd ms> <optimizer ms> <peak RSS MiB> <params> <active params per token>`;
//!   `--aten-adamw` updates with libtorch ops chunk by chunk (`AdamW::set_fused(false)`, the
//!   update before the fused fp32 kernel) and `--autograd-expert-grads` computes the experts'
//!   weight gradients with autograd's own backward (`WeightGrads::Autograd`, before they were
//!   accumulated in place), so both sides of each change can be timed by one binary;
//! - `benches/torch_step.py` measures the same spec in PyTorch eager and prints the same line;
//! - `-- --summary [--quick] [--torch PYTHON]`: the grid (variants of both presets, evaluation,
//!   scaling with tokens, experts and tasks) as markdown tables, each point in its own process,
//!   with the PyTorch reference side by side when a Python is given;
//!   `cargo xtask bench` runs it and writes the tables into `docs/benchmarks.md`.
//!
//! A spec is `preset:model:kK:eE:tTASKS:bBATCH:lLEN:mode`, for example
//! `small:per-task:k1:e8:t4:b32:l64:train`: preset `small` or `medium`
//! (`ModelConfig::small` / `ModelConfig::medium`), model `dense`, `dense2x` (dense with twice
//! the FFN width), `token` (token-moe) or a task-moe router (`task-concat`, `per-task`,
//! `task-level`), top-`K` of `E` experts, dropless, `TASKS` tasks, a `BATCH x LEN` batch, mode
//! `train` (a training step), `train-skip` (a training step with the optimizer's
//! `unused_experts = "skip"`; not in `benches/torch_step.py`) or `eval` (a no-grad forward in
//! evaluation mode).
//!
//! Threads: 2 unless `TASKMOE_BENCH_THREADS` says otherwise.

use std::process::Command;
use std::time::Instant;

use taskmoe_data::TensorBatch;
use taskmoe_kernels::WeightGrads;
use taskmoe_model::{param_report, HeadSpec, ModelConfig, MultiTaskModel, Variant};
use taskmoe_optim::{AdamW, AdamWConfig, UnusedExperts};
use taskmoe_router::RouterKind;
use taskmoe_train::{model_input, Objective};
use tch::{nn, Device, Kind, Tensor};

#[path = "common.rs"]
mod common;
#[path = "step_common.rs"]
mod step_common;
use common::{load_average, peak_rss_mib, threads};
use step_common::{classification_heads, flag_value, point_fields, spec_number, timed_step};

/// Classes of every task's head.
const CLASSES: usize = 3;
/// Gradient clipping of the default run.
const CLIP: f64 = 1.0;
/// Learning rate (constant here; the schedule costs nothing).
const LR: f64 = 3e-4;

/// One measured configuration, parsed from its spec.
#[derive(Clone, Debug)]
struct Spec {
    text: String,
    preset: String,
    model: String,
    k: usize,
    experts: usize,
    tasks: usize,
    batch: i64,
    len: i64,
    train: bool,
    /// `train-skip`: AdamW leaves unused experts alone ([`UnusedExperts::Skip`]).
    skip: bool,
}

impl Spec {
    fn parse(text: &str) -> Spec {
        let f: Vec<&str> = text.split(':').collect();
        assert_eq!(
            f.len(),
            8,
            "bad spec `{text}`: preset:model:kK:eE:tT:bB:lL:mode"
        );
        let num = |field: &str, prefix: char| spec_number(text, field, prefix);
        Spec {
            text: text.to_string(),
            preset: f[0].to_string(),
            model: f[1].to_string(),
            k: num(f[2], 'k'),
            experts: num(f[3], 'e'),
            tasks: num(f[4], 't'),
            batch: num(f[5], 'b') as i64,
            len: num(f[6], 'l') as i64,
            train: match f[7] {
                "train" | "train-skip" => true,
                "eval" => false,
                other => panic!("bad mode `{other}` in spec `{text}`"),
            },
            skip: f[7] == "train-skip",
        }
    }

    fn config(&self) -> ModelConfig {
        let mut cfg = match self.preset.as_str() {
            "small" => ModelConfig::small(),
            "medium" => ModelConfig::medium(),
            other => panic!("unknown preset `{other}`"),
        };
        cfg.max_position = cfg.max_position.max(self.len as usize);
        cfg.moe.router.num_experts = self.experts;
        cfg.moe.router.k = self.k;
        cfg.moe.router.renormalize = self.k > 1;
        cfg.moe.router.capacity_factor_train = 0.0;
        cfg.moe.router.capacity_factor_eval = 0.0;
        match self.model.as_str() {
            "dense" => cfg.with_variant(Variant::Dense),
            "dense2x" => {
                cfg.d_ff *= 2;
                cfg.with_variant(Variant::Dense)
            }
            "token" => cfg.with_variant(Variant::TokenMoe),
            router => {
                cfg.moe.router.kind = match router {
                    "task-concat" => RouterKind::TaskConcat,
                    "per-task" => RouterKind::PerTask,
                    "task-level" => RouterKind::TaskLevel,
                    other => panic!("unknown model `{other}`"),
                };
                cfg.with_variant(Variant::TaskMoe)
            }
        }
    }
}

/// The batch of a point: random token ids, every token real, tasks round-robin, random
/// class labels.
fn random_batch(spec: &Spec, vocab: usize) -> TensorBatch {
    let (b, l) = (spec.batch, spec.len);
    let opts = (Kind::Int64, Device::Cpu);
    let tasks: Vec<i64> = (0..b).map(|i| i % spec.tasks as i64).collect();
    TensorBatch {
        input_ids: Tensor::randint(vocab as i64, [b, l], opts),
        attention_mask: Tensor::ones([b, l], opts),
        token_type_ids: Tensor::zeros([b, l], opts),
        task_ids: Tensor::from_slice(&tasks),
        class_labels: Tensor::randint(CLASSES as i64, [b], opts),
        regression_targets: Tensor::zeros([b], (Kind::Float, Device::Cpu)),
        regression_mask: Tensor::zeros([b], (Kind::Bool, Device::Cpu)),
        example_ids: Tensor::arange(b, opts),
    }
}

fn run_point(text: &str, runs: usize, fused_adamw: bool, grads: WeightGrads) {
    tch::set_num_threads(threads());
    tch::manual_seed(0);
    let spec = Spec::parse(text);
    let cfg = spec.config();
    let heads = classification_heads(spec.tasks, CLASSES);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = MultiTaskModel::new(&vs.root(), &cfg, &heads).unwrap();
    for (_, layer) in model.moe_layers() {
        layer.experts().set_weight_grads(grads);
    }
    let report = param_report(&cfg, &heads, spec.len as usize);
    let x = random_batch(&spec, cfg.vocab_size);
    let mut times: Vec<(f64, f64, f64)> = Vec::with_capacity(runs);
    if spec.train {
        let adamw = AdamWConfig {
            unused_experts: match spec.skip {
                true => UnusedExperts::Skip,
                false => UnusedExperts::Update,
            },
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(vs.variables().into_iter().collect(), adamw).unwrap();
        opt.set_fused(fused_adamw);
        let objective = Objective::with_weights(
            &cfg,
            &vec![1.0; spec.tasks],
            taskmoe_device::Precision::Fp32,
            CLIP,
            Device::Cpu,
        );
        for i in 0..runs + 2 {
            tch::manual_seed(i as i64);
            let (fwd_bwd, opt_ms) = timed_step(&model, &mut opt, &objective, &x, LR);
            if i >= 2 {
                times.push((fwd_bwd + opt_ms, fwd_bwd, opt_ms));
            }
        }
    } else {
        let _guard = tch::no_grad_guard();
        for i in 0..runs + 1 {
            let start = Instant::now();
            let out = model.forward(&model_input(&x), false).unwrap();
            let _: Vec<f32> =
                Vec::try_from(&out.logits.argmax(-1, false).to_kind(Kind::Float)).unwrap();
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if i >= 1 {
                times.push((ms, ms, 0.0));
            }
        }
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (total, fwd_bwd, opt) = times[times.len() / 2];
    println!(
        "POINT {} {total:.2} {fwd_bwd:.2} {opt:.2} {:.0} {} {}",
        spec.text,
        peak_rss_mib(),
        report.total,
        report.active_per_token
    );
}

/// What a measured point printed.
#[derive(Clone, Copy, Debug)]
struct Measured {
    step_ms: f64,
    fwd_bwd_ms: f64,
    opt_ms: f64,
    rss_mib: f64,
    params: u64,
}

/// Runs one point in a child process: this binary, or the PyTorch script with `python`.
fn measure(spec: &str, runs: usize, python: Option<&str>) -> Option<Measured> {
    let mut cmd = match python {
        None => Command::new(std::env::current_exe().expect("own path")),
        Some(py) => {
            let mut c = Command::new(py);
            c.arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../benches/torch_step.py"
            ))
            .args(["--threads", &threads().to_string()])
            // Its own libtorch, not the one the bench binary was pointed at.
            .env_remove("LD_LIBRARY_PATH");
            c
        }
    };
    let out = cmd
        .args(["--point", spec, "--runs", &runs.to_string()])
        .output()
        .ok()?;
    let (_, f) = point_fields(spec, python.unwrap_or("taskmoe"), &out)?;
    Some(Measured {
        step_ms: f[2].parse().ok()?,
        fwd_bwd_ms: f[3].parse().ok()?,
        opt_ms: f[4].parse().ok()?,
        rss_mib: f[5].parse().ok()?,
        params: f[6].parse().ok()?,
    })
}

/// Tokens of a spec's batch.
fn tokens(spec: &str) -> f64 {
    let s = Spec::parse(spec);
    (s.batch * s.len) as f64
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

/// Prints the variant table of one preset (training or evaluation), with the PyTorch
/// reference side by side when `python` is given.
fn variant_table(
    preset: &str,
    shape: &str,
    models: &[(&str, usize)],
    train: bool,
    runs: usize,
    python: Option<&str>,
) {
    let mode = if train { "train" } else { "eval" };
    let experts = if preset == "small" { 8 } else { 16 };
    let spec =
        |model: &str, k: usize| format!("{preset}:{model}:k{k}:e{experts}:t8:{shape}:{mode}");
    let torch_cols = if python.is_some() {
        " PyTorch ms | taskmoe / PyTorch |"
    } else {
        ""
    };
    let torch_sep = if python.is_some() { "---:|---:|" } else { "" };
    if train {
        println!("| model | k | params | active / token | step ms | fwd+bwd ms | optimizer ms | tokens/s | / dense of equal active | peak RSS MiB |{torch_cols}");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|{torch_sep}");
    } else {
        println!("| model | k | params | forward ms | tokens/s | / dense of equal active | peak RSS MiB |{torch_cols}");
        println!("|---|---:|---:|---:|---:|---:|---:|{torch_sep}");
    }
    let mut dense_ms = std::collections::BTreeMap::new();
    for &(model, k) in models {
        let s = spec(model, k);
        let Some(m) = measure(&s, runs, None) else {
            continue;
        };
        if model.starts_with("dense") {
            dense_ms.insert(k, m.step_ms);
        }
        let ratio = dense_ms.get(&k).map(|d| m.step_ms / d);
        let cfg = Spec::parse(&s).config();
        let heads: Vec<HeadSpec> = (0..8)
            .map(|i| HeadSpec::classification(format!("t{i}"), CLASSES))
            .collect();
        let report = param_report(&cfg, &heads, Spec::parse(&s).len as usize);
        let torch = python.map(|py| measure(&s, runs, Some(py)));
        let torch_cols = match torch {
            None => String::new(),
            Some(t) => {
                if let Some(t) = t.filter(|t| t.params != m.params) {
                    eprintln!(
                        "warning: {s}: the PyTorch reference has {} parameters, taskmoe {}",
                        t.params, m.params
                    );
                }
                let t = t.map(|t| t.step_ms);
                format!(
                    " {} | {} |",
                    fmt_opt(t, 1),
                    fmt_opt(t.map(|t| m.step_ms / t), 2)
                )
            }
        };
        let name = if model.starts_with("dense") {
            model.to_string()
        } else if model == "token" {
            "token-moe".to_string()
        } else {
            format!("task-moe {model}")
        };
        let tps = tokens(&s) / (m.step_ms / 1e3);
        if train {
            println!(
                "| {name} | {k} | {:.2}M | {:.2}M | {:.1} | {:.1} | {:.1} | {tps:.0} | {} | {:.0} |{torch_cols}",
                m.params as f64 / 1e6,
                report.active_per_token as f64 / 1e6,
                m.step_ms, m.fwd_bwd_ms, m.opt_ms, fmt_opt(ratio, 2), m.rss_mib
            );
        } else {
            println!(
                "| {name} | {k} | {:.2}M | {:.1} | {tps:.0} | {} | {:.0} |{torch_cols}",
                m.params as f64 / 1e6,
                m.step_ms,
                fmt_opt(ratio, 2),
                m.rss_mib
            );
        }
    }
    println!();
}

/// Prints one scaling table: the same model as one parameter doubles.
fn scaling_table(title: &str, column: &str, rows: &[(String, String)], runs: usize) {
    println!("{title}\n");
    println!("| {column} | step ms | fwd+bwd ms | optimizer ms | fwd+bwd us / token | step us / token | peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (label, s) in rows {
        let Some(m) = measure(s, runs, None) else {
            continue;
        };
        let t = tokens(s);
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
            m.step_ms,
            m.fwd_bwd_ms,
            m.opt_ms,
            m.fwd_bwd_ms * 1e3 / t,
            m.step_ms * 1e3 / t,
            m.rss_mib
        );
    }
    println!();
}

/// The whole grid as markdown tables.
fn summary(quick: bool, python: Option<&str>) {
    let load_before = load_average();
    let runs = if quick { 3 } else { 5 };
    let small_models: &[(&str, usize)] = &[
        ("dense", 1),
        ("token", 1),
        ("task-concat", 1),
        ("per-task", 1),
        ("task-level", 1),
        ("dense2x", 2),
        ("per-task", 2),
    ];
    let medium_models: &[(&str, usize)] = if quick {
        &[("dense", 1), ("per-task", 1)]
    } else {
        small_models
    };
    println!(
        "Training step (forward, backward, clipping, AdamW), {} threads, median of {runs} steps \
         after 2 warm-up steps, 8 tasks, dropless; `active / token` from `param_report`.\n",
        threads()
    );
    println!("**small** (d = 128, 4 blocks, MoE in blocks 2 and 4: 8 experts of width 512), batch 32 x 64 = 2,048 tokens:\n");
    variant_table("small", "b32:l64", small_models, true, runs, python);
    println!("**medium** (d = 512, 8 blocks, MoE in every second block: 16 experts of width 2048), batch 16 x 128 = 2,048 tokens:\n");
    variant_table("medium", "b16:l128", medium_models, true, runs, python);
    println!("Evaluation forward (no grad, evaluation mode), same batches:\n");
    variant_table("small", "b32:l64", small_models, false, runs, python);
    if !quick {
        variant_table("medium", "b16:l128", medium_models, false, runs, python);
    }
    let small = |k: usize, e: usize, t: usize, b: usize| {
        format!("small:per-task:k{k}:e{e}:t{t}:b{b}:l64:train")
    };
    let token_rows: Vec<(String, String)> = [16usize, 32, 64, 128]
        .iter()
        .flat_map(|&b| {
            [
                (
                    format!("{} (dense)", b * 64),
                    format!("small:dense:k1:e8:t8:b{b}:l64:train"),
                ),
                (format!("{} (task-moe)", b * 64), small(1, 8, 8, b)),
            ]
        })
        .collect();
    scaling_table(
        "Scaling with tokens (small, per-task router, top-1 of 8, 8 tasks, length 64):",
        "tokens",
        &token_rows,
        runs,
    );
    let expert_rows: Vec<(String, String)> = [8usize, 16, 32, 64]
        .iter()
        .map(|&e| (e.to_string(), small(1, e, 8, 32)))
        .collect();
    scaling_table(
        "Scaling with experts at k = 1 (small, per-task router, 8 tasks, 2,048 tokens):",
        "experts",
        &expert_rows,
        runs,
    );
    let task_rows: Vec<(String, String)> = [4usize, 8, 16, 32, 64]
        .iter()
        .map(|&t| {
            (
                t.to_string(),
                format!("small:per-task:k1:e8:t{t}:b64:l32:train"),
            )
        })
        .collect();
    scaling_table("Scaling with tasks (small, per-task router, top-1 of 8, batch 64 x 32 = 2,048 tokens, so every task is in every batch):", "tasks", &task_rows, runs);
    println!(
        "Load average (1 / 5 / 15 min) before: {load_before}; after: {}.\n",
        load_average()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| flag_value(&args, flag);
    let runs = value("--runs").and_then(|r| r.parse().ok()).unwrap_or(5);
    if args.iter().any(|a| a == "--summary") {
        summary(
            args.iter().any(|a| a == "--quick"),
            value("--torch").as_deref(),
        );
        return;
    }
    let fused_adamw = !args.iter().any(|a| a == "--aten-adamw");
    let grads = match args.iter().any(|a| a == "--autograd-expert-grads") {
        true => WeightGrads::Autograd,
        false => WeightGrads::InPlace,
    };
    match value("--point") {
        Some(spec) => run_point(&spec, runs, fused_adamw, grads),
        // `cargo bench --workspace` runs every bench binary with `--bench`: one default point.
        None => run_point(
            "small:per-task:k1:e8:t4:b32:l64:train",
            3,
            fused_adamw,
            grads,
        ),
    }
}
