//! `taskmoe search`: a recipe search, one axis at a time, on the tuning seeds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taskmoe_experiments::search::{search, Axis, SearchSpec};

/// The arguments of `taskmoe search`.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// The base run configuration (default: the built-in default run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Overrides of the base, before any axis (`key.path=value`, repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A searched key and its values, `key=v1,v2,v3` (repeatable; axes are searched one at a
    /// time, the others at the base value).
    #[arg(long = "axis", value_name = "KEY=V1,V2,...", required = true)]
    pub axes: Vec<String>,
    /// Tuning seeds (1000, 1001, ...; never the seeds an experiment reports).
    #[arg(long, default_value_t = 2)]
    pub seeds: u64,
    /// Runs trained at the same time (each its own process).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// The search folder: configs/, runs/, logs/, search.md, search.json, base.toml. Finished
    /// runs with an unchanged configuration are reused.
    #[arg(long, default_value = "runs/search")]
    pub out: PathBuf,
}

/// Runs the search and prints its report.
pub fn run(args: &SearchArgs) -> Result<()> {
    let mut axes = Vec::with_capacity(args.axes.len());
    for axis in &args.axes {
        axes.push(axis.parse::<Axis>()?);
    }
    let out = std::path::absolute(&args.out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let spec = SearchSpec {
        config: args.config.clone(),
        set: args.set.clone(),
        axes,
        seeds: args.seeds,
        jobs: args.jobs,
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let exe = std::env::current_exe().context("locating the taskmoe executable")?;
    let report = search(&exe, &out, &spec, &command)?;
    print!("{}", report.markdown());
    eprintln!("written: {}", Path::new(&out).join("search.md").display());
    Ok(())
}
