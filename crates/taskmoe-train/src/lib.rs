//! Training foundations for taskmoe: an optimizer whose state can be saved, gradient clipping,
//! learning-rate schedules, atomic checkpoints and the loop's own state.
//!
//! The training layer of taskmoe (see `docs/architecture.md`); it joins the model and the data
//! crates, and these foundations depend on neither. A training step uses them in this order:
//!
//! 1. the loss goes through [`NonFinitePolicy::check`] (error or skip the step);
//! 2. after the backward pass, [`clip_grad_norm`] (or [`AdamW::clip_grad_norm`]) clips the
//!    gradients to a global L2 norm and returns the norm before clipping, which is checked too;
//! 3. [`ScheduleConfig::lr`] gives the step's learning rate, a pure function of the step;
//! 4. [`AdamW::step`] updates the named parameters with decoupled weight decay for the decay
//!    group ([`default_decays`]), then [`AdamW::zero_grad`];
//! 5. every so often, [`CheckpointWriter::write`] makes `checkpoint-{step}/` atomically from the
//!    model weights, [`AdamW::save`] and the [`TrainerState`], and [`latest_verified`] finds the
//!    checkpoint to resume from.
//!
//! tch's built-in optimizers cannot export their Adam moments, which is why [`AdamW`] is
//! implemented here over plain tensors (DESIGN.md section 4).

#![warn(missing_docs)]

mod assets;
mod checkpoint;
mod config_docs;
mod config_sections;
mod distributed;
mod error;
mod inference;
mod init;
mod interrupt;
mod json_float;
mod moved_keys;
mod nonfinite;
mod objective;
pub mod optim;
mod overrides;
mod resume;
mod run_config;
mod run_data;
mod run_folder;
mod run_guard;
mod run_lock;
mod run_log;
mod schedule;
mod trained_run;
mod trainer;
mod trainer_state;

pub use assets::RunAssets;
pub use checkpoint::{
    checkpoint_dir, clean_stale_temp_dirs, latest_verified, list_checkpoints, resolve_checkpoint,
    Checkpoint, CheckpointFiles, CheckpointWriter, Latest, Manifest, ManifestEntry, MANIFEST_FILE,
};
pub use config_docs::{annotate, key_docs};
pub use config_sections::{
    CheckpointConfig, EvalConfig, InitConfig, OptimConfig, OutputConfig, RuntimeConfig,
    TestCheckpoint, TrainConfig,
};
pub use distributed::{Distributed, ExpertGroup};
pub use error::{Result, TrainError};
pub use inference::{checkpoint_tokenizer, Inference};
pub use interrupt::{clear_interrupt, install_interrupt_handler, interrupted, request_interrupt};
pub use moved_keys::{migrate_table, moved_key, MOVED_KEYS};
pub use nonfinite::{
    loss_spike, NonFinitePolicy, StepAction, LOSS_MEDIAN_FLOOR, LOSS_WINDOW, LOSS_WINDOW_MIN,
};
pub use objective::{
    model_input, BatchLoss, Objective, StepGuard, StepOutcome, StepValues, Timed, Unguarded,
};
pub use optim::{clip_grad_norm, default_decays, grad_norm, AdamW, AdamWConfig};
pub use overrides::{apply_overrides, deserialize_layered, deserialize_with_path, merge_tables};
pub use resume::{config_changes, rewind_log, superseded_path, KeyChange, RESUMABLE_KEYS};
pub use run_config::{DataConfig, DataSource, RunConfig};
pub use run_data::{load_tokenizer, RunData, SkippedRows};
pub use run_folder::{
    EVAL_FILE, METRICS_FILE, MODEL_CARD_FILE, MODEL_FILE, OPTIMIZER_FILE, RUN_CONFIG_FILE,
    TASKS_FILE, TOKENIZER_JSON, VOCAB_TXT,
};
pub use run_lock::{RunLock, LOCK_FILE};
pub use run_log::{EvalPoint, Progress, Silent, StepLog};
pub use schedule::{Decay, ScheduleConfig};
pub use trained_run::TrainedRun;
pub use trainer::Trainer;
pub use trainer_state::{BestMetric, TrainerState, TRAINER_STATE_FILE, TRAINER_STATE_VERSION};
