//! Comparing finished runs (`taskmoe compare`):
//!
//! - several runs side by side (`taskmoe compare RUN...`): each one's test score per task and
//!   over the tasks all were tested on, with its delta against the first;
//! - two sets of runs (`--a RUN... --b RUN...`): per task and over the tasks both sides were
//!   tested on, the mean test score of each side and their seed-paired difference with its 95%
//!   interval. Runs pair by the seed in their saved configuration; one run against one pairs
//!   regardless.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use taskmoe_train::{RunConfig, RUN_CONFIG_FILE};

use crate::error::{bail, Context, Result};
use crate::report::{header, md_table};
use crate::results::RunResult;
use crate::stats::{paired, Comparison, Summary};

/// One task's scores on both sides and their paired difference `a - b`.
#[derive(Clone, Debug, Serialize)]
pub struct TaskComparison {
    /// The task (or `mean` over the common tasks).
    pub task: String,
    /// Side a's headline metric over the pairs.
    pub a: Summary,
    /// Side b's.
    pub b: Summary,
    /// `a - b` paired by seed, with its 95% interval (none for one pair).
    pub diff: Comparison,
}

/// Two sets of runs compared.
#[derive(Clone, Debug, Serialize)]
pub struct RunComparison {
    /// The pairs: seed (when paired by seed), side a's run folder, side b's.
    pub pairs: Vec<(Option<u64>, PathBuf, PathBuf)>,
    /// Per task both sides were tested on, then `mean` over them.
    pub tasks: Vec<TaskComparison>,
}

/// The seed of the run folder `dir` (its saved configuration's `train.seed`).
fn seed_of(dir: &Path) -> Result<u64> {
    let config = RunConfig::load_saved(&dir.join(RUN_CONFIG_FILE), &[])
        .with_context(|| format!("reading the configuration of {}", dir.display()))?;
    Ok(config.train.seed)
}

/// Pairs the runs of `a` and `b` by seed (one against one: as given).
fn pair(a: &[PathBuf], b: &[PathBuf]) -> Result<Vec<(Option<u64>, PathBuf, PathBuf)>> {
    if a.is_empty() || b.is_empty() {
        bail!("compare needs at least one run on each side");
    }
    if a.len() == 1 && b.len() == 1 {
        return Ok(vec![(None, a[0].clone(), b[0].clone())]);
    }
    let seeds = |side: &[PathBuf], name: &str| -> Result<Vec<(u64, PathBuf)>> {
        let mut out: Vec<(u64, PathBuf)> = Vec::new();
        for dir in side {
            let seed = seed_of(dir)?;
            if let Some((_, other)) = out.iter().find(|(s, _)| *s == seed) {
                bail!(
                    "side {name} has two runs of seed {seed}: {} and {}",
                    other.display(),
                    dir.display()
                );
            }
            out.push((seed, dir.clone()));
        }
        out.sort();
        Ok(out)
    };
    let (a, b) = (seeds(a, "a")?, seeds(b, "b")?);
    let mut pairs = Vec::new();
    for (seed, dir) in &a {
        match b.iter().find(|(s, _)| s == seed) {
            Some((_, other)) => pairs.push((Some(*seed), dir.clone(), other.clone())),
            None => bail!("seed {seed} ({}) has no run on side b", dir.display()),
        }
    }
    if let Some((seed, dir)) = b.iter().find(|(s, _)| !a.iter().any(|(x, _)| x == s)) {
        bail!("seed {seed} ({}) has no run on side a", dir.display());
    }
    Ok(pairs)
}

/// Compares the finished runs `a` against `b` (each a run folder with `final-test.json`).
pub fn compare(a: &[PathBuf], b: &[PathBuf]) -> Result<RunComparison> {
    let pairs = pair(a, b)?;
    let mut results = Vec::with_capacity(pairs.len());
    for (_, x, y) in &pairs {
        results.push((RunResult::read(x)?, RunResult::read(y)?));
    }
    let first = &results[0];
    let tasks: Vec<String> = first
        .0
        .scores
        .keys()
        .filter(|t| {
            results
                .iter()
                .all(|(x, y)| x.scores.contains_key(*t) && y.scores.contains_key(*t))
        })
        .cloned()
        .collect();
    if tasks.is_empty() {
        bail!("the two sides were tested on no common task");
    }
    let side = |pick: fn(&(RunResult, RunResult)) -> &RunResult, task: &str| -> Vec<f64> {
        results.iter().map(|r| pick(r).scores[task]).collect()
    };
    let mut rows: Vec<TaskComparison> = tasks
        .iter()
        .map(|t| {
            let (a, b) = (side(|r| &r.0, t), side(|r| &r.1, t));
            TaskComparison {
                task: t.clone(),
                a: Summary::of(&a),
                b: Summary::of(&b),
                diff: paired(&a, &b),
            }
        })
        .collect();
    let mean = |pick: fn(&(RunResult, RunResult)) -> &RunResult| -> Result<Vec<f64>> {
        results.iter().map(|r| pick(r).mean(&tasks)).collect()
    };
    let (a, b) = (mean(|r| &r.0)?, mean(|r| &r.1)?);
    rows.push(TaskComparison {
        task: "mean".into(),
        a: Summary::of(&a),
        b: Summary::of(&b),
        diff: paired(&a, &b),
    });
    Ok(RunComparison { pairs, tasks: rows })
}

/// Several runs side by side, each against the first.
#[derive(Clone, Debug, Serialize)]
pub struct RunTable {
    /// The run folders, in the order given.
    pub runs: Vec<PathBuf>,
    /// Per task all runs were tested on, then `mean` over them.
    pub tasks: Vec<TaskRow>,
}

/// One task's test score in each run, and each run's delta against the first.
#[derive(Clone, Debug, Serialize)]
pub struct TaskRow {
    /// The task (or `mean` over the common tasks).
    pub task: String,
    /// The headline metric of each run, in the order of [`RunTable::runs`].
    pub scores: Vec<f64>,
    /// Each run's score minus the first run's (0 for the first).
    pub deltas: Vec<f64>,
}

/// The finished runs `runs` side by side (each a run folder with `final-test.json`).
pub fn compare_runs(runs: &[PathBuf]) -> Result<RunTable> {
    if runs.is_empty() {
        bail!("compare needs at least one run");
    }
    let results: Vec<RunResult> = runs
        .iter()
        .map(|r| RunResult::read(r))
        .collect::<Result<_>>()?;
    let tasks: Vec<String> = results[0]
        .scores
        .keys()
        .filter(|t| results.iter().all(|r| r.scores.contains_key(*t)))
        .cloned()
        .collect();
    if tasks.is_empty() {
        bail!("the runs were tested on no common task");
    }
    let row = |task: String, scores: Vec<f64>| TaskRow {
        deltas: scores.iter().map(|s| s - scores[0]).collect(),
        task,
        scores,
    };
    let mut rows: Vec<TaskRow> = tasks
        .iter()
        .map(|t| row(t.clone(), results.iter().map(|r| r.scores[t]).collect()))
        .collect();
    let means = results
        .iter()
        .map(|r| r.mean(&tasks))
        .collect::<Result<_>>()?;
    rows.push(row("mean".into(), means));
    Ok(RunTable {
        runs: runs.to_vec(),
        tasks: rows,
    })
}

impl RunTable {
    /// The table as markdown: the runs, then one row per task and the mean.
    pub fn markdown(&self) -> String {
        let mut md = String::from("# Runs compared\n\n");
        for (i, run) in self.runs.iter().enumerate() {
            let _ = writeln!(md, "- run {}: `{}`", i + 1, run.display());
        }
        let mut names = vec!["task".to_string(), "run 1".to_string()];
        names.extend((2..=self.runs.len()).map(|i| format!("run {i} (vs run 1)")));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let rows: Vec<Vec<String>> = self
            .tasks
            .iter()
            .map(|t| {
                let mut row = vec![t.task.clone(), format!("{:.4}", t.scores[0])];
                let others = t.scores.iter().zip(&t.deltas).skip(1);
                row.extend(others.map(|(s, d)| format!("{s:.4} ({d:+.4})")));
                row
            })
            .collect();
        let _ = writeln!(
            md,
            "\nTest headline metric per task, and each run's difference from run 1 (one run \
             each: no interval; give run sets with --a and --b for the seed-paired one):\n\n{}",
            md_table(&header(&names), &rows)
        );
        md
    }
}

impl RunComparison {
    /// The comparison as markdown: the pairs, then one row per task and the mean.
    pub fn markdown(&self) -> String {
        let mut md = String::from("# Runs compared\n\n");
        for (seed, a, b) in &self.pairs {
            let seed = seed.map_or("one run each".to_string(), |s| format!("seed {s}"));
            let _ = writeln!(md, "- {seed}: a = `{}`, b = `{}`", a.display(), b.display());
        }
        let rows: Vec<Vec<String>> = self
            .tasks
            .iter()
            .map(|t| vec![t.task.clone(), t.a.show(), t.b.show(), t.diff.show()])
            .collect();
        let _ = writeln!(
            md,
            "\nTest headline metric per task (mean ± std over the pairs) and the paired \
             difference a - b with its uncorrected 95% interval:\n\n{}",
            md_table(&header(&["task", "a", "b", "a - b [95% CI]"]), &rows)
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finished run folder with a saved seed and these test scores.
    fn run(root: &Path, name: &str, seed: u64, scores: &[(&str, f64)]) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(RUN_CONFIG_FILE),
            format!("[train]\nseed = {seed}\n"),
        )
        .unwrap();
        std::fs::write(dir.join("metrics.jsonl"), "").unwrap();
        let tasks: Vec<serde_json::Value> = scores
            .iter()
            .map(|(t, v)| {
                serde_json::json!({
                    "task": t, "primary": "accuracy", "metrics": { "accuracy": v }
                })
            })
            .collect();
        std::fs::write(
            dir.join(crate::runner::RESULT_FILE),
            serde_json::json!({ "tasks": tasks }).to_string(),
        )
        .unwrap();
        dir
    }

    #[test]
    fn runs_pair_by_seed_and_differences_are_paired() {
        let root = std::env::temp_dir().join(format!("taskmoe-compare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Side b is listed in another order: pairing is by seed, not position.
        let a = vec![
            run(&root, "a0", 0, &[("x", 0.8), ("y", 0.6)]),
            run(&root, "a1", 1, &[("x", 0.9), ("y", 0.7)]),
        ];
        let b = vec![
            run(&root, "b1", 1, &[("x", 0.7), ("y", 0.7), ("z", 0.1)]),
            run(&root, "b0", 0, &[("x", 0.7), ("y", 0.5)]),
        ];
        let c = compare(&a, &b).unwrap();
        assert_eq!(c.pairs[0].0, Some(0));
        assert!(c.pairs[0].2.ends_with("b0"));
        let names: Vec<&str> = c.tasks.iter().map(|t| t.task.as_str()).collect();
        assert_eq!(names, vec!["x", "y", "mean"], "z is not on both sides");
        // x: a - b = 0.1 and 0.2, mean 0.15; y: 0.1 and 0.0, mean 0.05.
        assert!((c.tasks[0].diff.diff.mean - 0.15).abs() < 1e-12);
        assert!((c.tasks[1].diff.diff.mean - 0.05).abs() < 1e-12);
        assert!((c.tasks[2].diff.diff.mean - 0.10).abs() < 1e-12);
        let md = c.markdown();
        assert!(md.contains("| x |") && md.contains("seed 1"), "{md}");

        let lonely = vec![run(&root, "b2", 2, &[("x", 0.5)])];
        let err = compare(&a, &lonely).unwrap_err().to_string();
        assert!(
            err.contains("seed 0") && err.contains("no run on side b"),
            "{err}"
        );
        // Several runs side by side: the tasks all share, deltas against the first.
        let table = compare_runs(&[a[0].clone(), b[0].clone(), b[1].clone()]).unwrap();
        let names: Vec<&str> = table.tasks.iter().map(|t| t.task.as_str()).collect();
        assert_eq!(names, vec!["x", "y", "mean"]);
        assert_eq!(table.tasks[0].scores, vec![0.8, 0.7, 0.7]);
        assert!((table.tasks[0].deltas[1] + 0.1).abs() < 1e-12);
        assert!(
            (table.tasks[2].scores[0] - 0.7).abs() < 1e-12,
            "mean of 0.8 and 0.6"
        );
        let md = table.markdown();
        assert!(
            md.contains("run 3 (vs run 1)") && md.contains("0.7000 (-0.1000)"),
            "{md}"
        );
        let twice = vec![a[0].clone(), run(&root, "a0bis", 0, &[("x", 0.5)])];
        let err = compare(&twice, &b).unwrap_err().to_string();
        assert!(err.contains("two runs of seed 0"), "{err}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
