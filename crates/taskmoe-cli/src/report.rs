//! The per-task table and the files an evaluation leaves behind.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use taskmoe_data::TaskSpec;
use taskmoe_eval::routing::{analyze, family_blocks, heatmap_svg, RoutingAnalysis};
use taskmoe_eval::EvalResult;

/// How a config value is spelled in TOML (`task-moe`, not `TaskMoe`).
pub fn spelling<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// The routing analysis of every MoE block of `result` (`specs` in task-id order).
pub fn analyses(result: &EvalResult, specs: &[TaskSpec]) -> Vec<RoutingAnalysis> {
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let families: Vec<String> = specs.iter().map(|s| s.family.clone()).collect();
    result
        .routing
        .iter()
        .map(|(layer, counts)| {
            let gates = result.gates.get(layer).map(Vec::as_slice);
            analyze(*layer, &names, &families, counts, gates)
        })
        .collect()
}

/// The per-task table: examples, headline metric, the other metrics, majority baseline; then,
/// for a MoE model, whether its routing follows the task families, block by block.
pub fn table(result: &EvalResult, split: &str, specs: &[TaskSpec]) -> String {
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
    out + &routing_table(&analyses(result, specs))
}

/// Per MoE block: the mean routing overlap of two tasks of one family and of two tasks of
/// different families, how many tasks have a task of their own family as nearest by routing,
/// the adjusted Rand index of clustering the tasks by routing against their families, and
/// the task-expert mutual information; empty for a dense model.
pub fn routing_table(analyses: &[RoutingAnalysis]) -> String {
    if analyses.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "routing   overlap in family / across  nearest in family  family ARI  I(task; expert)  \
         entropy / ln E  top-1 margin\n",
    );
    let show = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    for a in analyses {
        let f = &a.family;
        let experts = a.load.first().map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "block {:<3} {:>7} / {:<7}          {:>7}  {:>10}  {:>10.3} nats  {:>6} / {:.2}  {:>12}",
            a.layer,
            show(f.within_family),
            show(f.across_family),
            format!("{}/{}", f.nearest_in_family, f.with_family_mate),
            show(f.family_ari),
            a.mutual_information,
            show(a.gate_entropy),
            (experts.max(1) as f64).ln(),
            show(a.top1_margin),
        );
    }
    out
}

/// Writes `<prefix>.json` (scores and routing, and `checkpoint_step`: the step of the weights
/// evaluated, when given), `<prefix>-predictions.jsonl` and `<prefix>-routing.json` (with the
/// family measures) into `dir`.
pub fn write(
    result: &EvalResult,
    dir: &Path,
    prefix: &str,
    specs: &[TaskSpec],
    checkpoint_step: Option<u64>,
) -> Result<()> {
    let scores = dir.join(format!("{prefix}.json"));
    let mut json = serde_json::to_value(result)?;
    if let (Some(step), Some(obj)) = (checkpoint_step, json.as_object_mut()) {
        obj.insert("checkpoint_step".into(), step.into());
    }
    std::fs::write(&scores, serde_json::to_string_pretty(&json)? + "\n")
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
    let analyses = analyses(result, specs);
    let routing = dir.join(format!("{prefix}-routing.json"));
    std::fs::write(&routing, serde_json::to_string_pretty(&analyses)? + "\n")
        .with_context(|| format!("writing {}", routing.display()))?;
    for a in analyses.iter().map(RoutingAnalysis::by_family) {
        // Tasks ordered by family, each family's block outlined.
        let blocks = family_blocks(&a.families);
        let experts: Vec<String> = (0..a.load.first().map_or(0, Vec::len))
            .map(|e| format!("e{e}"))
            .collect();
        let load = heatmap_svg(
            &format!(
                "block {}: P(expert | task), I(task; expert) = {:.3} nats; families outlined",
                a.layer, a.mutual_information
            ),
            &a.tasks,
            &experts,
            &a.load,
            0.0,
            1.0,
            &blocks,
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
            &blocks,
        );
        for (name, svg) in [("load", load), ("similarity", similarity)] {
            let path = dir.join(format!("{prefix}-routing-block{}-{name}.svg", a.layer));
            std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}
