//! Learning curves of a run: the validation metric of every task over the steps, read back
//! from `eval.jsonl` and drawn as `learning-curves.svg` in the run folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taskmoe_experiments::plot::{line_chart, Series};
use taskmoe_experiments::stats::Summary;
use taskmoe_train::EVAL_FILE;

/// The file the curves are written to, in the run folder.
pub const CURVES_FILE: &str = "learning-curves.svg";

/// Reads `<run>/eval.jsonl` and writes `<run>/learning-curves.svg`: one line per task (its
/// primary metric) and the mean, over the evaluated steps. Returns the file written, or `None`
/// when the run logged no evaluation.
pub fn write(run_dir: &Path) -> Result<Option<PathBuf>> {
    let path = run_dir.join(EVAL_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let mut steps = Vec::new();
    let mut tasks: Vec<(String, Vec<f64>)> = Vec::new();
    let mut mean = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let record: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", path.display(), i + 1))?;
        let Some(step) = record["step"].as_u64() else {
            continue;
        };
        steps.push(step.to_string());
        mean.push(record["mean"].as_f64().unwrap_or(f64::NAN));
        for t in record["tasks"].as_array().into_iter().flatten() {
            let name = t["task"].as_str().unwrap_or("?").to_string();
            let primary = t["primary"].as_str().unwrap_or("accuracy");
            let value = t["metrics"][primary].as_f64().unwrap_or(f64::NAN);
            let column = match tasks.iter().position(|(n, _)| *n == name) {
                Some(c) => c,
                None => {
                    tasks.push((name, vec![f64::NAN; steps.len() - 1]));
                    tasks.len() - 1
                }
            };
            tasks[column].1.push(value);
        }
        for (_, values) in &mut tasks {
            values.resize(steps.len(), f64::NAN);
        }
    }
    if steps.is_empty() {
        return Ok(None);
    }
    let point = |v: &f64| Summary {
        mean: *v,
        std: 0.0,
        n: 1,
    };
    let mut series: Vec<Series> = tasks
        .iter()
        .map(|(name, values)| Series {
            name: name.clone(),
            points: values.iter().map(point).collect(),
        })
        .collect();
    series.push(Series {
        name: "mean".into(),
        points: mean.iter().map(point).collect(),
    });
    let svg = line_chart(
        "validation metric per task",
        "step",
        "primary metric (validation)",
        &steps,
        &series,
    )?;
    let out = run_dir.join(CURVES_FILE);
    std::fs::write(&out, svg).with_context(|| format!("writing {}", out.display()))?;
    Ok(Some(out))
}
