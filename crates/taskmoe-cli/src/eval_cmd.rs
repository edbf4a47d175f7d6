//! `taskmoe eval`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use taskmoe_eval::{evaluate, EvalData};
use taskmoe_model::{load_weights, MultiTaskModel};
use taskmoe_train::{latest_complete, Checkpoint, RunConfig, RunData, MODEL_FILE, RUN_CONFIG_FILE};

use crate::report;

/// Evaluates a checkpoint on `split` of its run's data (or other data via `--set`).
pub fn run(
    run: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    split: &str,
    set: &[String],
) -> Result<()> {
    let ckpt = match (run, checkpoint) {
        (Some(run), _) => latest_complete(&run)?
            .with_context(|| format!("{} holds no complete checkpoint", run.display()))?,
        (None, Some(dir)) => Checkpoint::open(&dir)?,
        (None, None) => bail!("pass --run DIR or --checkpoint DIR"),
    };
    let cfg = RunConfig::load(Some(&ckpt.file(RUN_CONFIG_FILE)), set)?;
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    let data = RunData::load(&cfg)?;
    let device = taskmoe_train::select_device(&cfg.train.device)?;
    let vs = tch::nn::VarStore::new(device);
    let model = MultiTaskModel::new(&vs.root(), &cfg.model, &data.heads())?;
    load_weights(&vs, &ckpt.file(MODEL_FILE))?;
    let split_data = match split {
        "validation" => &data.validation,
        "test" => &data.test,
        "train" => &data.train,
        other => bail!("--split {other}: expected validation, test or train"),
    };
    let eval_data = EvalData {
        specs: &data.specs,
        split: split_data,
        train: &data.train,
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
    report::write(&result, &ckpt.dir, &format!("eval-{split}"), &names)?;
    println!("checkpoint {} (step {})", ckpt.dir.display(), ckpt.step);
    println!("{}", report::table(&result, split));
    Ok(())
}
