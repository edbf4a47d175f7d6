//! The per-task table and the files an evaluation leaves behind.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use taskmoe_eval::EvalResult;

/// The per-task table: examples, headline metric, the other metrics, majority baseline.
pub fn table(result: &EvalResult, split: &str) -> String {
    let mut out = String::new();
    let width = result
        .tasks
        .iter()
        .map(|t| t.task.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>6}  {:<9} {:>7}  {:>8}  others",
        "task", "n", "metric", "value", "majority"
    );
    for t in &result.tasks {
        let others: Vec<String> = t
            .metrics
            .iter()
            .filter(|(k, _)| **k != t.primary)
            .map(|(k, v)| format!("{k} {v:.3}"))
            .collect();
        let majority = t
            .majority_baseline
            .map_or("-".to_string(), |m| format!("{m:.3}"));
        let _ = writeln!(
            out,
            "{:<width$}  {:>6}  {:<9} {:>7.3}  {:>8}  {}",
            t.task,
            t.examples,
            t.primary,
            t.metrics.get(&t.primary).copied().unwrap_or(f64::NAN),
            majority,
            others.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "mean {split} headline metric over {} tasks: {:.4}",
        result.tasks.len(),
        result.mean_primary()
    );
    out
}

/// Writes `<prefix>.json` (scores and routing), `<prefix>-predictions.jsonl` and
/// `<prefix>-routing.json` into `dir`.
pub fn write(result: &EvalResult, dir: &Path, prefix: &str, task_names: &[String]) -> Result<()> {
    let scores = dir.join(format!("{prefix}.json"));
    std::fs::write(&scores, serde_json::to_string_pretty(result)? + "\n")
        .with_context(|| format!("writing {}", scores.display()))?;
    let preds = dir.join(format!("{prefix}-predictions.jsonl"));
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&preds).with_context(|| format!("writing {}", preds.display()))?,
    );
    for p in &result.predictions {
        writeln!(f, "{}", serde_json::to_string(p)?)?;
    }
    f.flush()?;
    let routing = dir.join(format!("{prefix}-routing.json"));
    let layers: Vec<serde_json::Value> = result
        .routing
        .iter()
        .map(|(layer, counts)| {
            serde_json::json!({ "layer": layer, "tasks": task_names, "task_expert_counts": counts })
        })
        .collect();
    std::fs::write(&routing, serde_json::to_string_pretty(&layers)? + "\n")
        .with_context(|| format!("writing {}", routing.display()))?;
    Ok(())
}
