//! The per-task table and the files an evaluation leaves behind.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use taskmoe_eval::routing::{analyze, heatmap_svg, RoutingAnalysis};
use taskmoe_eval::EvalResult;

/// How a config value is spelled in TOML (`task-moe`, not `TaskMoe`).
pub fn spelling<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

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
        if !t.labeled {
            let _ = writeln!(
                out,
                "{:<width$}  {:>6}  unlabeled: predictions only",
                t.task, t.examples
            );
            continue;
        }
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
    // Routing analysis per MoE block: JSON, and SVG heatmaps of P(expert | task) and of the
    // task-to-task routing similarity.
    let analyses: Vec<RoutingAnalysis> = result
        .routing
        .iter()
        .map(|(layer, counts)| analyze(*layer, task_names, counts))
        .collect();
    let routing = dir.join(format!("{prefix}-routing.json"));
    std::fs::write(&routing, serde_json::to_string_pretty(&analyses)? + "\n")
        .with_context(|| format!("writing {}", routing.display()))?;
    for a in &analyses {
        let experts: Vec<String> = (0..a.load.first().map_or(0, Vec::len))
            .map(|e| format!("e{e}"))
            .collect();
        let load = heatmap_svg(
            &format!(
                "block {}: P(expert | task), I(task; expert) = {:.3} nats",
                a.layer, a.mutual_information
            ),
            &a.tasks,
            &experts,
            &a.load,
            0.0,
            1.0,
        );
        let short: Vec<String> = (0..a.tasks.len()).map(|i| format!("t{i}")).collect();
        let similarity = heatmap_svg(
            &format!(
                "block {}: task routing similarity (cosine; columns t0.. = rows)",
                a.layer
            ),
            &a.tasks,
            &short,
            &a.similarity,
            0.0,
            1.0,
        );
        for (name, svg) in [("load", load), ("similarity", similarity)] {
            let path = dir.join(format!("{prefix}-routing-block{}-{name}.svg", a.layer));
            std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}
