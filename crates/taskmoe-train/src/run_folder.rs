//! The run folder: the names of the files a run writes, and how a training process opens the
//! folder (its lock, the checkpoint it resumes from, the logs a fresh run starts).
//!
//! ```text
//! RUN/
//!   .lock                 held while a process writes here (RunLock)
//!   config.toml           the resolved configuration, written before the first step
//!   metrics.jsonl         one line per step (StepLog)
//!   eval.jsonl            one line per evaluation
//!   events.out.tfevents.* TensorBoard events, one file per process start (tensorboard.rs)
//!   *.superseded.jsonl    log lines a resume moved aside (rewind_log)
//!   checkpoint-{step}/    written atomically, with a manifest (CheckpointWriter):
//!     model.safetensors  optimizer.safetensors  config.toml  config.json
//!     trainer_state.json  tasks.toml  vocab.txt | tokenizer.json  COMPLETE.json (manifest)
//! ```
//!
//! What may be resumed, and the refusals, are decided in `resume.rs`; this file carries them out
//! in the order that keeps a folder safe: lock first, then look.

use std::fs::{self, File};
use std::path::Path;

use crate::checkpoint::{latest_verified, list_checkpoints, Checkpoint};
use crate::distributed::Distributed;
use crate::error::{io_err, Result};
use crate::resume::{check_fresh_folder, nothing_to_resume, rewind_log, superseded_path};
use crate::run_config::RunConfig;
use crate::run_lock::RunLock;

/// The model weights in a checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimizer state in a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The resolved run configuration, in the run folder and in every checkpoint.
pub const RUN_CONFIG_FILE: &str = "config.toml";
/// The model card (`ModelConfig` + heads), enough to rebuild the model without the run config.
pub const MODEL_CARD_FILE: &str = "config.json";
/// Per-step training log in the run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Per-evaluation log in the run folder.
pub const EVAL_FILE: &str = "eval.jsonl";
/// The task registry of the run, as TOML, in every checkpoint.
pub const TASKS_FILE: &str = "tasks.toml";
/// A `tokenizer.json` copied into a checkpoint.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
/// A WordPiece `vocab.txt` copied (or, for synthetic data, written) into a checkpoint.
pub const VOCAB_TXT: &str = "vocab.txt";

/// A run folder opened for training: the lock (held by the process that writes, rank 0 or a
/// single process) and the checkpoint to resume from.
pub(crate) struct OpenedRunFolder {
    /// Held for as long as the trainer lives.
    pub lock: Option<RunLock>,
    /// The newest verified checkpoint (`None` for a fresh run).
    pub resume_from: Option<Checkpoint>,
}

/// Opens `run_dir` for `taskmoe train` (`resume`: `--resume`). A resume with no checkpoint
/// folder at all is refused before the lock, which would create the folder, so it changes no
/// file; otherwise the writer locks the folder before anything is looked at, so "is there a run
/// here?" and the writes that follow cannot interleave with another process. In a job every
/// rank must agree on the checkpoint.
pub(crate) fn open_for_training(
    run_dir: &Path,
    resume: bool,
    dist: Option<&Distributed>,
) -> Result<OpenedRunFolder> {
    if resume && list_checkpoints(run_dir)?.is_empty() {
        return Err(nothing_to_resume(run_dir, &latest_verified(run_dir)?));
    }
    // Only rank 0 writes the folder, so only rank 0 holds its lock.
    let lock = match dist.is_none_or(Distributed::is_rank0) {
        true => Some(RunLock::acquire(
            run_dir,
            match resume {
                true => "taskmoe train --resume",
                false => "taskmoe train",
            },
        )?),
        false => None,
    };
    let latest = latest_verified(run_dir)?;
    if resume {
        for line in latest.skipped_lines() {
            eprintln!("taskmoe: --resume {line}");
        }
    }
    if let Some(d) = dist {
        let step = latest.checkpoint.as_ref().map_or(u64::MAX, |c| c.step);
        d.agree("the checkpoint to resume from", step)?;
    }
    if resume && latest.checkpoint.is_none() {
        return Err(nothing_to_resume(run_dir, &latest));
    }
    if !resume {
        check_fresh_folder(run_dir)?;
    }
    Ok(OpenedRunFolder {
        lock,
        resume_from: if resume { latest.checkpoint } else { None },
    })
}

/// Starts a fresh run's folder: empty logs and the resolved configuration, before any step.
pub(crate) fn start_fresh(run_dir: &Path, cfg: &RunConfig) -> Result<()> {
    fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
    for file in [METRICS_FILE, EVAL_FILE] {
        let path = run_dir.join(file);
        File::create(&path).map_err(io_err(&path))?;
    }
    let path = run_dir.join(RUN_CONFIG_FILE);
    fs::write(&path, cfg.to_saved_toml(run_dir)).map_err(io_err(&path))
}

/// Rewinds a resumed run's logs to `step`: what was logged after the checkpoint moves aside
/// (the resumed run logs those steps again); nothing is deleted.
pub(crate) fn rewind_logs(run_dir: &Path, step: u64) -> Result<()> {
    for file in [METRICS_FILE, EVAL_FILE] {
        let path = run_dir.join(file);
        let moved = rewind_log(&path, step)?;
        if moved > 0 {
            eprintln!(
                "taskmoe: --resume from step {step}: {moved} later lines of {file} moved to {}",
                superseded_path(&path).display()
            );
        }
    }
    Ok(())
}
