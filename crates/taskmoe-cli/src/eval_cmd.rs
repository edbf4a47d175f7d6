//! `taskmoe eval`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taskmoe_eval::{evaluate, EvalData};
use taskmoe_train::{RunData, RunLock, TrainedRun};

use crate::checkpoint_arg::resolve;
use crate::report;

/// The split `eval` scores.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The validation split (what training evaluates on).
    Validation,
    /// The test split (what the final table of `train` reports).
    Test,
    /// The training split.
    Train,
}

impl Split {
    /// The split's name, as in registries and file names.
    pub fn name(self) -> &'static str {
        match self {
            Split::Validation => "validation",
            Split::Test => "test",
            Split::Train => "train",
        }
    }

    /// This split of a run's data, as an evaluation reads it.
    pub fn of(self, data: &RunData) -> EvalData<'_> {
        EvalData {
            specs: &data.specs,
            split: match self {
                Split::Validation => &data.validation,
                Split::Test => &data.test,
                Split::Train => &data.train,
            },
            seq_len: data.seq_len,
            pad_id: data.pad_id,
        }
    }
}

/// Evaluates a checkpoint on `split` of its run's data (or other data via `--set`); the
/// tokenizer is the checkpoint's own copy. Writes `eval-<split>-step<N>.json`,
/// `-predictions.jsonl` and `-routing.json` into `out` (default: the run folder holding the
/// checkpoint), never into the checkpoint, and holds the folder's lock while doing so.
pub fn run(
    run: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    split: Split,
    set: &[String],
    out: Option<PathBuf>,
) -> Result<()> {
    let ckpt = resolve(run.as_deref(), checkpoint.as_deref())?;
    let out_dir = match out {
        Some(dir) => dir,
        None => ckpt
            .dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let _lock = RunLock::acquire(&out_dir, "taskmoe eval")?;
    let TrainedRun {
        checkpoint: ckpt,
        config: cfg,
        data,
        model,
        device,
        ..
    } = TrainedRun::load(ckpt, set, None)?;
    data.warn_skipped();
    let result = evaluate(
        &model,
        &split.of(&data),
        &data.train_tasks,
        cfg.eval.batch_size,
        device,
    )?;
    let prefix = format!("eval-{}-step{}", split.name(), ckpt.step);
    report::write(&result, &out_dir, &prefix, &data.specs, Some(ckpt.step))
        .with_context(|| format!("writing results into {}", out_dir.display()))?;
    println!("checkpoint {} (step {})", ckpt.dir.display(), ckpt.step);
    println!("{}", report::table(&result, split.name(), &data.specs));
    eprintln!(
        "results: {}",
        out_dir.join(format!("{prefix}.json")).display()
    );
    Ok(())
}
