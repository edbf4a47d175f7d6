//! `taskmoe train`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use taskmoe_eval::{evaluate_sharded, evaluate_with, EvalBatching, EvalData, EvalResult};
use taskmoe_model::Variant;
use taskmoe_train::{EvalPoint, RunConfig, RunData, Trainer};

use crate::curves;
use crate::progress::Bar;
use crate::{report, ConfigArgs};

/// Trains, evaluating on validation as configured, then scores the test split and prints the
/// per-task table. The `single-task` variant trains one dense model per task (each with the
/// run's full step budget) in `<run>/<task>/`, and the table gives each task its own model's
/// scores.
///
/// Under torchrun's variables (`WORLD_SIZE` > 1; `cargo xtask train --nproc N` sets them) the
/// process is one rank of a data-parallel job: every rank scores its share of each evaluation
/// and of the final test, rank 0 reports, the others train silently.
///
/// `run_dir` (`--run DIR --resume`) resumes that run folder wherever it now lives: its saved
/// `config.toml` (with `--set` over it) and `output.dir` / `output.name` pointing at it.
pub fn run(args: &ConfigArgs, resume: bool, run_dir: Option<&Path>) -> Result<()> {
    let cfg = match run_dir {
        Some(dir) => resume_config(dir, &args.set)?,
        None => {
            let cfg = RunConfig::load(args.config.as_deref(), &args.set)?;
            if resume {
                check_not_moved(args.config.as_deref(), &cfg)?;
            }
            cfg
        }
    };
    eprintln!(
        "resolved configuration (saved as {}/config.toml):\n{}",
        cfg.run_dir().display(),
        cfg.to_toml()
    );
    let data = RunData::load(&cfg)?;
    data.warn_skipped();
    if cfg.model.variant != Variant::SingleTask {
        if let Some(result) = train_one(&cfg, &data, resume)? {
            println!("{}", report::table(&result, "test", &data.specs));
        }
        return Ok(());
    }
    let parent = cfg.run_dir();
    let mut combined: Option<EvalResult> = None;
    for (i, &task) in data.train_tasks.iter().enumerate() {
        let name = &data.specs[task].name;
        let mut one = cfg.clone();
        one.data.tasks = vec![name.clone()];
        one.output.dir = parent.clone();
        one.output.name = name.clone();
        let one_data = RunData::load(&one)?;
        eprintln!(
            "single-task baseline {}/{}: {name}",
            i + 1,
            data.train_tasks.len()
        );
        let Some(result) = train_one(&one, &one_data, resume)? else {
            continue; // not rank 0
        };
        match &mut combined {
            None => combined = Some(result),
            Some(c) => {
                c.tasks.extend(result.tasks);
                c.predictions.extend(result.predictions);
                c.routing.extend(result.routing);
                c.gates.extend(result.gates);
            }
        }
    }
    let Some(combined) = combined else {
        if data.train_tasks.is_empty() {
            anyhow::bail!("no training tasks");
        }
        return Ok(()); // not rank 0
    };
    report::write(&combined, &parent, "final-test", &data.specs, None)?;
    println!("{}", report::table(&combined, "test", &data.specs));
    Ok(())
}

/// The configuration that resumes the run folder `dir` where it is: its saved `config.toml`,
/// then `set`, then `output.dir` / `output.name` set to `dir`.
fn resume_config(dir: &Path, set: &[String]) -> Result<RunConfig> {
    let saved = dir.join(taskmoe_train::RUN_CONFIG_FILE);
    if !saved.is_file() {
        bail!(
            "--run {}: no {} there: not a run folder (a run folder holds the configuration \
             `taskmoe train` saved, its logs and its checkpoint-* folders)",
            dir.display(),
            taskmoe_train::RUN_CONFIG_FILE
        );
    }
    let mut cfg = RunConfig::load_saved(&saved, set)?;
    let dir = std::path::absolute(dir).with_context(|| format!("--run {}", dir.display()))?;
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        bail!("--run {}: not a folder inside another", dir.display());
    };
    cfg.output.dir = parent.to_path_buf();
    cfg.output.name = name.to_string_lossy().into_owned();
    Ok(cfg)
}

/// Refuses `--config RUN/config.toml --resume` when that file is the saved configuration of a
/// run folder other than the one it names (the folder was moved or copied): resuming would
/// read and write the old place.
fn check_not_moved(config: Option<&Path>, cfg: &RunConfig) -> Result<()> {
    let Some(folder) = config.and_then(Path::parent) else {
        return Ok(());
    };
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    if taskmoe_train::list_checkpoints(folder)?.is_empty() {
        return Ok(());
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(folder, &cfg.run_dir()) {
        return Ok(());
    }
    bail!(
        "{} belongs to the run folder {}, but names the run folder {} (output.dir / \
         output.name): the folder was moved or copied. Resume it where it is with \
         `taskmoe train --run {} --resume`",
        config.expect("a folder came from it").display(),
        folder.display(),
        cfg.run_dir().display(),
        folder.display()
    )
}

/// Trains one model and scores its training tasks on the test split (rank 0 of a
/// data-parallel job, or a single process; other ranks train, score their share and return
/// `None`).
fn train_one(cfg: &RunConfig, data: &RunData, resume: bool) -> Result<Option<EvalResult>> {
    let mut trainer = Trainer::new(cfg, data, resume)?;
    let run_dir = trainer.run_dir().to_path_buf();
    let rank0 = trainer.is_rank0();
    if let Some(d) = trainer.distributed().filter(|_| rank0) {
        eprintln!(
            "data-parallel job of {} ranks on {} (expert parallel {}), {} examples per rank and \
             step",
            d.world_size(),
            d.backend().name(),
            cfg.runtime.expert_parallel,
            cfg.data.batch_size / d.world_size()
        );
    }
    if let Some(r) = trainer.import_report() {
        eprintln!(
            "imported {} pretrained tensors; upcycled MoE blocks {:?}; {} tensors start fresh",
            r.loaded.len(),
            r.upcycled_blocks,
            r.fresh.len()
        );
    }
    if let Some(r) = trainer.frozen_states().filter(|_| rank0) {
        eprintln!("{r}");
    }
    eprintln!(
        "run {}: {} model, {} training tasks, {} steps of {} examples",
        run_dir.display(),
        crate::report::spelling(&cfg.model.variant),
        data.train_tasks.len(),
        cfg.train.steps,
        cfg.data.batch_size
    );
    let device = trainer.device();
    let validation = EvalData {
        specs: &data.specs,
        split: &data.validation,
        seq_len: data.seq_len,
        pad_id: data.pad_id,
    };
    // In a job, every rank scores its share of the batches and rank 0 the gathered logits.
    let group = trainer.distributed().map(|d| d.evaluation_group());
    let tasks = &data.train_tasks;
    let shared_evaluate = |model: &taskmoe_model::MultiTaskModel, split: &EvalData| {
        let batching = EvalBatching::bucketed(cfg.eval.batch_size);
        match &group {
            Some(group) => evaluate_sharded(model, split, tasks, batching, device, group),
            None => evaluate_with(model, split, tasks, batching, device).map(Some),
        }
    };
    let mut hook = |model: &taskmoe_model::MultiTaskModel, _step: u64| {
        let result = shared_evaluate(model, &validation).map_err(|e| {
            taskmoe_train::TrainError::Invalid {
                what: "evaluation".into(),
                message: e.to_string(),
            }
        })?;
        // Ranks other than 0 name the score; rank 0's value is the job's.
        let Some(result) = result else {
            return Ok(EvalPoint {
                record: serde_json::json!({}),
                score: Some(("validation/mean".into(), f64::NAN, true)),
            });
        };
        let mean = result.mean_primary();
        Ok(EvalPoint {
            record: serde_json::json!({ "split": "validation", "mean": mean, "tasks": result.tasks }),
            score: Some(("validation/mean".into(), mean, true)),
        })
    };
    let mut bar = Bar::new(10);
    trainer.train(&mut hook, &mut bar, None)?;
    if let Some(d) = trainer.distributed() {
        eprintln!("{}", d.stats_summary());
    }

    let mut tested_step = trainer.state().step;
    if cfg.eval.test_checkpoint == taskmoe_train::TestCheckpoint::Best {
        let restored = trainer.restore_best()?;
        if rank0 {
            match restored {
                Some(step) => eprintln!("final test: the best validation checkpoint, step {step}"),
                None => eprintln!("final test: no evaluation set a best; the last weights"),
            }
        }
        tested_step = restored.unwrap_or(tested_step);
    }
    let test = EvalData {
        split: &data.test,
        ..validation
    };
    let Some(result) = shared_evaluate(trainer.model(), &test).context("final evaluation")? else {
        return Ok(None); // not rank 0
    };
    report::write(
        &result,
        &run_dir,
        "final-test",
        &data.specs,
        Some(tested_step),
    )?;
    let state = trainer.state();
    eprintln!(
        "{} steps, {} examples, {:.1} s training ({:.0} examples/s); run folder {}",
        state.step,
        state.examples_seen,
        state.elapsed_secs,
        state.examples_seen as f64 / state.elapsed_secs.max(1e-9),
        run_dir.display()
    );
    if let Some(svg) = curves::write(&run_dir)? {
        eprintln!("learning curves (validation): {}", svg.display());
    }
    Ok(Some(result))
}
