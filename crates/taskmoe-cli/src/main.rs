//! `taskmoe`: train, evaluate and inspect multi-task models with sparse, task-aware MoE layers.
//!
//! ```text
//! taskmoe train   [--config FILE] [--set key.path=value]... [--resume]
//! taskmoe eval    (--run DIR | --checkpoint DIR) [--split validation|test] [--set ...]
//! taskmoe inspect [--config FILE] [--set ...]
//! taskmoe config show [--config FILE] [--set ...]
//! taskmoe check   [--device cuda|cpu|auto] [--checkpoint DIR] [--moe-sizes TxDxE,...] [--tiny]
//! taskmoe experiment (low-resource|unseen|unrelated|all) [--profile quick|full] [--seeds N]
//!                    [--config FILE] [--set key.path=value]... [--run-set key.path=value]...
//!                    [--out DIR]
//! ```
//! `cargo xtask train` / `cargo xtask eval` build this binary and run it.

mod check_cmd;
mod config_cmd;
mod curves;
mod eval_cmd;
mod experiment_cmd;
mod inspect_cmd;
mod progress;
mod report;
mod train_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "taskmoe",
    version,
    about = "Multi-task learning with task-aware sparse MoE"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a run's configuration comes from.
#[derive(clap::Args, Clone, Debug)]
struct ConfigArgs {
    /// Run configuration (TOML); without it, the embedded default (synthetic benchmark, small
    /// task-MoE).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a key, e.g. `--set train.steps=100 --set model.variant=dense`.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model; prints a per-task table at the end.
    Train {
        #[command(flatten)]
        config: ConfigArgs,
        /// Continue the run from its newest complete checkpoint.
        #[arg(long)]
        resume: bool,
    },
    /// Evaluate a run's newest checkpoint (or a given checkpoint).
    Eval {
        /// A run folder: its newest complete checkpoint is evaluated.
        #[arg(
            long,
            conflicts_with = "checkpoint",
            required_unless_present = "checkpoint"
        )]
        run: Option<PathBuf>,
        /// A checkpoint folder.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Split to score: validation or test.
        #[arg(long, default_value = "validation")]
        split: String,
        /// Override keys of the run's saved configuration (e.g. other data).
        #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
        set: Vec<String>,
    },
    /// Parameters, active parameters and FLOPs per token of a configuration, for every
    /// variant.
    Inspect {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// The resolved run configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The one-shot GPU check: CPU-vs-device logits (fp32, bf16), MoE layer vs dense FFN at
    /// large sizes, training tokens/s and MFU; prints one table (`cargo xtask gpu-bundle`).
    Check(check_cmd::CheckArgs),
    /// Run an experiment of the paper's three claims (or all): every arm trained over
    /// several seeds, a report folder (markdown, JSON, SVG plots) and a printed table.
    Experiment {
        /// low-resource, unseen, unrelated or all.
        name: String,
        /// quick (minutes on 2 CPU cores) or full (sized for a GPU).
        #[arg(long, default_value = "quick")]
        profile: String,
        /// Number of seeds (default: the profile's, 3 for quick).
        #[arg(long)]
        seeds: Option<u64>,
        /// Runs trained at the same time (default: the profile's).
        #[arg(long)]
        jobs: Option<usize>,
        /// Experiment settings (TOML) over the profile's; its `run_config` names the run
        /// configuration, e.g. real tasks.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a setting, e.g. `--set unseen.k=[16,64]` or
        /// `--set run_set=["train.steps=400"]`.
        #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
        set: Vec<String>,
        /// Override a key of the run configuration every arm starts from, after the
        /// settings' `run_set`, e.g. `--run-set train.init_from=DIR`.
        #[arg(long = "run-set", value_name = "KEY.PATH=VALUE")]
        run_set: Vec<String>,
        /// Report folder (default runs/experiments/<profile>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the configuration a run with these arguments would use (preset, then file, then
    /// every `--set`, merged key by key), as TOML.
    Show {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train { config, resume } => train_cmd::run(&config, resume),
        Command::Eval {
            run,
            checkpoint,
            split,
            set,
        } => eval_cmd::run(run, checkpoint, &split, &set),
        Command::Inspect { config } => inspect_cmd::run(&config),
        Command::Config {
            action: ConfigAction::Show { config },
        } => config_cmd::show(&config),
        Command::Check(args) => check_cmd::run(&args),
        Command::Experiment {
            name,
            profile,
            seeds,
            jobs,
            config,
            set,
            run_set,
            out,
        } => experiment_cmd::run(experiment_cmd::ExperimentArgs {
            name,
            profile,
            seeds,
            jobs,
            config,
            set,
            run_set,
            out,
        }),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
