//! The training crate's error type.
//!
//! Errors about a file name the file; errors about optimizer state name the parameters that are
//! missing, extra or mis-shaped, so a mismatched checkpoint can be diagnosed from the message.

use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong in the optimizer, the schedules, the checkpoints and the trainer state.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A JSON file (trainer state, checkpoint manifest) does not parse or match its schema.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// A config value is out of range or inconsistent.
    #[error("{what}: {message}")]
    Invalid {
        /// The object that is wrong (`schedule`, `adamw`, `checkpoint writer`...).
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A loss or gradient norm is NaN or infinite and the policy is `error`.
    #[error("step {step}: {what} is not finite ({value})")]
    NonFinite {
        /// The optimizer step at which it happened.
        step: u64,
        /// What was not finite (`loss`, `gradient norm`).
        what: String,
        /// The value.
        value: f64,
    },
    /// A checkpoint directory is incomplete or its files do not match its manifest.
    #[error("{path}: incomplete checkpoint: {message}")]
    IncompleteCheckpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is missing or wrong.
        message: String,
    },
    /// The caller's file-writing callback failed while a checkpoint was written.
    #[error("writing checkpoint {path}: {source}")]
    WriteCallback {
        /// The temporary directory the callback was writing into.
        path: PathBuf,
        /// The callback's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Training stopped on an interrupt (Ctrl-C) after finishing a step and checkpointing it.
    #[error(
        "interrupted after step {step}; checkpoint {checkpoint} is complete: continue with the \
         same command and --resume"
    )]
    Interrupted {
        /// The last step taken.
        step: u64,
        /// The checkpoint written for it.
        checkpoint: PathBuf,
    },
    /// More steps were skipped under `nonfinite = "skip-step"` than `train.max_skipped_steps`.
    #[error(
        "step {step}: {skipped} steps skipped for non-finite values, more than \
         train.max_skipped_steps = {max} (last: {what}); lower the learning rate or raise the cap"
    )]
    TooManySkipped {
        /// The step of the skip that went over the cap.
        step: u64,
        /// Steps skipped so far.
        skipped: u64,
        /// The cap.
        max: u64,
        /// What was not finite at the last skip.
        what: String,
    },
    /// `--resume` found no usable checkpoint; nothing was written.
    #[error("--resume: nothing to resume in {run_dir}: {found}\nno file was changed")]
    NothingToResume {
        /// The run folder.
        run_dir: PathBuf,
        /// What the folder holds, and why each checkpoint was rejected.
        found: String,
    },
    /// A resume's configuration differs from the checkpoint's in keys that shape the steps.
    #[error("cannot resume from {checkpoint}: the configuration changed:\n{changes}")]
    ConfigChanged {
        /// The checkpoint the resume would start from.
        checkpoint: PathBuf,
        /// Every key that differs, with its saved and current values, and what may change.
        changes: String,
    },
    /// A fresh run was started in a folder that holds an earlier run.
    #[error(
        "{run_dir} already holds {held}: pass --resume to continue it, or set output.name to \
         start another run"
    )]
    RunExists {
        /// The run folder.
        run_dir: PathBuf,
        /// What it holds (checkpoints, or logs).
        held: String,
    },
    /// A finite loss exploded past `train.loss_spike_factor` times its running median and the
    /// policy is `error`.
    #[error(
        "step {step}: the loss {loss:e} is over train.loss_spike_factor = {factor:e} times its \
         running median {median:e}{context}"
    )]
    LossSpike {
        /// The optimizer step (1-based).
        step: u64,
        /// The loss.
        loss: f64,
        /// The running median of the recent losses.
        median: f64,
        /// The factor.
        factor: f64,
        /// Which task, and the last good checkpoint.
        context: String,
    },
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// The model crate refused (a configuration, weights that do not fit, an import).
    #[error("model: {0}")]
    Model(#[from] taskmoe_model::ModelError),
    /// The data crate refused (a data file, a task name, a batch).
    #[error("data: {0}")]
    Data(#[from] taskmoe_data::DataError),
    /// A collective of the data-parallel job failed.
    #[error("distributed: {0}")]
    Dist(#[from] taskmoe_dist::DistError),
    /// The optimizer or its schedule refused (a setting, a state file that does not fit).
    #[error(transparent)]
    Optim(#[from] taskmoe_optim::OptimError),
    /// The device or precision asked for is not available.
    #[error("device: {0}")]
    Device(#[from] taskmoe_device::DeviceError),
}

/// `Result` with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;

/// Builds a [`TrainError::Invalid`].
pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> TrainError {
    TrainError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}

/// Wraps an IO error with its path.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
