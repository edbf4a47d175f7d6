//! `taskmoe experiment`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use taskmoe_experiments::{Experiment, ExperimentConfig, ExperimentContext, Profile};

/// What `taskmoe experiment` was asked.
#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    /// Which experiment.
    #[arg(value_enum)]
    pub name: ExperimentName,
    /// quick (minutes on 2 CPU cores) or full (sized for a GPU).
    #[arg(long, value_enum, default_value_t = ProfileName::Quick)]
    pub profile: ProfileName,
    /// Number of seeds (default: the profile's, 3 for quick).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Runs trained at the same time (default: the profile's).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Experiment settings (TOML) over the profile's; its `run_config` names the run
    /// configuration, e.g. real tasks.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a setting, e.g. `--set unseen.k=[16,64]` or
    /// `--set run_set=["train.steps=400"]`.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub set: Vec<String>,
    /// Override a key of the run configuration every arm starts from, after the
    /// settings' `run_set`, e.g. `--run-set init.from=DIR`.
    #[arg(long = "run-set", value_name = "KEY.PATH=VALUE")]
    pub run_set: Vec<String>,
    /// Report folder (default `runs/experiments/<profile>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The experiments, as on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ExperimentName {
    /// Claim 1: low-resource tasks in a related mixture.
    LowResource,
    /// Claim 2: k-shot transfer to held-out tasks.
    Unseen,
    /// Claim 3: adding unrelated or conflicting tasks.
    Unrelated,
    /// All three.
    All,
}

/// The experiment profiles, as on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ProfileName {
    /// Minutes on 2 CPU cores.
    Quick,
    /// Sized for a GPU.
    Full,
}

/// The command-line spelling of a value enum.
fn spelling(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// Runs the experiments, writes each report folder and prints each summary.
pub fn run(args: &ExperimentArgs) -> Result<()> {
    let experiments = Experiment::parse_list(&spelling(args.name))?;
    let profile = Profile::parse(&spelling(args.profile))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/experiments").join(profile.name()));
    let out = std::path::absolute(&out)?;
    let mut set = args.set.clone();
    if let Some(n) = args.seeds {
        set.push(format!("seeds={n}"));
    }
    if let Some(n) = args.jobs {
        set.push(format!("jobs={n}"));
    }
    let loaded =
        ExperimentConfig::load(profile, args.config.as_deref(), &set, &args.run_set, &out)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let ctx = ExperimentContext {
        loaded,
        exe: std::env::current_exe().context("locating the taskmoe executable")?,
        out: out.clone(),
        command,
    };
    for experiment in experiments {
        let started = std::time::Instant::now();
        let report = experiment.run(&ctx)?;
        println!("{}", report.summary);
        println!(
            "{}: report {} ({:.0} s)\n",
            experiment.name(),
            ctx.dir(experiment).join("report.md").display(),
            started.elapsed().as_secs_f64()
        );
    }
    let verdicts = out.join("verdicts.md");
    let text = std::fs::read_to_string(&verdicts)
        .with_context(|| format!("reading {}", verdicts.display()))?;
    println!("{text}\n(also {})", verdicts.display());
    Ok(())
}

/// `taskmoe verdicts --bench NAME=DIR... --out DIR`: every benchmark's verdicts in one table
/// and one forest plot ([`taskmoe_experiments::verdicts::across`]).
pub fn verdicts(benches: &[String], out: &std::path::Path) -> Result<()> {
    let parsed: Vec<(String, PathBuf)> = benches
        .iter()
        .map(|b| {
            let (name, dir) = b
                .split_once('=')
                .with_context(|| format!("--bench `{b}`: expected NAME=DIR"))?;
            Ok((name.to_string(), PathBuf::from(dir)))
        })
        .collect::<Result<_>>()?;
    let md = taskmoe_experiments::verdicts::across(&parsed, out)?;
    println!("{md}\n(also {})", out.join("verdicts.md").display());
    Ok(())
}
