//! The training loop: sample, forward, losses, backward, clip, AdamW, log, evaluate,
//! checkpoint; resumable bit for bit from any complete checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{nn, Device, Tensor};

use taskmoe_data::{Sampler, SamplerState};
use taskmoe_model::{
    save_card, save_weights, ExportDtype, ImportReport, ModelCard, MultiTaskModel,
};

use crate::assets::RunAssets;
use crate::checkpoint::{checkpoint_dir, Checkpoint, CheckpointWriter};
use crate::distributed::Distributed;
use crate::error::{invalid, Result, TrainError};
use crate::frozen_cache::{attach_frozen_states, save_if_grown, FrozenStatesReport};
use crate::init::{initialise, trainable};
use crate::interrupt::interrupted;
use crate::objective::Objective;
use crate::resume::{config_changes, refuse_changes};
use crate::run_config::RunConfig;
use crate::run_data::RunData;
use crate::run_folder::{
    open_for_training, rewind_logs, start_fresh, MODEL_CARD_FILE, MODEL_FILE, OPTIMIZER_FILE,
    RUN_CONFIG_FILE,
};
use crate::run_guard::RunGuard;
use crate::run_lock::RunLock;
use crate::run_log::{unix_time, EvalPoint, Progress, RunLog, Silent, StepLog};
use crate::trainer_state::{TrainerState, TRAINER_STATE_FILE};
use taskmoe_optim::AdamW;

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
    /// The memo of the frozen blocks' states (`model.frozen_layers`), as attached.
    frozen: Option<FrozenStatesReport>,
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
        if cfg.runtime.threads > 0 {
            tch::set_num_threads(cfg.runtime.threads as i32);
        }
        // A job's rank already chose its device (`cuda:LOCAL_RANK` on CUDA) to pick its backend.
        let device = match &dist {
            Some(d) => d.device(),
            None => taskmoe_device::select_named(&cfg.runtime.device)?,
        };
        taskmoe_device::check_precision(cfg.runtime.precision)?;
        let run_dir = cfg.run_dir();
        let folder = open_for_training(&run_dir, resume, dist.as_ref())?;
        // Initialisation (and upcycling noise) draw from the global generator: hold it, so a
        // run's weights are a function of its seed whatever else runs in the process.
        let _rng = taskmoe_device::lock_global_rng();
        tch::manual_seed(step_seed(cfg.train.seed, u64::MAX));
        let vs = nn::VarStore::new(device);
        let build = || MultiTaskModel::new(&vs.root(), &cfg.model, &data.heads());
        let model = match cfg.init.paired {
            true => taskmoe_device::keyed_initialisation(cfg.train.seed, build)?,
            false => build()?,
        };
        // What draws after the model (upcycling noise, Drop-Upcycling) starts from a state of
        // its own, not from wherever the model's last module left the generator.
        tch::manual_seed(step_seed(cfg.train.seed, u64::MAX - 1));
        if let Some(d) = &dist {
            d.attach_experts(&model)?;
        }
        let opt = AdamW::new(trainable(&vs, cfg)?, cfg.optim.adamw())?;
        let task_names: Vec<String> = data.specs.iter().map(|s| s.name.clone()).collect();
        let mut trainer = Trainer {
            cfg: cfg.clone(),
            device,
            vs,
            model,
            opt,
            sampler: data.sampler(cfg)?,
            state: TrainerState::new(cfg.train.seed),
            writer: CheckpointWriter::new(&run_dir, Some(cfg.checkpoint.keep_last))?,
            objective: Objective::new(cfg, &task_names, device),
            task_names,
            last_checkpoint: None,
            import: None,
            assets: RunAssets::from_run(cfg, data)?,
            frozen: None,
            _lock: folder.lock,
            run_dir,
            dist,
        };
        match folder.resume_from {
            Some(ckpt) => trainer.restore(&ckpt)?,
            None => {
                trainer.import = initialise(&trainer.model, &trainer.vs, cfg, data)?;
                if trainer.is_rank0() {
                    start_fresh(&trainer.run_dir, cfg)?;
                }
                let sampler_state = trainer.sampler.state(0);
                trainer.state.set_sampler(&sampler_state)?;
            }
        }
        if let Some(d) = &trainer.dist {
            d.broadcast_params(&trainer.vs)?;
        }
        // After the broadcast: every rank's frozen weights, hence its memo key, are rank 0's.
        let write = trainer.is_rank0();
        trainer.frozen =
            attach_frozen_states(&mut trainer.model, &trainer.vs, cfg, data, device, write)?;
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
            trainable(&self.vs, &self.cfg)?,
            self.cfg.optim.adamw(),
            taskmoe_optim::default_decays,
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

    /// Continues from `ckpt`: its configuration must match (every key outside
    /// [`crate::RESUMABLE_KEYS`] that differs is named), then weights, optimizer state, the
    /// loop's state and the sampler are restored and the logs rewound to its step.
    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        let dir = &ckpt.dir;
        let saved_path = ckpt.file(RUN_CONFIG_FILE);
        let saved = RunConfig::load_saved(&saved_path, &[])?;
        let changes = config_changes(&saved, &self.cfg);
        if !changes.is_empty() {
            return Err(refuse_changes(dir, &saved_path, &changes));
        }
        ckpt.load_weights(&self.vs)?;
        let state = TrainerState::read(ckpt.file(TRAINER_STATE_FILE))?;
        let optimizer = ckpt.file(OPTIMIZER_FILE);
        match optimizer.is_file() {
            true => self.opt.load(optimizer)?,
            // At the last step nothing is left to train: the run resumes into its final test.
            false if state.step >= self.cfg.train.steps => {}
            false => {
                return Err(invalid(
                    "resume",
                    format!(
                        "{} holds no optimizer state (the run had `checkpoint.save_optimizer = \
                         false`, or `checkpoint.final_optimizer = false` and this was its last \
                         step), so it cannot be resumed exactly; start it from its weights with \
                         `init.checkpoint` instead",
                        dir.display()
                    ),
                ))
            }
        }
        self.state = state;
        let sampler_state: SamplerState = self.state.sampler()?;
        let step = self.sampler.resume(&sampler_state)?;
        if step != self.state.step {
            return Err(invalid(
                "resume",
                format!("sampler at step {step} but trainer at {}", self.state.step),
            ));
        }
        if self.is_rank0() {
            rewind_logs(&self.run_dir, self.state.step)?;
        }
        self.last_checkpoint = Some(dir.clone());
        Ok(())
    }

    /// The step whose checkpoint rotation keeps (`checkpoint.keep_best`).
    fn best_step(&self) -> Option<u64> {
        self.cfg
            .checkpoint
            .keep_best
            .then(|| self.state.best.as_ref().map(|b| b.step))
            .flatten()
    }

    /// Loads the weights of the best checkpoint (`checkpoint.keep_best`) into the model, for a
    /// final test with early stopping; returns its step, or `None` (weights unchanged) when
    /// no evaluation set a best.
    pub fn restore_best(&mut self) -> Result<Option<u64>> {
        let Some(step) = self.state.best.as_ref().map(|b| b.step) else {
            return Ok(None);
        };
        Checkpoint::open(checkpoint_dir(&self.run_dir, step))?.load_weights(&self.vs)?;
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

    /// The optimizer (its parameters, their state).
    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }

    /// The loop's state.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The run folder.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// What was imported from `init.from` (fresh runs only).
    pub fn import_report(&self) -> Option<&ImportReport> {
        self.import.as_ref()
    }

    /// What attaching the frozen blocks' states did (`model.frozen_layers`; `None` without).
    pub fn frozen_states(&self) -> Option<&FrozenStatesReport> {
        self.frozen.as_ref()
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
    /// `checkpoint.keep_best`) at every evaluation that sets a new best. A skipped step is warned
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
        let mut log_files = match rank0 {
            true => {
                let config = self.cfg.output.tensorboard.then(|| self.cfg.to_toml());
                Some(RunLog::open(
                    &self.run_dir,
                    self.state.step,
                    config.as_deref(),
                )?)
            }
            false => None,
        };
        let skipped_before = self.state.skipped_steps;
        self.set_experts_gathered(false)?;
        // A run that `eval.patience` ended stays ended (it resumes into its final test).
        while self.state.step < last && self.state.stopped_early_at.is_none() {
            let started = Instant::now();
            let mut log = self.step()?;
            self.state.elapsed_secs += started.elapsed().as_secs_f64();
            log.elapsed_s = self.state.elapsed_secs;
            if let Some(files) = &mut log_files {
                files.step(&log)?;
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
            let evaluate_now = every(self.cfg.eval.every) || step == total;
            if evaluate_now {
                // Every rank evaluates (the caller may share the work), on all experts.
                self.set_experts_gathered(true)?;
                new_best = self.evaluate(evaluate, progress, log_files.as_ref())?;
                self.set_experts_gathered(false)?;
                self.count_patience(new_best, step, progress);
            }
            let stopped_early = self.state.stopped_early_at.is_some();
            let mut stop = interrupted();
            if let Some(d) = &self.dist {
                // Every rank takes the same checkpoint decision: an interrupt seen by any rank
                // stops them all (the new best is already the same everywhere).
                stop = d.sum(&[f64::from(u8::from(stop))])?[0] > 0.0;
            }
            let checkpoint_now = every(self.cfg.checkpoint.every)
                || step == total
                || stopped_early
                || (new_best && self.cfg.checkpoint.keep_best);
            if checkpoint_now || stop {
                if let Some(files) = &mut log_files {
                    files.flush()?;
                }
                let dir = match self.checkpoint_collective()? {
                    Some(dir) => {
                        progress.message(&format!("step {step}: checkpoint {}", dir.display()));
                        dir
                    }
                    None => checkpoint_dir(&self.run_dir, step),
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
        if let Some(files) = log_files {
            files.close()?;
        }
        if let (Some(report), true) = (&mut self.frozen, rank0) {
            // Evaluations may have added examples of tasks outside the training mixture.
            save_if_grown(&self.model, report)?;
        }
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

    /// Counts an evaluation at `step` toward `eval.patience` (only once a score is tracked)
    /// and ends the run (`stopped_early_at`) when that many in a row did not set a new best.
    /// Every rank takes the same decision: the best is the same everywhere.
    fn count_patience(&mut self, new_best: bool, step: u64, progress: &mut dyn Progress) {
        if self.state.best.is_none() {
            return;
        }
        self.state.evals_since_best = match new_best {
            true => 0,
            false => self.state.evals_since_best + 1,
        };
        let patience = self.cfg.eval.patience;
        if patience > 0 && self.state.evals_since_best >= patience && step < self.cfg.train.steps {
            self.state.stopped_early_at = Some(step);
            progress.message(&format!(
                "step {step}: {patience} evaluations without a better validation score: \
                 training stops here (eval.patience = {patience}; best at step {})",
                self.state.best.as_ref().map_or(0, |b| b.step)
            ));
        }
    }

    /// Runs the caller's evaluation (on every rank), logs it (rank 0) and records rank 0's
    /// score on every rank; returns whether it set a new best.
    fn evaluate(
        &mut self,
        evaluate: &mut dyn FnMut(&MultiTaskModel, u64) -> Result<EvalPoint>,
        progress: &mut dyn Progress,
        log_files: Option<&RunLog>,
    ) -> Result<bool> {
        let step = self.state.step;
        let (device, precision) = (self.device, self.cfg.runtime.precision);
        let mut point = tch::no_grad(|| {
            taskmoe_device::autocast(device, precision, || evaluate(&self.model, step))
        })?;
        if let Some(d) = &self.dist {
            point.score = d.rank0_score(point.score.take(), step)?;
        }
        let mut new_best = false;
        if let Some((name, value, higher)) = &point.score {
            if value.is_finite() {
                new_best = self.state.update_best(name, *value, *higher)?;
            }
        }
        let Some(files) = log_files else {
            return Ok(new_best);
        };
        files.evaluation(step, &point.record)?;
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
            self.sampler.shard(step, rank, world)?
        } else {
            self.sampler.batch(step)
        };
        let t = batch.to_tensors(self.device)?;
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
        self.model.set_training_step(step);
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
        let values = outcome.values;
        Ok(StepLog {
            step: self.state.step,
            time: unix_time(),
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
            gate_entropy: values.gate_entropy,
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
        let state = match self.saves_optimizer() {
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
        let state = match self.saves_optimizer() {
            true => self.opt.state_tensors()?,
            false => Vec::new(),
        };
        self.write_checkpoint(&state)
    }

    /// Whether the checkpoint of the current step holds the optimizer state
    /// (`checkpoint.save_optimizer`, and `checkpoint.final_optimizer` at the last step).
    fn saves_optimizer(&self) -> bool {
        let c = &self.cfg.checkpoint;
        c.save_optimizer && (c.final_optimizer || self.state.step < self.cfg.train.steps)
    }

    /// Writes `checkpoint-{step}/` with the optimizer state `state` (unused where
    /// [`Trainer::saves_optimizer`] says no).
    fn write_checkpoint(&mut self, state: &[(String, Tensor)]) -> Result<PathBuf> {
        let step = self.state.step;
        let card = ModelCard {
            model: self.cfg.model.clone(),
            heads: self.model.heads().to_vec(),
        };
        let config_text = self.cfg.to_saved_toml(&checkpoint_dir(&self.run_dir, step));
        let best = self.best_step();
        self.writer.protect(best);
        let assets = &self.assets;
        let with_optimizer = self.saves_optimizer();
        let ckpt = self.writer.write(step, |files| -> Result<()> {
            save_weights(&self.vs, &files.path(MODEL_FILE)?, ExportDtype::F32)?;
            if with_optimizer {
                Tensor::write_safetensors(state, files.path(OPTIMIZER_FILE)?)?;
            }
            save_card(&card, &files.path(MODEL_CARD_FILE)?)?;
            files.write_bytes(RUN_CONFIG_FILE, config_text.as_bytes())?;
            files.write_json(TRAINER_STATE_FILE, &self.state)?;
            assets.write(files)?;
            Ok(())
        })?;
        self.last_checkpoint = Some(ckpt.dir.clone());
        Ok(ckpt.dir)
    }
}
