//! `taskmoe eval`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taskmoe_eval::{evaluate, EvalData};
use taskmoe_model::{load_weights, MultiTaskModel};
use taskmoe_train::{
    checkpoint_tokenizer, DataSource, RunConfig, RunData, RunLock, MODEL_FILE, RUN_CONFIG_FILE,
};

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
    let mut cfg = RunConfig::load(Some(&ckpt.file(RUN_CONFIG_FILE)), set)?;
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    let tokenizer_set = set
        .iter()
        .any(|s| s.trim_start().starts_with("data.tokenizer"));
    if let (Some(tok), DataSource::Registry, false) = (
        checkpoint_tokenizer(&ckpt.dir),
        cfg.data.source,
        tokenizer_set,
    ) {
        cfg.data.tokenizer = Some(tok);
    }
    if let (DataSource::Registry, Some(reg)) = (cfg.data.source, &cfg.data.registry) {
        if !reg.is_file() {
            anyhow::bail!(
                "the run's task registry {} is gone (moved data folder?): pass \
                 --set data.registry=NEW/tasks.toml to evaluate on data, or use \
                 `taskmoe predict`, which needs none",
                reg.display()
            );
        }
    }
    let data = RunData::load(&cfg)?;
    data.warn_skipped();
    let device = taskmoe_train::select_device(&cfg.train.device)?;
    let vs = tch::nn::VarStore::new(device);
    let model = MultiTaskModel::new(&vs.root(), &cfg.model, &data.heads())?;
    load_weights(&vs, &ckpt.file(MODEL_FILE))?;
    let split_data = match split {
        Split::Validation => &data.validation,
        Split::Test => &data.test,
        Split::Train => &data.train,
    };
    let eval_data = EvalData {
        specs: &data.specs,
        split: split_data,
        seq_len: data.seq_len,
        pad_id: data.pad_id,
    };
    let result = evaluate(
        &model,
        &eval_data,
        &data.train_tasks,
        cfg.train.eval_batch_size,
        device,
    )?;
    let names: Vec<String> = data.specs.iter().map(|s| s.name.clone()).collect();
    let prefix = format!("eval-{}-step{}", split.name(), ckpt.step);
    report::write(&result, &out_dir, &prefix, &names)
        .with_context(|| format!("writing results into {}", out_dir.display()))?;
    println!("checkpoint {} (step {})", ckpt.dir.display(), ckpt.step);
    println!("{}", report::table(&result, split.name()));
    eprintln!(
        "results: {}",
        out_dir.join(format!("{prefix}.json")).display()
    );
    Ok(())
}
