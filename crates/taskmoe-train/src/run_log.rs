//! The run's logs: what a step and an evaluation write (`metrics.jsonl`, `eval.jsonl`, one JSON
//! object per line), and the [`Progress`] a caller watches them through.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{io_err, Result};
use crate::run_folder::{EVAL_FILE, METRICS_FILE};
use crate::tensorboard::TensorBoardLog;

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
    /// Mean gate entropy of the router in nats per MoE block (`ln E` while its gates are
    /// undecided, 0 when every token's gate is one-hot).
    pub gate_entropy: Vec<f64>,
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

/// The log files of a run folder, written by the process that writes the folder.
pub(crate) struct RunLog {
    metrics_path: PathBuf,
    metrics: File,
    eval_path: PathBuf,
    /// The TensorBoard event file (`output.tensorboard`).
    tensorboard: Option<TensorBoardLog>,
}

impl RunLog {
    /// Opens `run_dir`'s logs for appending, and with `tensorboard` (the resolved
    /// configuration's text) a new TensorBoard event file for a process starting after
    /// `start_step`.
    pub(crate) fn open(run_dir: &Path, start_step: u64, tensorboard: Option<&str>) -> Result<Self> {
        let metrics_path = run_dir.join(METRICS_FILE);
        let tensorboard = match tensorboard {
            Some(config) => {
                let log = TensorBoardLog::create(run_dir, start_step)?;
                log.text("config", start_step, &format!("```toml\n{config}```"));
                Some(log)
            }
            None => None,
        };
        Ok(RunLog {
            metrics: append(&metrics_path)?,
            metrics_path,
            eval_path: run_dir.join(EVAL_FILE),
            tensorboard,
        })
    }

    /// Appends a step's line to `metrics.jsonl` (and queues its TensorBoard event).
    pub(crate) fn step(&mut self, log: &StepLog) -> Result<()> {
        let line = serde_json::to_string(log).expect("logs serialize");
        writeln!(self.metrics, "{line}").map_err(io_err(&self.metrics_path))?;
        if let Some(tb) = &self.tensorboard {
            tb.step(log);
        }
        Ok(())
    }

    /// Flushes `metrics.jsonl` and the TensorBoard events (before a checkpoint, so the logs
    /// hold every step it saved).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.metrics.flush().map_err(io_err(&self.metrics_path))?;
        self.tensorboard
            .as_ref()
            .map_or(Ok(()), TensorBoardLog::flush)
    }

    /// Appends an evaluation's line to `eval.jsonl`: its step, wall time and the caller's
    /// record (an object's fields are merged in); queues its numbers for TensorBoard.
    pub(crate) fn evaluation(&self, step: u64, record: &serde_json::Value) -> Result<()> {
        let mut line = serde_json::json!({ "step": step, "time": unix_time() });
        if let (Some(map), serde_json::Value::Object(extra)) = (line.as_object_mut(), record) {
            map.extend(extra.clone());
        }
        writeln!(append(&self.eval_path)?, "{line}").map_err(io_err(&self.eval_path))?;
        if let Some(tb) = &self.tensorboard {
            tb.evaluation(step, record);
        }
        Ok(())
    }

    /// Flushes and closes every log, reporting a TensorBoard write error.
    pub(crate) fn close(mut self) -> Result<()> {
        self.flush()?;
        self.tensorboard
            .take()
            .map_or(Ok(()), TensorBoardLog::close)
    }
}

/// Wall-clock time, seconds since the Unix epoch.
pub(crate) fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}
