//! `taskmoe affinity`: whether related tasks pull the parameters they share the same way
//! (`taskmoe_eval::gradient_affinity`), for a trained checkpoint or for a configuration's model
//! as training would start it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taskmoe_eval::{gradient_affinity, AffinityOptions, GradientAffinity};
use taskmoe_model::MultiTaskModel;
use taskmoe_train::{trainable, RunConfig, RunData, RunLock, TrainedRun, Trainer};
use tch::{nn, Device};

use crate::checkpoint_arg::resolve;
use crate::eval_cmd::Split;

/// The arguments of `taskmoe affinity`.
#[derive(clap::Args, Debug)]
pub struct AffinityArgs {
    /// A run folder: its newest verified checkpoint is measured.
    #[arg(long, conflicts_with_all = ["checkpoint", "init"])]
    pub run: Option<PathBuf>,
    /// A checkpoint folder.
    #[arg(long, conflicts_with = "init")]
    pub checkpoint: Option<PathBuf>,
    /// Measure the model of `--config` / `--set` as `taskmoe train` would start it (its
    /// initialisation, import and routing calibration, in a scratch run folder removed
    /// afterwards), instead of a checkpoint.
    #[arg(long, required_unless_present_any = ["run", "checkpoint"])]
    pub init: bool,
    /// The run configuration for `--init` (TOML; default: the embedded default run).
    #[arg(long, requires = "init")]
    pub config: Option<PathBuf>,
    /// Override a key: of the configuration with `--init`, else of the run's saved one.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
    /// The split whose examples the gradients are taken on.
    #[arg(long, value_enum, default_value_t = Split::Train)]
    pub split: Split,
    /// The first examples of each task (in split order) its loss is averaged over; 0 for all.
    #[arg(long, default_value_t = 512)]
    pub examples: usize,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Folder for `affinity-<split>-<step|init>.json` (default: the run folder of the
    /// checkpoint; with `--init`, nothing is written unless given).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Measures and prints the gradient affinity; writes it as JSON, with the split, the examples
/// and the resolved configuration, where `--out` (or the checkpoint's run folder) says.
pub fn run(args: &AffinityArgs) -> Result<()> {
    let options = AffinityOptions {
        examples_per_task: args.examples,
        batch_size: args.batch_size,
    };
    let (affinity, cfg, label, out) = match args.init {
        true => {
            let cfg = RunConfig::load(args.config.as_deref(), &args.set)?;
            let affinity = at_init(&cfg, args.split, options)?;
            let out = args.out.clone().map(|dir| (dir, None));
            (affinity, cfg, "init".to_string(), out)
        }
        false => {
            let ckpt = resolve(args.run.as_deref(), args.checkpoint.as_deref())?;
            let out = args
                .out
                .clone()
                .or_else(|| ckpt.dir.parent().map(Path::to_path_buf));
            // The folder written into is locked, as `taskmoe eval` locks it.
            let lock = match &out {
                Some(dir) => Some(RunLock::acquire(dir, "taskmoe affinity")?),
                None => None,
            };
            let run = TrainedRun::load(ckpt, &args.set, None)?;
            let step = run.checkpoint.step;
            let affinity = measure(
                &run.model,
                &run.vs,
                &run.config,
                &run.data,
                args.split,
                options,
                run.device,
            )?;
            (
                affinity,
                run.config,
                format!("step{step}"),
                out.map(|dir| (dir, lock)),
            )
        }
    };
    println!(
        "gradient affinity on {} ({}, up to {} examples per task)",
        args.split.name(),
        label,
        args.examples
    );
    print!("{}", table(&affinity));
    if let Some((dir, _lock)) = out {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join(format!("affinity-{}-{label}.json", args.split.name()));
        // With what it measured: the split, the examples and the resolved configuration.
        let mut json = serde_json::to_value(&affinity)?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert("split".into(), args.split.name().into());
            obj.insert("examples_per_task".into(), args.examples.into());
            obj.insert("measured".into(), label.clone().into());
            obj.insert("config".into(), serde_json::to_value(&cfg)?);
        }
        std::fs::write(&file, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", file.display()))?;
        eprintln!("affinity: {}", file.display());
    }
    Ok(())
}

/// The affinity of `cfg`'s model as a fresh run starts it: a trainer built in a scratch run
/// folder, which is removed afterwards.
fn at_init(cfg: &RunConfig, split: Split, options: AffinityOptions) -> Result<GradientAffinity> {
    let scratch =
        ScratchDir(std::env::temp_dir().join(format!("taskmoe-affinity-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    let mut cfg = cfg.clone();
    cfg.output.dir = scratch.0.clone();
    let data = RunData::load(&cfg)?;
    let trainer = Trainer::new(&cfg, &data, false)?;
    measure(
        trainer.model(),
        trainer.var_store(),
        &cfg,
        &data,
        split,
        options,
        trainer.var_store().device(),
    )
}

/// A scratch folder removed when dropped, on every way out (errors and panics too).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The affinity of `model`'s training tasks on `split`, over the parameters training updates.
fn measure(
    model: &MultiTaskModel,
    vs: &nn::VarStore,
    cfg: &RunConfig,
    data: &RunData,
    split: Split,
    options: AffinityOptions,
    device: Device,
) -> Result<GradientAffinity> {
    let params = trainable(vs, cfg)?;
    Ok(gradient_affinity(
        model,
        &split.of(data),
        &data.train_tasks,
        &params,
        options,
        device,
    )?)
}

/// One line per parameter group: entries compared; mean cosine within and across families and
/// the family ARI, of the raw gradients and of the centred ones (less the mean over tasks),
/// with the centred nearest task in its family; the mean gradient norm.
pub fn table(affinity: &GradientAffinity) -> String {
    let show = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    let mut out = String::from(
        "group              entries  cosine in family / across  family ARI  centred: in family \
         / across  nearest in family  family ARI  mean norm\n",
    );
    for g in &affinity.groups {
        let (f, c) = (&g.family, &g.centred_family);
        let norm = g.norm.iter().sum::<f64>() / g.norm.len().max(1) as f64;
        let _ = writeln!(
            out,
            "{:<16} {:>9}  {:>7} / {:<7}            {:>10}  {:>17} / {:<7}  {:>17}  {:>10}  {:>9.3e}",
            g.group,
            g.entries,
            show(f.within_family),
            show(f.across_family),
            show(f.family_ari),
            show(c.within_family),
            show(c.across_family),
            format!("{}/{}", c.nearest_in_family, c.with_family_mate),
            show(c.family_ari),
            norm,
        );
    }
    out
}
