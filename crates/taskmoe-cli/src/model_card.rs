//! The model card (`README.md`) every `taskmoe export` writes into its folder: Hugging Face hub
//! front matter, then what was trained (variant, router, experts), on what (tasks and labels,
//! the resolved `[data]` section), how long (steps, seed), with which scores (the run folder's
//! `final-test.json`), by which taskmoe (version and commit) and how to load it. Everything comes
//! from the checkpoint's own files and its run folder; nothing is asked of git at export time.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use taskmoe_data::TaskKind;
use taskmoe_model::{param_report, HfExport, HfLayout};
use taskmoe_train::{Checkpoint, Inference, RUN_CONFIG_FILE};

/// The run folder's final test scores, read for the card.
pub const FINAL_TEST_FILE: &str = "final-test.json";

/// The taskmoe version that wrote the card (the workspace version).
pub const TASKMOE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit taskmoe was built from: `TASKMOE_GIT_COMMIT` at build time (`cargo xtask`
/// sets it when it builds the binary), else `unknown`.
pub fn taskmoe_commit() -> &'static str {
    option_env!("TASKMOE_GIT_COMMIT")
        .filter(|c| !c.is_empty())
        .unwrap_or("unknown")
}

/// What the card is written from.
pub struct CardInputs<'a> {
    /// The checkpoint exported.
    pub ckpt: &'a Checkpoint,
    /// The loaded checkpoint (task specs, the full model's configuration).
    pub inf: &'a Inference,
    /// The export (layout, exported tasks, the exported network's configuration, tensors).
    pub export: &'a HfExport,
    /// The exported task when the export is one task's sub-network.
    pub task: Option<&'a str>,
    /// The dtype of the exported weights, as `torch_dtype` names it.
    pub dtype: &'a str,
}

/// The name serde gives a config enum (`task-moe`, `per-task`, `pre`, ...).
fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// Markdown cell text: `|` escaped, newlines flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// One task's final test score.
struct Score {
    metric: String,
    value: f64,
    examples: u64,
}

/// `final-test.json` of `run_dir` by task name, or `None` when the run has none.
fn final_test(run_dir: &Path) -> Result<Option<Vec<(String, Score)>>> {
    let path = run_dir.join(FINAL_TEST_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut scores = Vec::new();
    for t in json["tasks"].as_array().into_iter().flatten() {
        let (Some(task), Some(metric)) = (t["task"].as_str(), t["primary"].as_str()) else {
            continue;
        };
        let Some(value) = t["metrics"][metric].as_f64() else {
            continue; // an unlabeled split: no metrics
        };
        let examples = t["examples"].as_u64().unwrap_or(0);
        scores.push((
            task.to_string(),
            Score {
                metric: metric.to_string(),
                value,
                examples,
            },
        ));
    }
    Ok(Some(scores))
}

/// Renders the card (see the module docs).
pub fn model_card(c: &CardInputs) -> Result<String> {
    let CardInputs {
        ckpt,
        inf,
        export,
        task,
        dtype,
    } = *c;
    let run_dir = ckpt.dir.parent().unwrap_or(&ckpt.dir);
    let run_name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "taskmoe model".into());
    let saved: toml::Table = {
        let path = ckpt.file(RUN_CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            Err(_) => toml::Table::new(),
        }
    };
    let get = |section: &str, key: &str| saved.get(section).and_then(|s| s.get(key)).cloned();
    let full = &inf.card.model;
    let is_moe = full.variant.is_moe();
    let all_classification = export
        .tasks
        .iter()
        .all(|&t| inf.specs[t].kind == TaskKind::Classification);
    let r = &full.moe.router;

    let mut md = String::new();
    // Front matter, as the Hugging Face hub reads it.
    md.push_str("---\nlibrary_name: transformers\ntags:\n- taskmoe\n");
    if is_moe {
        md.push_str("- mixture-of-experts\n");
    }
    md.push_str("- multi-task\n");
    if export.layout == HfLayout::Taskmoe {
        md.push_str("- custom_code\n");
    } else {
        md.push_str("- bert\n");
    }
    if all_classification {
        md.push_str("pipeline_tag: text-classification\n");
    }
    md.push_str("---\n\n");

    let _ = writeln!(md, "# {run_name}\n");
    let cut = match task {
        Some(t) => format!(" cut down to task `{t}`'s dense sub-network"),
        None => String::new(),
    };
    let _ = writeln!(
        md,
        "A taskmoe {} model{cut}, exported by taskmoe {TASKMOE_VERSION} (commit {}) from \
         `checkpoint-{}` of the run `{run_name}` in {} layout, weights in {dtype}.\n",
        name(&full.variant),
        taskmoe_commit(),
        ckpt.step,
        match export.layout {
            HfLayout::Bert => "the `transformers.BertModel`",
            HfLayout::Taskmoe => "taskmoe's",
        },
    );

    md.push_str("## Model\n\n| | |\n|---|---|\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(md, "| {k} | {} |", cell(&v));
    };
    row("variant", name(&full.variant));
    if is_moe {
        row("router kind", name(&r.kind));
        row(
            "experts",
            format!(
                "{} per MoE block, k = {} (renormalised: {}), expert d_ff {}, {} shared, {} experts{}",
                r.num_experts,
                r.k,
                r.renormalize,
                full.moe.d_ff,
                full.moe.num_shared_experts,
                name(&full.moe.expert_kind),
                if full.moe.expert_kind == taskmoe_experts::ExpertKind::Lora {
                    " (exported merged into FFN experts)"
                } else {
                    ""
                }
            ),
        );
        let blocks: Vec<String> = (0..full.num_layers)
            .filter(|&i| full.is_moe_block(i))
            .map(|i| i.to_string())
            .collect();
        row(
            "MoE blocks",
            format!("{} of {} (0-based)", blocks.join(", "), full.num_layers),
        );
    }
    row(
        "encoder",
        format!(
            "{} blocks, d_model {}, {} attention heads, d_ff {}, {}-LN, {} pooling, task embedding {}",
            full.num_layers,
            full.d_model,
            full.num_heads,
            full.d_ff,
            name(&full.norm),
            name(&full.pooling),
            name(&full.task_embedding)
        ),
    );
    if let Some(t) = task {
        row(
            "this export",
            format!(
                "task `{t}` only: every MoE block is one dense FFN of width {} (its experts \
                 side by side, exactly), one head",
                export.model.d_ff
            ),
        );
    }
    let count = |m: &std::collections::BTreeMap<String, tch::Tensor>| -> i64 {
        m.values().map(tch::Tensor::numel).sum::<usize>() as i64
    };
    let (enc, heads) = (count(&export.encoder), count(&export.heads));
    let exported_heads: Vec<_> = export
        .tasks
        .iter()
        .map(|&t| inf.card.heads[t].clone())
        .collect();
    let report = param_report(&export.model, &exported_heads, export.model.max_position);
    row(
        "parameters",
        format!(
            "{} in this export (encoder {enc}, heads {heads}); {} active per token",
            enc + heads,
            report.active_per_token
        ),
    );

    md.push_str("\n## Tasks\n\n");
    if let Some(t) = task {
        let _ = writeln!(
            md,
            "This export is cut to task `{t}`: its one head is task id 0 below.\n"
        );
    }
    md.push_str(
        "| task id | task | kind | labels (class id order) | trained on |\n|---|---|---|---|---|\n",
    );
    for (i, &t) in export.tasks.iter().enumerate() {
        let s = &inf.specs[t];
        let (kind, labels) = match s.kind {
            TaskKind::Classification => ("classification", s.labels.join(", ")),
            TaskKind::Regression => ("regression", "-".to_string()),
        };
        let _ = writeln!(
            md,
            "| {i} | {} | {kind} | {} | {} |",
            cell(&s.name),
            cell(&labels),
            if inf.trained[t] {
                "yes"
            } else {
                "no (held out)"
            }
        );
    }

    md.push_str("\n## Data\n\n");
    let source = get("data", "source")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "synthetic".into());
    let _ = writeln!(
        md,
        "{}\n",
        match source.as_str() {
            "registry" =>
                "Task files listed in a registry (`data.source = \"registry\"`); \
                           paths as the run saved them.",
            _ =>
                "taskmoe's built-in synthetic multi-task benchmark generator \
                  (`data.source = \"synthetic\"`, `[data.synthetic]` below).",
        }
    );
    if let Some(data) = saved.get("data") {
        let mut table = toml::Table::new();
        table.insert("data".into(), data.clone());
        let text = toml::to_string(&table).unwrap_or_default();
        let _ = writeln!(
            md,
            "The resolved `[data]` section:\n\n```toml\n{}```\n",
            text
        );
    } else {
        md.push_str("The checkpoint holds no `config.toml`; the data is not recorded.\n\n");
    }

    md.push_str("## Training\n\n");
    let steps = get("train", "steps").and_then(|v| v.as_integer());
    let seed = get("train", "seed")
        .and_then(|v| v.as_integer())
        .unwrap_or(0);
    let _ = writeln!(
        md,
        "{} of {} training steps (this export is of the checkpoint at step {}), seed {seed}.\n",
        ckpt.step,
        steps.map_or("?".to_string(), |s| s.to_string()),
        ckpt.step,
    );

    md.push_str("## Final test\n\n");
    match final_test(run_dir)? {
        Some(scores) => {
            md.push_str(
                "The run's final test (`final-test.json` of the run folder, evaluated on the \
                 weights `eval.test_checkpoint` chose):\n\n| task | metric | value | examples |\n|---|---|---|---|\n",
            );
            for &t in &export.tasks {
                let task_name = &inf.specs[t].name;
                if let Some((_, s)) = scores.iter().find(|(n, _)| n == task_name) {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {:.4} | {} |",
                        cell(task_name),
                        cell(&s.metric),
                        s.value,
                        s.examples
                    );
                }
            }
            md.push('\n');
        }
        None => md.push_str(
            "No `final-test.json` in the run folder (the run did not finish its final test, or \
             the checkpoint was exported away from its run folder).\n\n",
        ),
    }

    md.push_str("## How to load\n\n");
    let _ = writeln!(md, "{}.\n", export.layout.how_to_load());
    let first = inf.specs[export.tasks[0]].name.clone();
    match export.layout {
        HfLayout::Taskmoe => {
            let _ = writeln!(
                md,
                "```python\nfrom transformers import AutoModel, AutoTokenizer\n\n\
                 tokenizer = AutoTokenizer.from_pretrained(folder)\n\
                 model = AutoModel.from_pretrained(folder, trust_remote_code=True)\n\
                 batch = tokenizer([\"some text\"], return_tensors=\"pt\")\n\
                 logits = model(**batch, task_ids=[model.task_id(\"{first}\")]).logits\n```\n"
            );
        }
        HfLayout::Bert => {
            md.push_str(
                "```python\nfrom transformers import AutoTokenizer, BertModel\n\n\
                 tokenizer = AutoTokenizer.from_pretrained(folder)\n\
                 encoder = BertModel.from_pretrained(folder, add_pooling_layer=False)\n\
                 hidden = encoder(**tokenizer([\"some text\"], return_tensors=\"pt\")).last_hidden_state\n\
                 # taskmoe's logits (pooling and heads): TaskMoeExport(folder) of python/taskmoe_hf.py\n```\n\n",
            );
        }
    }
    let _ = writeln!(
        md,
        "Logits are one row per example, as wide as the widest head; a task's columns past its \
         own labels hold -1e9. Files: see taskmoe's docs/checkpoints.md (\"Exporting\").\n\n\
         ## Provenance\n\ntaskmoe {TASKMOE_VERSION}, commit {}; source checkpoint step {}; \
         exported in {dtype}.",
        taskmoe_commit(),
        ckpt.step
    );
    Ok(md)
}
