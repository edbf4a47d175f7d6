//! `taskmoe families`: every router family on one configuration, same data, budget and seeds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taskmoe_experiments::families::{families, FamiliesSpec, FamilyArm};

/// The arguments of `taskmoe families`.
#[derive(clap::Args, Debug)]
pub struct FamiliesArgs {
    /// The base run configuration (default: the built-in default run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Overrides of the base, before any arm's (`key.path=value`, repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// An arm, `name: key=value key=value ...` (repeatable; default: dense, token, per-task,
    /// task-level, mmoe, cgc, dselect-k and expert-choice at the base's experts and k).
    #[arg(long = "arm", value_name = "NAME: KEY=VALUE ...")]
    pub arms: Vec<String>,
    /// Report seeds 0, 1, ... (the experiments' seeds, not the tuning seeds).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Runs trained at the same time (each its own process).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// The folder: configs/, runs/, logs/, families.md, families.json, base.toml. Finished
    /// runs with an unchanged configuration are reused.
    #[arg(long, default_value = "runs/families")]
    pub out: PathBuf,
}

/// Runs every arm and prints the table.
pub fn run(args: &FamiliesArgs) -> Result<()> {
    let mut arms = Vec::with_capacity(args.arms.len());
    for arm in &args.arms {
        arms.push(arm.parse::<FamilyArm>()?);
    }
    let out = std::path::absolute(&args.out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let spec = FamiliesSpec {
        config: args.config.clone(),
        set: args.set.clone(),
        arms,
        seeds: args.seeds,
        jobs: args.jobs,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let exe = std::env::current_exe().context("locating the taskmoe executable")?;
    let report = families(&exe, &out, &spec, &command)?;
    print!("{}", report.markdown());
    eprintln!("written: {}", Path::new(&out).join("families.md").display());
    Ok(())
}
