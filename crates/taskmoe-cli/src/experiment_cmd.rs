//! `taskmoe experiment`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use taskmoe_experiments::{Experiment, ExperimentConfig, ExperimentContext, Profile};

/// What `taskmoe experiment` was asked.
pub struct ExperimentArgs {
    /// `low-resource`, `unseen`, `unrelated` or `all`.
    pub name: String,
    /// `quick` or `full`.
    pub profile: String,
    /// Overrides the profile's seed count.
    pub seeds: Option<u64>,
    /// Overrides the profile's parallel runs.
    pub jobs: Option<usize>,
    /// Experiment settings over the profile's.
    pub config: Option<PathBuf>,
    /// `key.path=value` overrides of the settings.
    pub set: Vec<String>,
    /// `key.path=value` overrides of the run configuration, after the settings' `run_set`.
    pub run_set: Vec<String>,
    /// Report folder; default `runs/experiments/<profile>`.
    pub out: Option<PathBuf>,
}

/// Runs the experiments, writes each report folder and prints each summary.
pub fn run(args: ExperimentArgs) -> Result<()> {
    let experiments = Experiment::parse_list(&args.name)?;
    let profile = Profile::parse(&args.profile)?;
    let out = args
        .out
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
