//! Training for taskmoe: a resolved run configuration, its data, and the [`Trainer`] that runs
//! the one training step ([`Objective::step`]) in a run folder, with atomic, verified
//! checkpoints that resume bit for bit; plus the two ways back from a checkpoint
//! ([`TrainedRun`] with the run's data, [`Inference`] from the checkpoint's own files).
//!
//! ```
//! use taskmoe_train::{EvalPoint, RunConfig, RunData, Silent, Trainer};
//!
//! # fn main() -> taskmoe_train::Result<()> {
//! let out = std::env::temp_dir().join(format!("taskmoe-train-doc-{}", std::process::id()));
//! // The layering every run uses: preset, (a file), then `--set`-style overrides.
//! let cfg = RunConfig::load(
//!     None,
//!     &[
//!         "model.preset=tiny".into(),
//!         "model.vocab_size=128".into(), // the synthetic benchmark needs 69 ids
//!         "train.steps=4".into(),
//!         "schedule.warmup_steps=1".into(),
//!         "runtime.threads=1".into(),
//!         format!("output.dir={}", out.display()),
//!     ],
//! )?;
//! let data = RunData::load(&cfg)?; // the built-in synthetic benchmark
//! let mut trainer = Trainer::new(&cfg, &data, false)?;
//! // Evaluation is the caller's (taskmoe-eval from the CLI): here, none.
//! let mut evaluate = |_: &taskmoe_model::MultiTaskModel, _: u64| {
//!     Ok(EvalPoint { record: serde_json::json!({}), score: None })
//! };
//! trainer.train(&mut evaluate, &mut Silent, None)?;
//! assert_eq!(trainer.state().step, 4);
//! let checkpoint = trainer.last_checkpoint().unwrap().to_path_buf();
//! assert!(checkpoint.join(taskmoe_train::MODEL_FILE).is_file());
//! # drop(trainer);
//! # std::fs::remove_dir_all(&out).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! The rooms, in the order a run meets them, are listed in `docs/architecture.md` ("The
//! training loop"); the optimizer and schedules are the `taskmoe-optim` crate.

#![warn(missing_docs)]

mod assets;
mod checkpoint;
mod config_docs;
mod config_sections;
mod data_check;
mod distributed;
mod error;
mod frozen_cache;
mod inference;
mod init;
mod interrupt;
mod json_float;
mod moved_keys;
mod nonfinite;
mod objective;
mod overrides;
mod resume;
mod run_config;
mod run_data;
mod run_folder;
mod run_guard;
mod run_lock;
mod run_log;
mod saved_paths;
mod tensorboard;
mod trained_run;
mod trainer;
mod trainer_state;

pub use assets::RunAssets;
pub use checkpoint::{
    checkpoint_dir, latest_verified, list_checkpoints, resolve_checkpoint, Checkpoint,
    CheckpointFiles, CheckpointWriter, Latest, Manifest, ManifestEntry, MANIFEST_FILE,
};
pub use config_docs::annotate;
pub use config_sections::{
    CheckpointConfig, EvalConfig, InitConfig, OptimConfig, OutputConfig, RuntimeConfig,
    TestCheckpoint, TrainConfig,
};
pub use data_check::check_data;
pub use distributed::{Distributed, ExpertGroup};
pub use error::{Result, TrainError};
pub use frozen_cache::{cache_dir, frozen_states_file, FrozenStatesReport};
pub use inference::{checkpoint_tokenizer, Inference};
pub use init::trainable;
pub use interrupt::{clear_interrupt, install_interrupt_handler, interrupted, request_interrupt};
pub use moved_keys::{migrate_table, MOVED_KEYS};
pub use nonfinite::{NonFinitePolicy, StepAction};
pub use objective::{
    model_input, BatchLoss, Objective, StepGuard, StepOutcome, StepValues, Timed, Unguarded,
};
pub use overrides::{apply_overrides, deserialize_layered, merge_tables};
pub use resume::RESUMABLE_KEYS;
pub use run_config::{DataConfig, DataSource, RunConfig};
pub use run_data::{RunData, SkippedRows};
pub use run_folder::{
    EVAL_FILE, METRICS_FILE, MODEL_CARD_FILE, MODEL_FILE, OPTIMIZER_FILE, RUN_CONFIG_FILE,
    TASKS_FILE, TOKENIZER_JSON, VOCAB_TXT,
};
pub use run_lock::{RunLock, LOCK_FILE};
pub use run_log::{EvalPoint, Progress, Silent, StepLog};
pub use saved_paths::SAVED_IN;
pub use tensorboard::{event_files, read_scalars, TensorBoardLog, EVENTS_FILE_PREFIX};
pub use trained_run::TrainedRun;
pub use trainer::Trainer;
pub use trainer_state::{BestMetric, TrainerState, TRAINER_STATE_FILE, TRAINER_STATE_VERSION};
