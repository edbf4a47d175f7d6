//! Recipe search (`taskmoe search`): one axis at a time around a base run configuration, on the
//! tuning seeds only, chosen on validation.
//!
//! Each axis is a configuration key and the values it is tried at (`schedule.peak_lr=3e-4,1e-3,
//! 3e-3`); every other key keeps the base value, so `A` axes of `v` values cost `A * v` runs per
//! seed (points that resolve to the same configuration, such as each axis's base value, are
//! trained once). A point's score is the mean over the run's tasks of their final validation
//! scores, averaged over the tuning seeds (`TUNING_SEED_BASE..`, 1000 on, disjoint from the
//! seeds experiments report); the chosen value is the best mean. A choice on the first or last
//! value of an axis of three or more is flagged: the grid should be widened before the value is
//! used. The routing measures (overlap within minus across families, the family ARI, averaged
//! over MoE blocks) are reported beside, measured on each run's test split, and take no part in
//! the choice.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use taskmoe_train::RunConfig;

use crate::context::TUNING_SEED_BASE;
use crate::error::{bail, Context, ExperimentError, Result};
use crate::report::{header, md_table};
use crate::results::RunResult;
use crate::runner::{Job, Runner};
use crate::stats::Summary;

/// One searched key and the values it is tried at (`key=v1,v2,...`, values as `--set` takes
/// them).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Axis {
    /// The configuration key (`schedule.peak_lr`).
    pub key: String,
    /// Its values, in grid order.
    pub values: Vec<String>,
}

impl FromStr for Axis {
    type Err = ExperimentError;

    fn from_str(s: &str) -> Result<Self> {
        let Some((key, values)) = s.split_once('=') else {
            bail!("axis `{s}` is not `key=value1,value2,...`");
        };
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        if key.trim().is_empty() || values.iter().any(String::is_empty) {
            bail!("axis `{s}` has an empty key or value");
        }
        Ok(Axis {
            key: key.trim().to_string(),
            values,
        })
    }
}

/// What to search: the base configuration file and overrides, the axes, the seeds.
#[derive(Clone, Debug)]
pub struct SearchSpec {
    /// The base run configuration file (none: the built-in default run).
    pub config: Option<PathBuf>,
    /// Overrides applied to the base before any axis (`key=value`).
    pub set: Vec<String>,
    /// The axes, searched one at a time.
    pub axes: Vec<Axis>,
    /// How many tuning seeds (`TUNING_SEED_BASE..`).
    pub seeds: u64,
    /// Runs trained at the same time.
    pub jobs: usize,
}

/// One value of one axis over the seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// The value.
    pub value: String,
    /// The run folder of each seed.
    pub runs: Vec<PathBuf>,
    /// The mean final validation score over the run's tasks, per seed.
    pub validation: Vec<f64>,
    /// Routing overlap within minus across families, mean over MoE blocks, per seed (test
    /// split; empty without families or MoE blocks).
    pub within_minus_across: Vec<f64>,
    /// Family ARI, mean over MoE blocks, per seed (test split).
    pub family_ari: Vec<f64>,
}

/// One axis searched.
#[derive(Clone, Debug, Serialize)]
pub struct AxisResult {
    /// The key.
    pub key: String,
    /// Its points, in grid order.
    pub points: Vec<Point>,
    /// The index of the chosen point (best mean validation score).
    pub chosen: usize,
    /// Whether the choice is the first or last value of a grid of three or more.
    pub on_edge: bool,
}

/// A finished search.
#[derive(Clone, Debug, Serialize)]
pub struct SearchReport {
    /// The command that ran it.
    pub command: String,
    /// The resolved base configuration (TOML).
    pub base: String,
    /// The tuning seeds.
    pub seeds: Vec<u64>,
    /// Every axis.
    pub axes: Vec<AxisResult>,
}

/// Resolves the configuration of `spec`'s base with `extra` overrides and `train.seed = seed`.
fn resolve(spec: &SearchSpec, extra: &[String], seed: Option<u64>) -> Result<RunConfig> {
    let mut sets = spec.set.clone();
    sets.extend(extra.iter().cloned());
    if let Some(seed) = seed {
        sets.push(format!("train.seed={seed}"));
    }
    RunConfig::load(spec.config.as_deref(), &sets)
        .with_context(|| format!("resolving the search configuration with {sets:?}"))
}

/// Runs the search with the `taskmoe` executable `exe` into `out` (`configs/`, `runs/`,
/// `logs/`, then `search.md`, `search.json` and `base.toml`).
pub fn search(exe: &Path, out: &Path, spec: &SearchSpec, command: &str) -> Result<SearchReport> {
    if spec.axes.is_empty() {
        bail!("a search needs at least one --axis key=v1,v2,...");
    }
    if spec.seeds == 0 {
        bail!("a search needs at least one tuning seed");
    }
    let base = resolve(spec, &[], None)?;
    let seeds: Vec<u64> = (TUNING_SEED_BASE..TUNING_SEED_BASE + spec.seeds).collect();
    // Every (axis, value, seed); identical resolved configurations share one run.
    let mut jobs: Vec<Job> = Vec::new();
    let mut by_text: BTreeMap<String, usize> = BTreeMap::new();
    let mut slots: Vec<Vec<Vec<usize>>> = Vec::new();
    for axis in &spec.axes {
        let mut per_value = Vec::new();
        for value in &axis.values {
            let mut per_seed = Vec::new();
            for &seed in &seeds {
                let cfg = resolve(spec, &[format!("{}={value}", axis.key)], Some(seed))?;
                let text = cfg.to_toml();
                let index = *by_text.entry(text).or_insert_with(|| {
                    jobs.push(Job {
                        id: format!("{}={value}-seed{seed}", axis.key),
                        config: cfg,
                    });
                    jobs.len() - 1
                });
                per_seed.push(index);
            }
            per_value.push(per_seed);
        }
        slots.push(per_value);
    }
    let runner = Runner::new(exe.to_path_buf(), out, spec.jobs);
    let dirs = runner.run("search", &jobs)?;
    let mut axes = Vec::new();
    for (axis, per_value) in spec.axes.iter().zip(slots) {
        let mut points = Vec::new();
        for (value, per_seed) in axis.values.iter().zip(per_value) {
            let mut point = Point {
                value: value.clone(),
                runs: Vec::new(),
                validation: Vec::new(),
                within_minus_across: Vec::new(),
                family_ari: Vec::new(),
            };
            for index in per_seed {
                let dir = &dirs[index];
                let scores = RunResult::validation(dir)?;
                if scores.is_empty() {
                    bail!("{}: the last validation has no scores", dir.display());
                }
                point
                    .validation
                    .push(scores.values().sum::<f64>() / scores.len() as f64);
                let (gap, ari) = RunResult::read(dir)?.family_measures();
                point.within_minus_across.extend(gap);
                point.family_ari.extend(ari);
                point.runs.push(dir.clone());
            }
            points.push(point);
        }
        let means: Vec<f64> = points
            .iter()
            .map(|p| Summary::of(&p.validation).mean)
            .collect();
        let chosen = (0..means.len())
            .max_by(|&a, &b| means[a].total_cmp(&means[b]))
            .unwrap_or(0);
        let on_edge = points.len() >= 3 && (chosen == 0 || chosen + 1 == points.len());
        axes.push(AxisResult {
            key: axis.key.clone(),
            points,
            chosen,
            on_edge,
        });
    }
    let report = SearchReport {
        command: command.to_string(),
        base: base.to_toml(),
        seeds,
        axes,
    };
    write_report(out, &report)?;
    Ok(report)
}

impl SearchReport {
    /// The markdown report: the command, seeds, one table per axis, and the base configuration.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# Recipe search\n\nCommand: `{}`. Tuning seeds {:?} (never reported by an \
             experiment). Score: mean final validation score over the run's tasks, mean ± std \
             over seeds; the chosen value (**bold**) has the best mean. Routing measures \
             (test split, mean over MoE blocks) are reported, not used for the choice.\n\n",
            self.command, self.seeds
        );
        for axis in &self.axes {
            let _ = writeln!(md, "## `{}`\n", axis.key);
            let rows: Vec<Vec<String>> = axis
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let mark = |s: String| {
                        if i == axis.chosen {
                            format!("**{s}**")
                        } else {
                            s
                        }
                    };
                    let show = |v: &[f64]| match v.is_empty() {
                        true => "-".to_string(),
                        false => Summary::of(v).show(),
                    };
                    vec![
                        mark(p.value.clone()),
                        mark(Summary::of(&p.validation).show()),
                        show(&p.within_minus_across),
                        show(&p.family_ari),
                        p.validation.len().to_string(),
                    ]
                })
                .collect();
            md.push_str(&md_table(
                &header(&[
                    "value",
                    "validation mean",
                    "within - across overlap",
                    "family ARI",
                    "seeds",
                ]),
                &rows,
            ));
            let chosen = &axis.points[axis.chosen].value;
            let _ = match axis.on_edge {
                true => writeln!(
                    md,
                    "\nChosen: `{}={chosen}`, **on the edge of its grid**: widen the grid \
                     before using it.\n",
                    axis.key
                ),
                false => writeln!(md, "\nChosen: `{}={chosen}`.\n", axis.key),
            };
        }
        let _ = write!(md, "## Base configuration\n\n```toml\n{}```\n", self.base);
        md
    }
}

fn write_report(out: &Path, report: &SearchReport) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    for (name, text) in [
        ("search.md", report.markdown()),
        ("search.json", json + "\n"),
        ("base.toml", report.base.clone()),
    ] {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
