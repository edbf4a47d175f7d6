//! The sections of a run configuration beside `[model]` and `[data]`, one concern each:
//! `[train]` (the steps and what each optimizes), `[init]` (where the weights start),
//! `[optim]`, `[schedule]`, `[checkpoint]`, `[eval]`, `[runtime]` (where and how it computes)
//! and `[output]`. Every key has a doc comment with its default; `taskmoe config show` prints
//! them beside the values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::nonfinite::NonFinitePolicy;
use taskmoe_model::Upcycling;
use taskmoe_optim::{AdamWConfig, UnusedExperts};

/// The `[train]` section: how many steps, their seed, and what each step optimizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps. Default 4000.
    pub steps: u64,
    /// Seed of everything random: initialisation, mixture sampling, dropout, router noise.
    /// Default 0.
    pub seed: u64,
    /// Loss weight per task name (others weigh 1). Default empty.
    pub task_weights: BTreeMap<String, f64>,
    /// Train only the parameters whose name contains one of these strings (e.g.
    /// `["router", "heads"]`: routing and task heads adapt, experts and encoder stay frozen);
    /// each must match at least one parameter. Empty trains everything. Default empty.
    pub train_only: Vec<String>,
    /// Freeze the pretrained encoder: the parameters a BERT import fills by name (embeddings,
    /// attention, LayerNorms, dense FFNs; `taskmoe_model::is_pretrained_param`) get no
    /// gradient and no optimizer state, so only what the MoE blocks add (routers, experts or
    /// LoRA factors, shared experts), task embeddings and heads train. With
    /// `model.moe.expert_kind = "lora"` (whose base FFNs never train) this is LoRA experts on
    /// a frozen pretrained encoder (MoLoRA / MixLoRA). Needs `init.from` or `init.checkpoint`
    /// (a random encoder is not worth freezing); combines with `train_only`. Default false.
    pub freeze_pretrained: bool,
    /// Non-finite loss or gradient norm: `error` (stop, naming the step, task and last good
    /// checkpoint) or `skip-step`. Default `error`.
    pub nonfinite: NonFinitePolicy,
    /// A finite loss over this many times the running median of the last 100 applied steps'
    /// losses (the median floored at 1e-3; checked once 10 are known) is treated like a
    /// non-finite one, under `nonfinite`: an explosion is caught before it overflows. 0 turns the
    /// check off. Default 1e6.
    pub loss_spike_factor: f64,
    /// Under `nonfinite = "skip-step"`, the most steps that may be skipped; one more stops
    /// training with an error. Every skip is also warned about. Default 10.
    pub max_skipped_steps: u64,
}

/// The `[init]` section: where a fresh run's weights start (a resume ignores it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitConfig {
    /// Start from a pretrained HF BERT-family folder (`config.json`, `model.safetensors`,
    /// e.g. `cargo xtask fetch-model minilm`): the encoder architecture (width, depth, heads,
    /// FFN and expert width, vocabulary, positions, LayerNorm epsilon, post-LN) comes from its
    /// `config.json` (the configured dropout rates are kept), its weights are
    /// imported, and the experts of MoE blocks are upcycled from the pretrained FFNs. Relative
    /// to the config file. Default none (random initialisation).
    pub from: Option<PathBuf>,
    /// Start from the weights of a taskmoe checkpoint folder (or a run folder: its newest
    /// checkpoint whose files match their manifest) made with the same `[model]` and tasks; the
    /// optimizer, schedule and step start fresh. This is how a trained multi-task model is
    /// fine-tuned on a new task or continued on a new mixture. Relative to the config file.
    /// Excludes `from`. Default none.
    pub checkpoint: Option<PathBuf>,
    /// Paired initialisation: each module's parameters are drawn from a stream keyed by
    /// (`train.seed`, module name) (`taskmoe_device::keyed_initialisation`), so runs of one
    /// seed share every parameter their models name alike, bit for bit: the dense and the MoE
    /// arm start from the same embeddings, attention, norms and heads, and adding a router or
    /// an expert moves no other parameter. `false` draws every parameter from one stream in
    /// construction order (before 2026-12-06; the arms then differ from the first MoE block
    /// on). Default true.
    pub paired: bool,
    /// Noise of upcycling, as a fraction of each FFN weight matrix's standard deviation.
    /// Default 0: the experts start as exact copies of the pretrained FFN (sparse upcycling),
    /// so the upcycled model computes the pretrained one at step 0 (with top-1
    /// straight-through or renormalised gates and no drops); the experts diverge through the
    /// different tokens the router sends each of them.
    pub upcycle_noise: f64,
    /// Drop-Upcycling: after copying, a share in `[0, 1]` of each expert's hidden units (a
    /// different random draw per expert) is re-initialised from normal distributions with the
    /// pretrained FFN's weight statistics, so the experts differ from step 0 while each keeps
    /// the rest of the pretrained FFN (`ExpertBank::drop_units`; Nakamura et al. 2025 use
    /// 0.5). Default 0 (exact copies).
    pub upcycle_drop: f64,
    /// Before training, start each key task from the value task (`{ new = "seen" }`): its
    /// head, its task embedding and, with `task_init_routing`, its routing are copied
    /// (`MultiTaskModel::init_task_from`). Default empty.
    pub task_init: BTreeMap<String, String>,
    /// Whether `task_init` copies the routing of task-aware routers too; `false` leaves the
    /// new task's routing as initialised. Default true.
    pub task_init_routing: bool,
    /// Before training, after `task_init`, give each key task the routing of the value task
    /// (`{ new = "seen" }`) and nothing else (`MultiTaskModel::copy_routing`): a head from one
    /// task and routing from another (the experiments' negative control). Default empty.
    pub routing_from: BTreeMap<String, String>,
    /// Before step 0, set every `task-representation` router's state of each training task
    /// whose routing `task_init` did not copy to the exact mean of that task's training
    /// examples' token states (`MultiTaskModel::calibrate_routing`): a new task then routes
    /// from its own examples from the first step. Nothing happens for other routers.
    /// Default false.
    pub calibrate_routing: bool,
}

/// The `[optim]` section: AdamW and gradient clipping.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Decay rate of the first moment (the gradient's running mean). Default 0.9.
    pub beta1: f64,
    /// Decay rate of the second moment (the running mean of squared gradients). Default 0.999.
    pub beta2: f64,
    /// Added to the denominator for numerical stability. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay, applied to the decay group only (biases, norms and embeddings
    /// do not decay). Default 0.01.
    pub weight_decay: f64,
    /// Clip the global gradient L2 norm to this; 0 disables clipping. Default 1.0.
    pub clip_grad_norm: f64,
    /// What a step does to an expert that received no token (its gradient is zero): `update`
    /// moves it like any parameter with a zero gradient (moments decay, weight decay applies:
    /// PyTorch's AdamW); `skip` leaves its weights and moments as they are (lazy moments, as
    /// PyTorch's SparseAdam), so the optimizer's cost follows the experts that were used.
    /// Both are the same update where every expert is used. Default `update`.
    pub unused_experts: UnusedExperts,
    /// The routers' learning rate over the schedule's (every parameter with a `router` path
    /// segment: gates, shared gates, task embeddings of task-aware routers). Routers start
    /// near uniform and a router parameter's gradient is small beside an expert's, so a
    /// larger rate lets routing commit before the experts have adapted to whatever it sent
    /// them first. Default 1.
    pub router_lr_scale: f64,
}

/// The `[checkpoint]` section: how often, how many, and what a checkpoint holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Steps between checkpoints (the last step always gets one). Default 500.
    pub every: u64,
    /// Checkpoints kept (older ones are deleted once a newer one is complete). Default 2.
    pub keep_last: usize,
    /// Keep the checkpoint of the best validation score beside the `keep_last` newest ones
    /// (an evaluation that sets a new best writes a checkpoint at its step, whatever `every`
    /// says). Default true.
    pub keep_best: bool,
    /// Whether checkpoints hold the optimizer state (AdamW moments, twice the model's size),
    /// which `--resume` needs; `false` keeps only what evaluation and `init.checkpoint` read.
    /// Default true.
    pub save_optimizer: bool,
    /// Whether the checkpoint of the last step (`train.steps`) holds the optimizer state too
    /// (with `save_optimizer`). `false` suits runs that end there and are never extended (the
    /// experiments' runs): every earlier checkpoint still resumes exactly, a run stopped after
    /// its last checkpoint resumes into its final test, and the finished run keeps only its
    /// weights. Default true.
    pub final_optimizer: bool,
}

/// The `[eval]` section: validation during training and the final test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Steps between evaluations on the validation split (and one at the end); 0 = only at
    /// the end. Default 500.
    pub every: u64,
    /// Examples per evaluation batch. Default 256.
    pub batch_size: usize,
    /// Which weights the final test evaluates: `last` (the end of training) or `best` (the
    /// checkpoint of the best validation score, early stopping; needs `checkpoint.keep_best`
    /// and `every > 0`). `final-test.json` names the step. Default `last`.
    pub test_checkpoint: TestCheckpoint,
    /// Early stopping by patience: training ends after this many consecutive validation
    /// evaluations that do not improve the best score, with a checkpoint at that step (the
    /// final test then uses `test_checkpoint`); `train.steps` is the most it trains, and the
    /// learning-rate schedule still runs over `train.steps`. A resumed run that had stopped
    /// stays stopped. Needs `every > 0`. 0 = train to `train.steps`. Default 0.
    pub patience: u64,
}

/// The `[runtime]` section: where and how the run computes. None of it changes what a step
/// computes beyond rounding, so all of it may change on resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// `cpu`, `cuda` or `auto`. Default `cpu`. `cuda` loads libtorch's CUDA library at start
    /// (an error naming it, or the driver, when that fails); `auto` falls back to the CPU with a
    /// message. Parameters, optimizer state and batches live on the device; checkpoints are
    /// always written from CPU copies and load onto any device.
    pub device: String,
    /// Compute precision of the encoder, experts and heads: `fp32` or `bf16` (libtorch
    /// autocast, on CPU and CUDA alike, with fp32 master weights, optimizer state, router,
    /// softmax, top-k, aux and task losses). No loss scaling: bf16 has fp32's exponent range.
    /// Default `fp32`.
    pub precision: taskmoe_device::Precision,
    /// CPU threads for libtorch; 0 keeps libtorch's default. Default 2.
    pub threads: usize,
    /// Expert-parallel degree: the experts of every MoE layer run split over this many ranks of
    /// a multi-process job (`cargo xtask train --nproc N`, torchrun), tokens travelling to them
    /// by all-to-all; it must divide the number of processes. 1 = every rank runs every expert.
    /// Default 1.
    pub expert_parallel: usize,
    /// Keep the states of the frozen blocks (`model.frozen_layers`) on disk between runs: one
    /// file per frozen weights (named by their hash) under `cache_dir`, read at the start of a
    /// run and extended with the examples it adds, so every seed and arm on the same frozen
    /// encoder computes them once. Without it they are still computed once per run and kept
    /// in memory. Default `true`.
    pub frozen_state_cache: bool,
    /// Folder of taskmoe's caches (the frozen states live in `<cache_dir>/frozen-states/`).
    /// Default: `$TASKMOE_CACHE_DIR`, else `$XDG_CACHE_HOME/taskmoe`, else
    /// `$HOME/.cache/taskmoe`.
    pub cache_dir: Option<PathBuf>,
}

/// The `[output]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Folder that holds run folders. Default `runs`.
    pub dir: PathBuf,
    /// The run folder's name; empty means `<variant>-seed<seed>`. Default empty.
    pub name: String,
    /// Write TensorBoard event files into the run folder (`tensorboard --logdir runs`): every
    /// step's losses, learning rate, gradient norm, tokens/s and routing measures, every
    /// evaluation's numbers and the resolved configuration (docs/tensorboard.md). Written by a
    /// thread of its own, by rank 0 of a job. Default `true`.
    pub tensorboard: bool,
}

/// Which weights `taskmoe train`'s final test evaluates ([`EvalConfig::test_checkpoint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestCheckpoint {
    /// The weights at the end of training.
    #[default]
    Last,
    /// The checkpoint with the best validation score.
    Best,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 4000,
            seed: 0,
            task_weights: BTreeMap::new(),
            train_only: Vec::new(),
            freeze_pretrained: false,
            nonfinite: NonFinitePolicy::Error,
            loss_spike_factor: 1e6,
            max_skipped_steps: 10,
        }
    }
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            from: None,
            checkpoint: None,
            paired: true,
            upcycle_noise: 0.0,
            upcycle_drop: 0.0,
            task_init: BTreeMap::new(),
            task_init_routing: true,
            routing_from: BTreeMap::new(),
            calibrate_routing: false,
        }
    }
}

impl InitConfig {
    /// How the experts of an imported model's MoE blocks start (`upcycle_noise`,
    /// `upcycle_drop`).
    pub fn upcycling(&self) -> Upcycling {
        Upcycling {
            noise: self.upcycle_noise,
            drop: self.upcycle_drop,
        }
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        let a = AdamWConfig::default();
        OptimConfig {
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            weight_decay: a.weight_decay,
            clip_grad_norm: 1.0,
            unused_experts: a.unused_experts,
            router_lr_scale: a.router_lr_scale,
        }
    }
}

impl OptimConfig {
    /// The AdamW settings.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            unused_experts: self.unused_experts,
            router_lr_scale: self.router_lr_scale,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            every: 500,
            keep_last: 2,
            keep_best: true,
            save_optimizer: true,
            final_optimizer: true,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            every: 500,
            batch_size: 256,
            test_checkpoint: TestCheckpoint::Last,
            patience: 0,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            device: "cpu".into(),
            precision: taskmoe_device::Precision::Fp32,
            threads: 2,
            expert_parallel: 1,
            frozen_state_cache: true,
            cache_dir: None,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("runs"),
            name: String::new(),
            tensorboard: true,
        }
    }
}
