//! The training loop: sample, forward, losses, backward, clip, AdamW, log, evaluate,
//! checkpoint; resumable bit for bit from any complete checkpoint.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tch::{nn, Device, Tensor};

use taskmoe_data::{Sampler, SamplerState};
use taskmoe_model::{
    import_bert, load_weights, save_card, save_weights, ExportDtype, ImportReport, ModelCard,
    MultiTaskModel,
};

use crate::assets::RunAssets;
use crate::checkpoint::{latest_complete, latest_verified, list_checkpoints, CheckpointWriter};
use crate::distributed::Distributed;
use crate::error::{invalid, Result, TrainError};
use crate::interrupt::interrupted;
use crate::objective::Objective;
use crate::optim::AdamW;
use crate::resume::{
    check_fresh_folder, config_changes, nothing_to_resume, refuse_changes, rewind_log,
    superseded_path,
};
use crate::run_config::RunConfig;
use crate::run_data::RunData;
use crate::run_guard::RunGuard;
use crate::run_lock::RunLock;
use crate::trainer_state::{TrainerState, TRAINER_STATE_FILE};

/// Files of a checkpoint directory, beside the manifest.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimizer state.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The resolved run configuration.
pub const RUN_CONFIG_FILE: &str = "config.toml";
/// The model card (`ModelConfig` + heads), enough to rebuild the model without the run config.
pub const MODEL_CARD_FILE: &str = "config.json";
/// Per-step training log in the run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Per-evaluation log in the run folder.
pub const EVAL_FILE: &str = "eval.jsonl";

/// What one training step did, as written to `metrics.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct StepLog {
    /// 1-based index of the step just taken.
    pub step: u64,
    /// Wall-clock time the step ended, seconds since the Unix epoch.
    pub time: f64,
    /// Training seconds of the run so far, this step included (resumes add up).
    pub elapsed_s: f64,
    /// Total loss: weighted task loss + weighted aux losses. Non-finite values are written
    /// as the strings `"NaN"`, `"inf"`, `"-inf"` (JSON has no such numbers).
    #[serde(serialize_with = "crate::json_float::f64")]
    pub loss: f64,
    /// Weighted mean task loss.
    #[serde(serialize_with = "crate::json_float::f64")]
    pub task_loss: f64,
    /// Mean task loss of each task present in the batch.
    #[serde(serialize_with = "crate::json_float::map")]
    pub task_losses: BTreeMap<String, f64>,
    /// Unweighted aux losses averaged over MoE blocks (empty for dense models).
    #[serde(serialize_with = "crate::json_float::map")]
    pub aux: BTreeMap<String, f64>,
    /// Learning rate of the step.
    pub lr: f64,
    /// Global gradient L2 norm before clipping (`"NaN"` when the loss was not finite and no
    /// backward pass ran).
    #[serde(serialize_with = "crate::json_float::f64")]
    pub grad_norm: f64,
    /// Real (non-padding) tokens in the batch.
    pub tokens: usize,
    /// Tokens per second of this step (wall clock).
    pub tokens_per_s: f64,
    /// Share of routing slots per expert, per MoE block.
    pub expert_load: Vec<Vec<f64>>,
    /// Share of dropped slots per MoE block.
    pub dropped: Vec<f64>,
    /// Mean router probability of the first choice per MoE block (the top-1 gate value of a
    /// raw Switch gate; the router's confidence otherwise).
    pub top1_prob: Vec<f64>,
    /// Whether the update was skipped (non-finite values under `skip-step`).
    pub skipped: bool,
    /// Why the update was skipped: what was not finite, or the loss spike
    /// (`train.loss_spike_factor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
}

/// What the caller's evaluation returned, written to `eval.jsonl`.
#[derive(Clone, Debug)]
pub struct EvalPoint {
    /// The record to log (metrics per task, say).
    pub record: serde_json::Value,
    /// A score to track the best checkpoint by: name, value, higher is better.
    pub score: Option<(String, f64, bool)>,
}

/// Receives progress; the CLI draws a bar, tests ignore it.
pub trait Progress {
    /// Training starts (or resumes) at `done` of `total` steps.
    fn start(&mut self, total: u64, done: u64);
    /// A step finished.
    fn step(&mut self, log: &StepLog);
    /// Something worth a line (evaluation results, checkpoints).
    fn message(&mut self, text: &str);
    /// Training ended.
    fn finish(&mut self);
}

/// A [`Progress`] that shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: &StepLog) {}
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

/// A training run in a run folder.
pub struct Trainer {
    cfg: RunConfig,
    run_dir: PathBuf,
    device: Device,
    vs: nn::VarStore,
    model: MultiTaskModel,
    opt: AdamW,
    sampler: Sampler,
    state: TrainerState,
    writer: CheckpointWriter,
    objective: Objective,
    task_names: Vec<String>,
    last_checkpoint: Option<PathBuf>,
    import: Option<ImportReport>,
    assets: RunAssets,
    /// The run folder's lock: held by rank 0 (or the single process), which writes the folder.
    _lock: Option<RunLock>,
    /// The data-parallel job this process is a rank of (`None`: a single-process run).
    dist: Option<Distributed>,
}

/// The seed of step `step`: dropout masks and router noise are a pure function of it.
/// Rank `r > 0` of a data-parallel job mixes its rank in, so shards get independent masks;
/// rank 0 (and a single process) keeps the plain seed.
fn rank_step_seed(seed: u64, step: u64, rank: usize) -> i64 {
    let seed = seed ^ (rank as u64).wrapping_mul(0xA076_1D64_78BD_642F);
    step_seed(seed, step)
}

/// See [`rank_step_seed`].
fn step_seed(seed: u64, step: u64) -> i64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

/// Resolves `cpu`, `cuda` or `auto` to a device (see [`taskmoe_device::select_device`]):
/// `cuda` and `auto` load `libtorch_cuda.so` first, `cuda` fails naming the missing library or
/// driver, and `auto` falls back to the CPU, printing why on stderr.
pub fn select_device(name: &str) -> Result<Device> {
    let selected = name
        .parse::<taskmoe_device::DeviceRequest>()
        .and_then(taskmoe_device::select_device)
        .map_err(|e| invalid("device", e.to_string()))?;
    if let Some(note) = &selected.note {
        eprintln!("taskmoe: {note}");
    }
    Ok(selected.device)
}

/// The device of the process with node-local rank `local_rank` in a multi-process job: on
/// CUDA one GPU per process, `cuda:LOCAL_RANK` (as torchrun's convention has it), an error
/// naming both numbers when the node has fewer GPUs; the CPU is shared.
pub fn rank_device(device: Device, local_rank: usize, cuda_devices: usize) -> Result<Device> {
    match device {
        Device::Cuda(_) if local_rank >= cuda_devices => Err(invalid(
            "device",
            format!(
                "LOCAL_RANK = {local_rank} needs GPU {local_rank}, but this node has \
                 {cuda_devices} CUDA device(s): start at most one process per GPU"
            ),
        )),
        Device::Cuda(_) => Ok(Device::Cuda(local_rank)),
        other => Ok(other),
    }
}

impl Trainer {
    /// Sets up a run in `cfg.run_dir()`. With `resume`, continues from the newest complete
    /// checkpoint there (if any); without, refuses a folder that already has checkpoints.
    ///
    /// Under torchrun's variables (`WORLD_SIZE` > 1) it joins that data-parallel job first
    /// (see [`Distributed::from_env`] and [`Trainer::with_distributed`]).
    pub fn new(cfg: &RunConfig, data: &RunData, resume: bool) -> Result<Self> {
        let dist = Distributed::from_env(cfg)?;
        Self::with_distributed(cfg, data, resume, dist)
    }

    /// [`Trainer::new`] as rank `dist.rank()` of a data-parallel job: the run folder is shared
    /// (every rank resumes from the same checkpoint), each rank trains on its shard of every
    /// global batch of `data.batch_size` examples, gradients are averaged over the ranks, and
    /// rank 0 alone writes logs and checkpoints. Evaluations run on every rank (see
    /// [`Trainer::train`]).
    pub fn with_distributed(
        cfg: &RunConfig,
        data: &RunData,
        resume: bool,
        dist: Option<Distributed>,
    ) -> Result<Self> {
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads as i32);
        }
        // A job's rank already chose its device (`cuda:LOCAL_RANK` on CUDA) to pick its backend.
        let device = match &dist {
            Some(d) => d.device(),
            None => select_device(&cfg.train.device)?,
        };
        taskmoe_device::check_precision(cfg.train.precision)
            .map_err(|e| invalid("precision", e.to_string()))?;
        let run_dir = cfg.run_dir();
        // A resume with no checkpoint folder at all is refused before the lock, which would
        // create the folder: it changes no file.
        if resume && list_checkpoints(&run_dir)?.is_empty() {
            return Err(nothing_to_resume(&run_dir, &latest_verified(&run_dir)?));
        }
        // Locked before anything is looked at, so "is there a run here?" and the writes that
        // follow cannot interleave with another process.
        // Only rank 0 writes the folder, so only rank 0 holds its lock.
        let lock = if dist.as_ref().is_none_or(Distributed::is_rank0) {
            Some(RunLock::acquire(
                &run_dir,
                if resume {
                    "taskmoe train --resume"
                } else {
                    "taskmoe train"
                },
            )?)
        } else {
            None
        };
        let latest = latest_verified(&run_dir)?;
        if resume {
            for line in latest.skipped_lines() {
                eprintln!("taskmoe: --resume {line}");
            }
        }
        if let Some(d) = &dist {
            let step = latest.checkpoint.as_ref().map_or(u64::MAX, |c| c.step);
            d.agree("the checkpoint to resume from", step)?;
        }
        if resume && latest.checkpoint.is_none() {
            return Err(nothing_to_resume(&run_dir, &latest));
        }
        if !resume {
            check_fresh_folder(&run_dir)?;
        }
        let existing = latest.checkpoint;
        // Initialisation (and upcycling noise) draw from the global generator: hold it, so a
        // run's weights are a function of its seed whatever else runs in the process.
        let _rng = taskmoe_device::lock_global_rng();
        tch::manual_seed(step_seed(cfg.train.seed, u64::MAX));
        let vs = nn::VarStore::new(device);
        let heads = data.heads();
        let model = MultiTaskModel::new(&vs.root(), &cfg.model, &heads).map_err(model_err)?;
        if let Some(d) = &dist {
            d.attach_experts(&model)?;
        }
        let opt = AdamW::new(trainable(&vs, &cfg.train.train_only)?, cfg.train.optimizer)?;
        let sampler = data.sampler(cfg)?;
        let writer = CheckpointWriter::new(&run_dir, Some(cfg.train.keep_last))?;
        let task_names: Vec<String> = data.specs.iter().map(|s| s.name.clone()).collect();
        let mut trainer = Trainer {
            cfg: cfg.clone(),
            device,
            vs,
            model,
            opt,
            sampler,
            state: TrainerState::new(cfg.train.seed),
            writer,
            objective: Objective::new(cfg, &task_names, device),
            task_names,
            last_checkpoint: None,
            import: None,
            assets: RunAssets::from_run(cfg, data)?,
            _lock: lock,
            run_dir,
            dist,
        };
        match existing {
            Some(ckpt) => trainer.restore(&ckpt.dir)?,
            None => {
                if let Some(dir) = &cfg.train.init_from {
                    let report =
                        import_bert(&trainer.model, &trainer.vs, dir, cfg.train.upcycle_noise)
                            .map_err(model_err)?;
                    trainer.import = Some(report);
                }
                if let Some(dir) = &cfg.train.init_checkpoint {
                    let ckpt = resolve_checkpoint(dir)?;
                    load_weights(&trainer.vs, &ckpt.join(MODEL_FILE)).map_err(|e| {
                        invalid(
                            "config",
                            format!("key `train.init_checkpoint` ({}): {e}", ckpt.display()),
                        )
                    })?;
                }
                for (new, seen) in &cfg.train.task_init {
                    let (Some(t), Some(s)) = (data.id(new), data.id(seen)) else {
                        unreachable!("RunData::load checked the task names");
                    };
                    trainer
                        .model
                        .init_task_from(t, s, cfg.train.task_init_routing)
                        .map_err(|e| {
                            invalid("config", format!("key `train.task_init.{new}`: {e}"))
                        })?;
                }
                if trainer.is_rank0() {
                    fs::create_dir_all(&trainer.run_dir).map_err(io(&trainer.run_dir))?;
                    for file in [METRICS_FILE, EVAL_FILE] {
                        let path = trainer.run_dir.join(file);
                        File::create(&path).map_err(io(&path))?;
                    }
                    // The resolved configuration, before any step: what this run is.
                    let path = trainer.run_dir.join(RUN_CONFIG_FILE);
                    fs::write(&path, cfg.to_toml()).map_err(io(&path))?;
                }
                let sampler_state = trainer.sampler.state(0);
                trainer.state.set_sampler(&sampler_state)?;
            }
        }
        if let Some(d) = &trainer.dist {
            d.broadcast_params(&trainer.vs)?;
        }
        trainer.shard_experts()?;
        Ok(trainer)
    }

    /// Under expert parallelism, keeps only this rank's experts and rebuilds the optimizer
    /// over the shards, its state (restored or fresh) narrowed to them.
    fn shard_experts(&mut self) -> Result<()> {
        let Some(d) = &mut self.dist else {
            return Ok(());
        };
        let state = self.opt.state_tensors()?;
        d.shard_experts(&self.model, &self.vs)?;
        if !d.shards_experts() {
            return Ok(());
        }
        let origin = self.last_checkpoint.as_ref().map_or_else(
            || PathBuf::from("the initial optimizer state"),
            |c| c.join(OPTIMIZER_FILE),
        );
        let state = d.shard_state(state, &origin)?;
        let d = &*d;
        let mut opt = AdamW::with_partitions(
            trainable(&self.vs, &self.cfg.train.train_only)?,
            self.cfg.train.optimizer,
            crate::optim::default_decays,
            |name| d.partition(name),
        )?;
        opt.load_tensors(state, &origin)?;
        self.opt = opt;
        Ok(())
    }

    /// Gathers every rank's experts (`true`) or returns to this rank's shard (`false`), under
    /// sharded expert parallelism; collective over the expert-parallel group.
    fn set_experts_gathered(&self, gathered: bool) -> Result<()> {
        match &self.dist {
            Some(d) => d.set_experts_gathered(&self.model, gathered),
            None => Ok(()),
        }
    }

    fn restore(&mut self, dir: &Path) -> Result<()> {
        let saved_path = dir.join(RUN_CONFIG_FILE);
        let saved = RunConfig::load(Some(&saved_path), &[])?;
        // Everything that shapes the per-step computation must match (RESUMABLE_KEYS lists
        // what may change); every key that differs is named.
        let changes = config_changes(&saved, &self.cfg);
        if !changes.is_empty() {
            return Err(refuse_changes(dir, &saved_path, &changes));
        }
        load_weights(&self.vs, &dir.join(MODEL_FILE)).map_err(model_err)?;
        let optimizer = dir.join(OPTIMIZER_FILE);
        if !optimizer.is_file() {
            return Err(invalid(
                "resume",
                format!(
                    "{} holds no optimizer state (the run had `train.save_optimizer = false`), \
                     so it cannot be resumed exactly; start it from its weights with \
                     `train.init_checkpoint` instead",
                    dir.display()
                ),
            ));
        }
        self.opt.load(optimizer)?;
        self.state = TrainerState::read(dir.join(TRAINER_STATE_FILE))?;
        let sampler_state: SamplerState = self.state.sampler()?;
        let step = self
            .sampler
            .resume(&sampler_state)
            .map_err(crate::run_data::data_err)?;
        if step != self.state.step {
            return Err(invalid(
                "resume",
                format!("sampler at step {step} but trainer at {}", self.state.step),
            ));
        }
        // The logs keep one history: what was logged after the checkpoint moves aside (the
        // resumed run logs those steps again), nothing is deleted.
        if self.is_rank0() {
            for file in [METRICS_FILE, EVAL_FILE] {
                let path = self.run_dir.join(file);
                let moved = rewind_log(&path, self.state.step)?;
                if moved > 0 {
                    eprintln!(
                        "taskmoe: --resume from step {}: {moved} later lines of {file} moved to {}",
                        self.state.step,
                        superseded_path(&path).display()
                    );
                }
            }
        }
        self.last_checkpoint = Some(dir.to_path_buf());
        Ok(())
    }

    /// The step whose checkpoint rotation keeps (`train.keep_best`).
    fn best_step(&self) -> Option<u64> {
        self.cfg
            .train
            .keep_best
            .then(|| self.state.best.as_ref().map(|b| b.step))
            .flatten()
    }

    /// Loads the weights of the best checkpoint (`train.keep_best`) into the model, for a
    /// final test with early stopping; returns its step, or `None` (weights unchanged) when
    /// no evaluation set a best.
    pub fn restore_best(&mut self) -> Result<Option<u64>> {
        let Some(step) = self.state.best.as_ref().map(|b| b.step) else {
            return Ok(None);
        };
        let file = self
            .run_dir
            .join(format!("checkpoint-{step}"))
            .join(MODEL_FILE);
        load_weights(&self.vs, &file).map_err(model_err)?;
        Ok(Some(step))
    }

    /// The device the model trains on (in a CUDA job, this rank's GPU, `cuda:LOCAL_RANK`).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The model.
    pub fn model(&self) -> &MultiTaskModel {
        &self.model
    }

    /// The parameters (for inspection, or tests that corrupt a weight).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The loop's state.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The run folder.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// What was imported from `train.init_from` (fresh runs only).
    pub fn import_report(&self) -> Option<&ImportReport> {
        self.import.as_ref()
    }

    /// The data-parallel job, if this process is a rank of one.
    pub fn distributed(&self) -> Option<&Distributed> {
        self.dist.as_ref()
    }

    /// Whether this process writes logs and checkpoints (rank 0, or a single process).
    pub fn is_rank0(&self) -> bool {
        self.dist.as_ref().is_none_or(Distributed::is_rank0)
    }

    /// The newest checkpoint written or resumed from.
    pub fn last_checkpoint(&self) -> Option<&Path> {
        self.last_checkpoint.as_deref()
    }

    /// Trains until `train.steps`, or until `stop_after` more steps when given (tests use it
    /// to stop mid-run). Evaluates every `eval_every` steps and at the end through `evaluate`.
    /// In a data-parallel job every rank calls `evaluate`, with all experts at hand, so that
    /// the ranks can share the work ([`Distributed::evaluation_group`]); rank 0's point is
    /// logged and its score tracked, and every rank must return a score of the same name (or
    /// none), whose value the others may leave as NaN. It
    /// then checkpoints every `checkpoint_every` steps, at the end, and (with
    /// `train.keep_best`) at every evaluation that sets a new best. A skipped step is warned
    /// about through `progress`, and more than `train.max_skipped_steps` of them is an error.
    /// After an interrupt ([`crate::request_interrupt`], or SIGINT with
    /// [`crate::install_interrupt_handler`]) the step being taken is finished and
    /// checkpointed, and [`TrainError::Interrupted`] is returned.
    pub fn train(
        &mut self,
        evaluate: &mut dyn FnMut(&MultiTaskModel, u64) -> Result<EvalPoint>,
        progress: &mut dyn Progress,
        stop_after: Option<u64>,
    ) -> Result<()> {
        let total = self.cfg.train.steps;
        let last = stop_after.map_or(total, |n| (self.state.step + n).min(total));
        // Ranks other than 0 train silently and write nothing.
        let rank0 = self.is_rank0();
        let mut silent = Silent;
        let progress: &mut dyn Progress = if rank0 { progress } else { &mut silent };
        progress.start(total, self.state.step);
        let metrics_path = self.run_dir.join(METRICS_FILE);
        let mut metrics = if rank0 {
            Some(append(&metrics_path)?)
        } else {
            None
        };
        let skipped_before = self.state.skipped_steps;
        self.set_experts_gathered(false)?;
        while self.state.step < last {
            let started = Instant::now();
            let mut log = self.step()?;
            self.state.elapsed_secs += started.elapsed().as_secs_f64();
            log.elapsed_s = self.state.elapsed_secs;
            if let Some(metrics) = &mut metrics {
                writeln!(
                    metrics,
                    "{}",
                    serde_json::to_string(&log).expect("logs serialize")
                )
                .map_err(io(&metrics_path))?;
            }
            progress.step(&log);
            let step = self.state.step;
            if let Some(reason) = &log.skip_reason {
                progress.message(&format!(
                    "warning: step {step}: update skipped, {reason} ({} skipped so far, \
                     train.max_skipped_steps = {})",
                    self.state.skipped_steps, self.cfg.train.max_skipped_steps
                ));
                if self.state.skipped_steps > self.cfg.train.max_skipped_steps {
                    return Err(TrainError::TooManySkipped {
                        step,
                        skipped: self.state.skipped_steps,
                        max: self.cfg.train.max_skipped_steps,
                        what: reason.clone(),
                    });
                }
            }
            let every = |n: u64| n > 0 && step % n == 0;
            let mut new_best = false;
            let evaluate_now = every(self.cfg.train.eval_every) || step == total;
            if evaluate_now {
                // Every rank evaluates (the caller may share the work), on all experts.
                self.set_experts_gathered(true)?;
                new_best = self.evaluate(evaluate, progress)?;
                self.set_experts_gathered(false)?;
            }
            let mut stop = interrupted();
            if let Some(d) = &self.dist {
                // Every rank takes the same checkpoint decision: an interrupt seen by any rank
                // stops them all (the new best is already the same everywhere).
                stop = d.sum(&[f64::from(u8::from(stop))])?[0] > 0.0;
            }
            let checkpoint_now = every(self.cfg.train.checkpoint_every)
                || step == total
                || (new_best && self.cfg.train.keep_best);
            if checkpoint_now || stop {
                if let Some(metrics) = &mut metrics {
                    metrics.flush().map_err(io(&metrics_path))?;
                }
                let dir = match self.checkpoint_collective()? {
                    Some(dir) => {
                        progress.message(&format!("step {step}: checkpoint {}", dir.display()));
                        dir
                    }
                    None => self.run_dir.join(format!("checkpoint-{step}")),
                };
                // No rank runs ahead of a checkpoint that is still being written.
                if let Some(d) = &self.dist {
                    d.barrier()?;
                }
                if stop {
                    progress.finish();
                    return Err(TrainError::Interrupted {
                        step,
                        checkpoint: dir,
                    });
                }
            }
        }
        progress.finish();
        // The trained model, whole on every rank (for a final test on rank 0).
        self.set_experts_gathered(true)?;
        let skipped = self.state.skipped_steps - skipped_before;
        if skipped > 0 {
            progress.message(&format!(
                "warning: {skipped} of the steps taken were skipped for non-finite values \
                 (train.nonfinite = \"skip-step\"; counted in trainer_state.json)"
            ));
        }
        Ok(())
    }

    /// Runs the caller's evaluation (on every rank), logs it (rank 0) and records rank 0's
    /// score on every rank; returns whether it set a new best.
    fn evaluate(
        &mut self,
        evaluate: &mut dyn FnMut(&MultiTaskModel, u64) -> Result<EvalPoint>,
        progress: &mut dyn Progress,
    ) -> Result<bool> {
        let step = self.state.step;
        let (device, precision) = (self.device, self.cfg.train.precision);
        let mut point = tch::no_grad(|| {
            taskmoe_device::autocast(device, precision, || evaluate(&self.model, step))
        })?;
        if let Some(d) = &self.dist {
            point.score = rank0_score(d, point.score.take(), step)?;
        }
        let mut new_best = false;
        if let Some((name, value, higher)) = &point.score {
            if value.is_finite() {
                new_best = self.state.update_best(name, *value, *higher)?;
            }
        }
        if !self.is_rank0() {
            return Ok(new_best);
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut record = serde_json::json!({ "step": step, "time": time });
        if let (Some(map), serde_json::Value::Object(extra)) =
            (record.as_object_mut(), &point.record)
        {
            map.extend(extra.clone());
        }
        let path = self.run_dir.join(EVAL_FILE);
        writeln!(append(&path)?, "{record}").map_err(io(&path))?;
        if let Some((name, value, _)) = point.score {
            progress.message(&format!("step {step}: {name} = {value:.4}"));
        }
        Ok(new_best)
    }

    /// One optimizer step on the batch of the current step: [`Objective::step`] with the run's
    /// guard ([`RunGuard`]: the job's reductions, the non-finite and loss-spike policy).
    fn step(&mut self) -> Result<StepLog> {
        let step = self.state.step;
        let started = Instant::now();
        // Dropout seeds and router noise come from the global generator: the whole step holds
        // it, so its draws are a function of (seed, step, rank) alone.
        let _rng = taskmoe_device::lock_global_rng();
        let (rank, world) = self
            .dist
            .as_ref()
            .map_or((0, 1), |d| (d.rank(), d.world_size()));
        tch::manual_seed(rank_step_seed(self.cfg.train.seed, step, rank));
        let batch = if world > 1 {
            self.sampler
                .shard(step, rank, world)
                .map_err(crate::run_data::data_err)?
        } else {
            self.sampler.batch(step)
        };
        let t = batch
            .to_tensors(self.device)
            .map_err(crate::run_data::data_err)?;
        let mut guard = RunGuard {
            train: &self.cfg.train,
            dist: self.dist.as_ref(),
            task_ids: &batch.task_ids,
            task_names: &self.task_names,
            recent_losses: &self.state.recent_losses,
            // Steps are named 1-based, as in metrics.jsonl.
            step: step + 1,
            checkpoint: self
                .last_checkpoint
                .as_ref()
                .map_or("none yet".to_string(), |p| p.display().to_string()),
            tokens: batch.attention_mask.iter().filter(|&&m| m != 0).count(),
            task_losses: BTreeMap::new(),
        };
        let lr = self.cfg.optimizer_schedule().lr(step);
        let outcome = self
            .objective
            .step(&self.model, &mut self.opt, &t, lr, &mut guard)?;
        let (tokens, task_losses) = (guard.tokens, guard.task_losses);
        match outcome.skipped {
            None => self.state.record_loss(outcome.values.loss),
            Some(_) => self.state.skipped_steps += 1,
        }
        self.state.step += 1;
        self.state.examples_seen += (batch.len() * world) as u64;
        let sampler_state = self.sampler.state(self.state.step);
        self.state.set_sampler(&sampler_state)?;
        let seconds = started.elapsed().as_secs_f64();
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let values = outcome.values;
        Ok(StepLog {
            step: self.state.step,
            time,
            elapsed_s: self.state.elapsed_secs + seconds,
            loss: values.loss,
            task_loss: values.task_loss,
            task_losses,
            aux: values.aux,
            lr,
            grad_norm: outcome.grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
            expert_load: values.expert_load,
            dropped: values.dropped,
            top1_prob: values.top1_prob,
            skipped: outcome.skipped.is_some(),
            skip_reason: outcome.skipped,
        })
    }

    /// [`Trainer::checkpoint`] in a multi-process job: every rank calls it; the experts and
    /// their moments are gathered from their shards first (if sharded) and rank 0 writes.
    /// Returns the folder rank 0 wrote (`None` on the other ranks).
    fn checkpoint_collective(&mut self) -> Result<Option<PathBuf>> {
        let Some(d) = &self.dist else {
            return self.checkpoint().map(Some);
        };
        if !d.shards_experts() {
            return match self.is_rank0() {
                true => self.checkpoint().map(Some),
                false => Ok(None),
            };
        }
        let state = match self.cfg.train.save_optimizer {
            true => d.gathered_state(&self.opt)?,
            false => Vec::new(),
        };
        self.set_experts_gathered(true)?;
        let written = match self.is_rank0() {
            true => Some(self.write_checkpoint(&state)?),
            false => None,
        };
        self.set_experts_gathered(false)?;
        Ok(written)
    }

    /// Writes `checkpoint-{step}/` atomically and rotates old ones (a single process, or rank 0
    /// of a job whose experts are not sharded).
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        if self.dist.as_ref().is_some_and(Distributed::shards_experts) {
            return Err(invalid(
                "checkpoint",
                "this rank stores only its share of the experts: every rank of the job \
                 checkpoints together (the training loop does), so that they are gathered first",
            ));
        }
        let state = match self.cfg.train.save_optimizer {
            true => self.opt.state_tensors()?,
            false => Vec::new(),
        };
        self.write_checkpoint(&state)
    }

    /// Writes `checkpoint-{step}/` with the optimizer state `state` (unused with
    /// `train.save_optimizer = false`).
    fn write_checkpoint(&mut self, state: &[(String, Tensor)]) -> Result<PathBuf> {
        let step = self.state.step;
        let card = ModelCard {
            model: self.cfg.model.clone(),
            heads: self.model.heads().to_vec(),
        };
        let config_text = self.cfg.to_toml();
        let best = self.best_step();
        self.writer.protect(best);
        let assets = &self.assets;
        let ckpt = self.writer.write(step, |files| -> Result<()> {
            save_weights(&self.vs, &files.path(MODEL_FILE)?, ExportDtype::F32)
                .map_err(model_err)?;
            if self.cfg.train.save_optimizer {
                Tensor::write_safetensors(state, files.path(OPTIMIZER_FILE)?)?;
            }
            save_card(&card, &files.path(MODEL_CARD_FILE)?).map_err(model_err)?;
            files.write_bytes(RUN_CONFIG_FILE, config_text.as_bytes())?;
            files.write_json(TRAINER_STATE_FILE, &self.state)?;
            assets.write(files)?;
            Ok(())
        })?;
        self.last_checkpoint = Some(ckpt.dir.clone());
        Ok(ckpt.dir)
    }
}

/// A checkpoint folder as given, or the newest complete checkpoint of a run folder.
pub fn resolve_checkpoint(dir: &Path) -> Result<PathBuf> {
    if dir.join(MODEL_FILE).is_file() {
        return Ok(dir.to_path_buf());
    }
    match latest_complete(dir)? {
        Some(ckpt) => Ok(ckpt.dir),
        None => Err(invalid(
            "checkpoint",
            format!(
                "{} is neither a checkpoint folder (no {MODEL_FILE}) nor a run folder with a \
                 complete checkpoint",
                dir.display()
            ),
        )),
    }
}

/// Rank 0's evaluation score, on every rank of the job (collective): its name and direction
/// from this rank's own `score`, which must be given exactly when rank 0's is.
fn rank0_score(
    d: &Distributed,
    score: Option<(String, f64, bool)>,
    step: u64,
) -> Result<Option<(String, f64, bool)>> {
    let mine = match (&score, d.is_rank0()) {
        (Some((_, value, _)), true) => [1.0, *value],
        _ => [0.0, 0.0],
    };
    let agreed = d.sum(&mine)?;
    match (score, agreed[0] > 0.0) {
        (Some((name, _, higher)), true) => Ok(Some((name, agreed[1], higher))),
        (None, false) => Ok(None),
        (score, _) => Err(invalid(
            "evaluation",
            format!(
                "step {step}: rank {} {} a score and rank 0 {}: every rank's evaluation must \
                 name the same score (its value is taken from rank 0)",
                d.rank(),
                if score.is_some() {
                    "returned"
                } else {
                    "returned no"
                },
                if agreed[0] > 0.0 { "did" } else { "did not" }
            ),
        )),
    }
}

/// A model-crate error as a training error.
pub(crate) fn model_err(e: taskmoe_model::ModelError) -> TrainError {
    invalid("model", e.to_string())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))
}

/// The parameters the optimizer updates: all of them, or (`train.train_only`) those whose name
/// contains one of `only`; the others stop requiring gradients, so backward skips them. A
/// pattern that matches nothing is an error naming it.
fn trainable(vs: &nn::VarStore, only: &[String]) -> Result<Vec<(String, Tensor)>> {
    let all: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    if only.is_empty() {
        return Ok(all);
    }
    for pattern in only {
        if !all.iter().any(|(name, _)| name.contains(pattern.as_str())) {
            return Err(invalid(
                "config",
                format!("key `train.train_only`: `{pattern}` matches no parameter"),
            ));
        }
    }
    let mut kept = Vec::new();
    for (name, tensor) in all {
        if only.iter().any(|p| name.contains(p.as_str())) {
            kept.push((name, tensor));
        } else {
            let _ = tensor.set_requires_grad(false);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_of_a_cuda_job_takes_the_gpu_of_its_local_rank() {
        assert_eq!(rank_device(Device::Cuda(0), 3, 4).unwrap(), Device::Cuda(3));
        assert_eq!(rank_device(Device::Cpu, 3, 0).unwrap(), Device::Cpu);
        let err = rank_device(Device::Cuda(0), 2, 2).unwrap_err().to_string();
        assert!(
            err.contains("LOCAL_RANK = 2") && err.contains("2 CUDA device"),
            "{err}"
        );
    }
}
