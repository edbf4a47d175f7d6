//! What a finished run left behind: test scores per task and routing per MoE block.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};
use serde::Deserialize;

use taskmoe_data::TaskSpec;
use taskmoe_eval::routing::analyze;
use taskmoe_eval::routing_quality::{family_routing, FamilyRouting};
use taskmoe_eval::EvalResult;

use crate::report::{header, md_table};
use crate::runner::RESULT_FILE;
use crate::stats::{paired, Summary};

/// The routing file `taskmoe train` writes beside its scores.
pub const ROUTING_FILE: &str = "final-test-routing.json";

/// Test scores and routing of one finished run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The run folder.
    pub dir: PathBuf,
    /// Each evaluated task's headline metric.
    pub scores: BTreeMap<String, f64>,
    /// Every metric of every evaluated task.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// Routing per MoE block (empty for dense models).
    pub routing: Vec<BlockRouting>,
    /// Real (non-padding) training tokens over all steps, from `metrics.jsonl` (summed over
    /// the per-task models of a single-task run).
    pub tokens: u64,
}

/// `P(expert | task)` of one MoE block over the evaluated tasks.
#[derive(Clone, Debug, Deserialize)]
pub struct BlockRouting {
    /// Block index.
    pub layer: usize,
    /// Tasks, in the order of `load`'s rows.
    pub tasks: Vec<String>,
    /// Rows of `P(expert | task)`.
    pub load: Vec<Vec<f64>>,
    /// The family of each task (empty in routing files written before families were
    /// recorded).
    #[serde(default)]
    pub families: Vec<String>,
}

impl BlockRouting {
    /// The same block with its tasks ordered by family (stable; first appearance of each
    /// family), so that [`taskmoe_eval::routing::family_blocks`] outlines each family.
    /// Unchanged without families.
    pub fn by_family(&self) -> BlockRouting {
        if self.families.len() != self.tasks.len() {
            return self.clone();
        }
        let mut order: Vec<usize> = (0..self.tasks.len()).collect();
        let first = |f: &String| self.families.iter().position(|g| g == f).unwrap_or(0);
        order.sort_by_key(|&i| first(&self.families[i]));
        BlockRouting {
            layer: self.layer,
            tasks: order.iter().map(|&i| self.tasks[i].clone()).collect(),
            load: order.iter().map(|&i| self.load[i].clone()).collect(),
            families: order.iter().map(|&i| self.families[i].clone()).collect(),
        }
    }

    /// Whether this block's routing follows the task families; `None` without families.
    pub fn family(&self) -> Option<FamilyRouting> {
        (self.families.len() == self.tasks.len() && !self.families.is_empty())
            .then(|| family_routing(&self.load, &self.families))
    }
}

/// A markdown table: per model (`name`, its runs over seeds) and MoE block, the mean routing
/// overlap of two tasks of one family and of two of different families (mean ± std over
/// seeds), their seed-paired difference with its 95% interval, the adjusted Rand index of a
/// clustering by routing against the families, and how many tasks have their nearest task by
/// routing in their own family (mean over seeds). `None` when no run has families.
pub fn family_table(models: &[(&str, Vec<Vec<BlockRouting>>)]) -> Option<String> {
    let mut rows = Vec::new();
    for (name, runs) in models {
        let layers: std::collections::BTreeSet<usize> =
            runs.iter().flatten().map(|b| b.layer).collect();
        for layer in layers {
            let measured: Vec<FamilyRouting> = runs
                .iter()
                .filter_map(|r| r.iter().find(|b| b.layer == layer)?.family())
                .collect();
            let pairs: Vec<(f64, f64)> = measured
                .iter()
                .filter_map(|f| Some((f.within_family?, f.across_family?)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let (within, across): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
            let ari: Vec<f64> = measured.iter().filter_map(|f| f.family_ari).collect();
            let nearest: Vec<f64> = measured
                .iter()
                .map(|f| f.nearest_in_family as f64 / f.with_family_mate.max(1) as f64)
                .collect();
            rows.push(vec![
                name.to_string(),
                layer.to_string(),
                Summary::of(&within).show(),
                Summary::of(&across).show(),
                paired(&within, &across).show(),
                Summary::of(&ari).show(),
                Summary::of(&nearest).show(),
                within.len().to_string(),
            ]);
        }
    }
    (!rows.is_empty()).then(|| {
        md_table(
            &header(&[
                "model",
                "block",
                "overlap within family",
                "across families",
                "within - across [95% CI]",
                "family ARI",
                "nearest task in family (share)",
                "seeds",
            ]),
            &rows,
        )
    })
}

/// The step fields of an evaluation line or of `final-test.json`.
#[derive(Deserialize)]
struct Step {
    step: Option<u64>,
    checkpoint_step: Option<u64>,
}

#[derive(Deserialize)]
struct Scores {
    tasks: Vec<TaskScore>,
}

#[derive(Deserialize)]
struct TaskScore {
    task: String,
    metrics: BTreeMap<String, f64>,
    primary: String,
}

impl RunResult {
    /// Reads `final-test.json` (and the routing file when present) from `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(RESULT_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let parsed: Scores =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut scores = BTreeMap::new();
        let mut metrics = BTreeMap::new();
        for t in parsed.tasks {
            let Some(&v) = t.metrics.get(&t.primary) else {
                bail!(
                    "{}: task `{}` lacks its metric `{}`",
                    path.display(),
                    t.task,
                    t.primary
                );
            };
            scores.insert(t.task.clone(), v);
            metrics.insert(t.task, t.metrics);
        }
        let routing_path = dir.join(ROUTING_FILE);
        let routing = if routing_path.is_file() {
            let text = std::fs::read_to_string(&routing_path)
                .with_context(|| format!("reading {}", routing_path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", routing_path.display()))?
        } else {
            Vec::new()
        };
        Self::with_tokens(dir, scores, metrics, routing)
    }

    /// The result of run folder `dir` from its scores, metrics and routing, with the training
    /// tokens read from the run's `metrics.jsonl`.
    fn with_tokens(
        dir: &Path,
        scores: BTreeMap<String, f64>,
        metrics: BTreeMap<String, BTreeMap<String, f64>>,
        routing: Vec<BlockRouting>,
    ) -> Result<Self> {
        Ok(RunResult {
            dir: dir.to_path_buf(),
            scores,
            metrics,
            routing,
            tokens: training_tokens(dir)?,
        })
    }

    /// The family routing measures of the run, each the mean over its MoE blocks that have
    /// one: routing overlap within minus across families, and the family ARI (`None` without
    /// families or MoE blocks).
    pub fn family_measures(&self) -> (Option<f64>, Option<f64>) {
        let families: Vec<_> = self.routing.iter().filter_map(|b| b.family()).collect();
        let gaps: Vec<f64> = families
            .iter()
            .filter_map(|f| Some(f.within_family? - f.across_family?))
            .collect();
        let ari: Vec<f64> = families.iter().filter_map(|f| f.family_ari).collect();
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        (mean(&gaps), mean(&ari))
    }

    /// Each task's headline metric in the validation evaluation of the weights the run tested
    /// (the step `final-test.json` names: its best validation checkpoint under early
    /// stopping), or in its last evaluation when the run names none (`eval.jsonl`; the trainer
    /// always evaluates at the end).
    pub fn validation(dir: &Path) -> Result<BTreeMap<String, f64>> {
        let path = dir.join("eval.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let tested = Self::tested_step(dir)?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let line = match tested {
            Some(step) => lines
                .iter()
                .rev()
                .find(|l| serde_json::from_str::<Step>(l).is_ok_and(|s| s.step == Some(step)))
                .with_context(|| {
                    format!("{} holds no evaluation at step {step}", path.display())
                })?,
            None => lines
                .last()
                .with_context(|| format!("{} holds no evaluation", path.display()))?,
        };
        let parsed: Scores =
            serde_json::from_str(line).with_context(|| format!("parsing {}", path.display()))?;
        Ok(parsed
            .tasks
            .into_iter()
            .filter_map(|t| t.metrics.get(&t.primary).map(|&v| (t.task, v)))
            .collect())
    }

    /// The step of the weights the run's final test evaluated (`checkpoint_step` of
    /// `final-test.json`); `None` when the file does not name one.
    pub fn tested_step(dir: &Path) -> Result<Option<u64>> {
        let path = dir.join(RESULT_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let step: Step =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(step.checkpoint_step)
    }

    /// The checkpoint whose weights the run's final test evaluated: its best validation
    /// checkpoint under early stopping (`eval.test_checkpoint = "best"`), else its last. Other
    /// experiments' stages start from it or test it again, so every arm is used at the weights
    /// it reports. Falls back to the run folder (its newest usable checkpoint) when the step
    /// is not named or its folder is gone.
    pub fn tested_checkpoint(dir: &Path) -> Result<PathBuf> {
        Ok(Self::tested_step(dir)?
            .map(|step| taskmoe_train::checkpoint_dir(dir, step))
            .filter(|ckpt| ckpt.is_dir())
            .unwrap_or_else(|| dir.to_path_buf()))
    }

    /// The mean over `tasks` of the validation scores of the tested weights of the run in
    /// `dir` ([`Self::validation`]).
    pub fn validation_mean(dir: &Path, tasks: &[String]) -> Result<f64> {
        let scores = Self::validation(dir)?;
        let mut sum = 0.0;
        for t in tasks {
            sum += scores.get(t).with_context(|| {
                format!(
                    "{}: no validation score of `{t}`",
                    dir.join("eval.jsonl").display()
                )
            })?;
        }
        Ok(sum / tasks.len().max(1) as f64)
    }

    /// A secondary metric of `task` (e.g. `balanced-accuracy`, `matthews`), when recorded.
    pub fn metric(&self, task: &str, metric: &str) -> Option<f64> {
        self.metrics.get(task).and_then(|m| m.get(metric)).copied()
    }

    /// The mean of `metric` over `tasks` (`None` when a task lacks it).
    pub fn mean_metric(&self, tasks: &[String], metric: &str) -> Option<f64> {
        let values: Option<Vec<f64>> = tasks.iter().map(|t| self.metric(t, metric)).collect();
        values.map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
    }

    /// The headline metric of `task`.
    pub fn score(&self, task: &str) -> Result<f64> {
        self.scores.get(task).copied().with_context(|| {
            format!(
                "{} has no score for task `{task}`",
                self.dir.join(RESULT_FILE).display()
            )
        })
    }

    /// The result of evaluating `dir`'s model anew (`result`, with `specs` in task-id order):
    /// every evaluated task's metrics and headline score, and its routing with the families;
    /// the training tokens from the run's `metrics.jsonl`.
    pub fn from_evaluation(dir: &Path, result: &EvalResult, specs: &[TaskSpec]) -> Result<Self> {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let families: Vec<String> = specs.iter().map(|s| s.family.clone()).collect();
        let mut scores = BTreeMap::new();
        let mut metrics = BTreeMap::new();
        for t in &result.tasks {
            if let Some(&v) = t.metrics.get(&t.primary) {
                scores.insert(t.task.clone(), v);
            }
            metrics.insert(t.task.clone(), t.metrics.clone());
        }
        let routing = result
            .routing
            .iter()
            .map(|(layer, counts)| {
                let a = analyze(*layer, &names, &families, counts, None);
                BlockRouting {
                    layer: a.layer,
                    tasks: a.tasks,
                    load: a.load,
                    families: a.families,
                }
            })
            .collect();
        Self::with_tokens(dir, scores, metrics, routing)
    }

    /// The mean headline metric over `tasks`.
    pub fn mean(&self, tasks: &[String]) -> Result<f64> {
        if tasks.is_empty() {
            bail!("a mean over no tasks");
        }
        let mut sum = 0.0;
        for t in tasks {
            sum += self.score(t)?;
        }
        Ok(sum / tasks.len() as f64)
    }
}

/// Sums the `tokens` of `dir/metrics.jsonl`, or of `dir/*/metrics.jsonl` when `dir` holds
/// one run per task.
/// Where the early-stopped runs among `dirs` were tested: how many had their best validation
/// checkpoint at their last evaluation (the budget may have stopped them before their best),
/// as a sentence for the reports; `None` when no run names its tested step.
pub fn stopping_summary(dirs: &[PathBuf]) -> Result<Option<String>> {
    let (mut named, mut at_end, mut fractions) = (0usize, 0usize, Vec::new());
    for dir in dirs {
        let Some(step) = RunResult::tested_step(dir)? else {
            continue;
        };
        let path = dir.join("eval.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let last = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Step>(l).ok()?.step)
            .max();
        let Some(last) = last.filter(|&l| l > 0) else {
            continue;
        };
        named += 1;
        at_end += usize::from(step >= last);
        fractions.push(step as f64 / last as f64);
    }
    if named == 0 {
        return Ok(None);
    }
    Ok(Some(format!(
        "The best validation checkpoint was the last evaluation in {at_end} of {named} runs; \
         the tested step was at {:.2} of the run on average (1 = the end). Many runs best at \
         the end would mean the budget stops arms before their best.",
        Summary::of(&fractions).mean
    )))
}

fn training_tokens(dir: &Path) -> Result<u64> {
    let own = dir.join("metrics.jsonl");
    let files: Vec<PathBuf> = if own.is_file() {
        vec![own]
    } else {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path().join("metrics.jsonl")))
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    };
    let mut total = 0;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}", file.display(), i + 1))?;
            total += v["tokens"].as_u64().unwrap_or(0);
        }
    }
    Ok(total)
}

/// Histogram intersection `sum_e min(p_e, q_e)` of two expert distributions: 1 for identical
/// routing, 0 for disjoint experts.
pub fn routing_overlap(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a.min(*b)).sum()
}

/// Mean routing overlap, over MoE blocks, between each task of `a` and each task of `b`
/// (pairs of one task with itself left out); `None` without routing for them.
pub fn mean_overlap(routing: &[BlockRouting], a: &[String], b: &[String]) -> Option<f64> {
    let mut values = Vec::new();
    for block in routing {
        let row = |t: &String| block.tasks.iter().position(|x| x == t);
        for ta in a {
            for tb in b {
                if ta == tb {
                    continue;
                }
                if let (Some(i), Some(j)) = (row(ta), row(tb)) {
                    values.push(routing_overlap(&block.load[i], &block.load[j]));
                }
            }
        }
    }
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_one_for_equal_and_zero_for_disjoint_routing() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!((routing_overlap(&[0.5, 0.5, 0.0], &[0.5, 0.5, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(routing_overlap(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        let block = BlockRouting {
            layer: 0,
            tasks: vec!["a".into(), "b".into(), "c".into()],
            load: vec![vec![1.0, 0.0], vec![1.0, 0.0], vec![0.0, 1.0]],
            families: names(&["f", "f", "g"]),
        };
        assert_eq!(
            mean_overlap(std::slice::from_ref(&block), &names(&["a"]), &names(&["b"])),
            Some(1.0)
        );
        assert_eq!(
            mean_overlap(
                std::slice::from_ref(&block),
                &names(&["c"]),
                &names(&["a", "b"])
            ),
            Some(0.0)
        );
        assert_eq!(mean_overlap(&[block], &names(&["x"]), &names(&["a"])), None);
    }

    #[test]
    fn the_family_table_pairs_within_and_across_over_seeds() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let run = |shared: f64| {
            vec![BlockRouting {
                layer: 1,
                tasks: names(&["a1", "a2", "b1", "b2"]),
                load: vec![
                    vec![1.0 - shared, shared],
                    vec![1.0 - shared, shared],
                    vec![shared, 1.0 - shared],
                    vec![shared, 1.0 - shared],
                ],
                families: names(&["a", "a", "b", "b"]),
            }]
        };
        let table = family_table(&[("task-MoE", vec![run(0.1), run(0.2), run(0.3)])]).unwrap();
        // Within is 1 on every seed; across is 0.2, 0.4, 0.6: the difference 0.6 +- 0.2.
        assert!(
            table.contains("| task-MoE | 1 | 1.000 ± 0.000 | 0.400 ± 0.200 |"),
            "{table}"
        );
        assert!(table.contains("+0.600 ["), "{table}");
        assert!(table.contains("| 3 |"), "{table}");
        let old = BlockRouting {
            families: Vec::new(),
            ..run(0.1).remove(0)
        };
        assert!(family_table(&[("old", vec![vec![old]])]).is_none());
    }
}
