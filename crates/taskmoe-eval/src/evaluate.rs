//! Running a model over evaluation splits: predictions, per-task metrics, routing counts.

use std::collections::BTreeMap;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use taskmoe_data::{EncodedExample, Label, TaskData, TaskKind, TaskSpec};
use taskmoe_model::{ModelInput, MultiTaskModel};

use crate::batching::{eval_batch, eval_batch_positions, EvalBatching};
use crate::metrics::{compute, majority_baseline, MetricKind};

/// An error while evaluating (the message names the task).
#[derive(Debug, thiserror::Error)]
#[error("evaluating {task}: {message}")]
pub struct EvaluateError {
    /// The task being evaluated.
    pub task: String,
    /// What went wrong.
    pub message: String,
}

/// A label or a prediction as written to predictions files: a class name, or a number for
/// regression.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// A class, by its name in the task's `labels`.
    Class(String),
    /// A regression value.
    Value(f64),
}

/// One example's prediction, as exported to `*-predictions.jsonl`: task, the example's index
/// in its split, its source id (the task's `id_field` value; the index when it has none), the
/// gold label and the prediction by name (values for regression), and the class
/// probabilities by label name.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// Task name.
    pub task: String,
    /// The example's index within the task's split.
    pub index: u64,
    /// The source id: the `id_field` value read from the file, else the index.
    pub id: String,
    /// Gold label (`None` for an unlabeled split).
    pub label: Option<Answer>,
    /// Predicted label or value.
    pub prediction: Answer,
    /// Class probabilities by label name (classification only).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub probabilities: serde_json::Map<String, serde_json::Value>,
    /// Gold class index or value, for the metrics (`None` unlabeled).
    #[serde(skip)]
    pub gold: Option<f64>,
    /// Predicted class index or value, for the metrics.
    #[serde(skip)]
    pub predicted: f64,
}

/// The scores of one task.
#[derive(Clone, Debug, Serialize)]
pub struct TaskScores {
    /// Task name.
    pub task: String,
    /// Examples scored.
    pub examples: usize,
    /// Metric name -> value: accuracy, macro-F1 and Matthews for classification, Pearson,
    /// Spearman and MSE for regression, plus any other metric the task spec names.
    pub metrics: BTreeMap<String, f64>,
    /// The task's headline metric (the first its spec names).
    pub primary: String,
    /// Whether the split had labels; an unlabeled split gets predictions and no metrics.
    pub labeled: bool,
    /// Accuracy of always predicting the most frequent label of this split itself, the best
    /// any constant predictor can do on it (classification only).
    pub majority_baseline: Option<f64>,
}

/// Everything one evaluation produced.
#[derive(Clone, Debug, Serialize)]
pub struct EvalResult {
    /// Scores per task, in the order evaluated.
    pub tasks: Vec<TaskScores>,
    /// Every prediction.
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
    /// Routing per MoE block (by block index): `[tasks][experts]` counts of the evaluated
    /// examples' tokens by their first choice (the expert with the largest combine weight,
    /// before any capacity drop): for top-1 routers every routing slot, for `k > 1` and dense
    /// mixtures (`mmoe`, `cgc`) the expert that leads each token's mixture.
    pub routing: BTreeMap<usize, Vec<Vec<i64>>>,
    /// How decided the gates are, per MoE block and task id (tasks without tokens have
    /// `tokens = 0`).
    pub gates: BTreeMap<usize, Vec<GateStats>>,
}

/// How decided one task's gates are in one MoE block, over its evaluated tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct GateStats {
    /// Mean entropy (nats) of the router's probabilities: `ln E` for a uniform gate, 0 for a
    /// one-hot one.
    pub entropy: f64,
    /// Mean top-1 margin: the most probable expert's probability minus the second's.
    pub top1_margin: f64,
    /// Tokens the means are over.
    pub tokens: u64,
}

impl EvalResult {
    /// The mean of the tasks' primary metrics where higher is better (the run's headline
    /// number; a task headlined by a lower-is-better metric such as MSE is left out, so the
    /// mean always rises with quality).
    pub fn mean_primary(&self) -> f64 {
        let values: Vec<f64> = self
            .tasks
            .iter()
            .filter(|t| {
                MetricKind::ALL
                    .iter()
                    .find(|k| k.name() == t.primary)
                    .is_none_or(|k| k.higher_is_better())
            })
            .filter_map(|t| t.metrics.get(&t.primary).copied())
            .collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    }
}

/// The data an evaluation reads: specs and the split to score, in task-id order.
pub struct EvalData<'a> {
    /// Task specs.
    pub specs: &'a [TaskSpec],
    /// The split to score.
    pub split: &'a [TaskData],
    /// Padded length.
    pub seq_len: usize,
    /// Padding id.
    pub pad_id: i64,
}

/// Evaluates `model` (in evaluation mode) on `tasks` of `data`, in length-bucketed batches of
/// `batch_size` ([`EvalBatching::bucketed`]).
pub fn evaluate(
    model: &MultiTaskModel,
    data: &EvalData,
    tasks: &[usize],
    batch_size: usize,
    device: Device,
) -> Result<EvalResult, EvaluateError> {
    evaluate_with(
        model,
        data,
        tasks,
        EvalBatching::bucketed(batch_size),
        device,
    )
}

/// [`evaluate`] with the batching chosen.
///
/// Reads back per task: its logits once (the predictions, after its last batch); at the end:
/// each MoE block's task x expert routing counts once (summed on the device over every
/// batch). The model's own reads per forward pass are in [`MultiTaskModel::forward`].
/// Predictions come back in split order whatever the batching.
pub fn evaluate_with(
    model: &MultiTaskModel,
    data: &EvalData,
    tasks: &[usize],
    batching: EvalBatching,
    device: Device,
) -> Result<EvalResult, EvaluateError> {
    let logits = run_batches(model, data, tasks, batching, device, Shard::WHOLE)?;
    assemble(data, logits)
}

/// Which of an evaluation's batches one process runs: those numbered `rank` modulo `size`,
/// counting every task's batches in one sequence (see [`crate::evaluate_sharded`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shard {
    /// This process's number.
    pub rank: usize,
    /// Processes sharing the evaluation.
    pub size: usize,
}

impl Shard {
    /// One process runs every batch.
    pub const WHOLE: Shard = Shard { rank: 0, size: 1 };
}

/// What one process's forward passes produced, before any prediction is read off.
pub(crate) struct Logits {
    /// Per task evaluated (those with examples, in the order asked): the task, the split
    /// positions of the examples this process ran, and their padded logits in that order.
    /// `[n, MultiTaskModel::logits_width]` fp32 (`n` may be 0)
    pub tasks: Vec<(usize, Vec<usize>, Tensor)>,
    /// Per MoE block: task x expert first-choice counts summed over the batches run.
    /// `[num_tasks, num_experts]` int64
    pub routing: BTreeMap<usize, Tensor>,
    /// Per MoE block: per task, sums of gate entropy and top-1 margin and the token count.
    /// `[num_tasks, 3]` fp32
    pub gates: BTreeMap<usize, Tensor>,
    /// Batches this process ran.
    pub batches: usize,
}

/// Runs the model over `shard`'s batches of `tasks`. The batches are a pure function of the
/// split and `batching` ([`crate::eval_batches`]), so the shards of all ranks together run
/// exactly the batches of a single process, and each example gets the same logits.
pub(crate) fn run_batches(
    model: &MultiTaskModel,
    data: &EvalData,
    tasks: &[usize],
    batching: EvalBatching,
    device: Device,
    shard: Shard,
) -> Result<Logits, EvaluateError> {
    let mut out = Logits {
        tasks: Vec::new(),
        routing: BTreeMap::new(),
        gates: BTreeMap::new(),
        batches: 0,
    };
    let width = model.logits_width() as i64;
    let mut numbered = 0usize;
    for &task in tasks {
        let spec = &data.specs[task];
        let fail = |message: String| EvaluateError {
            task: spec.name.clone(),
            message,
        };
        let split = &data.split[task];
        if split.examples.is_empty() {
            continue;
        }
        let mut logits = vec![Tensor::zeros([0, width], (Kind::Float, device))];
        let mut positions = Vec::new();
        for batch_positions in eval_batch_positions(split, batching) {
            numbered += 1;
            if (numbered - 1) % shard.size != shard.rank {
                continue;
            }
            let batch = eval_batch(split, &batch_positions, batching, data.seq_len, data.pad_id)
                .map_err(|e| fail(e.to_string()))?;
            let t = batch.to_tensors(device).map_err(|e| fail(e.to_string()))?;
            let forward = tch::no_grad(|| {
                model.forward(
                    &ModelInput {
                        input_ids: &t.input_ids,
                        attention_mask: &t.attention_mask,
                        token_type_ids: Some(&t.token_type_ids),
                        task_ids: &t.task_ids,
                    },
                    false,
                )
            })
            .map_err(|e| fail(e.to_string()))?;
            for (layer, stats) in &forward.stats {
                let counts = stats
                    .task_first_choice
                    .as_ref()
                    .expect("evaluation counts first choices")
                    .shallow_clone();
                out.routing
                    .entry(*layer)
                    .and_modify(|sum| *sum += &counts)
                    .or_insert(counts);
                if let Some(gates) = &stats.gate_sums {
                    let gates = gates.shallow_clone();
                    out.gates
                        .entry(*layer)
                        .and_modify(|sum| *sum += &gates)
                        .or_insert(gates);
                }
            }
            logits.push(forward.logits);
            positions.extend(batch_positions);
            out.batches += 1;
        }
        out.tasks.push((task, positions, Tensor::cat(&logits, 0)));
    }
    Ok(out)
}

/// The predictions, scores and routing counts from the logits of every batch (one process's,
/// or all ranks' gathered).
pub(crate) fn assemble(data: &EvalData, logits: Logits) -> Result<EvalResult, EvaluateError> {
    let mut result = EvalResult {
        tasks: Vec::new(),
        predictions: Vec::new(),
        routing: BTreeMap::new(),
        gates: BTreeMap::new(),
    };
    for (task, positions, logits) in logits.tasks {
        let spec = &data.specs[task];
        let split = &data.split[task];
        let rows: Vec<&EncodedExample> = positions.iter().map(|&i| &split.examples[i]).collect();
        let mut preds: Vec<(usize, Prediction)> = positions
            .iter()
            .copied()
            .zip(predictions(spec, &logits, &rows))
            .collect();
        preds.sort_by_key(|(i, _)| *i);
        let preds: Vec<Prediction> = preds.into_iter().map(|(_, p)| p).collect();
        let scores = score(spec, &preds).map_err(|message| EvaluateError {
            task: spec.name.clone(),
            message,
        })?;
        result.tasks.push(scores);
        result.predictions.extend(preds);
    }
    let num_tasks = data.specs.len();
    for (layer, sum) in logits.routing {
        let counts: Vec<i64> =
            Vec::try_from(&sum.reshape([-1])).map_err(|e: tch::TchError| EvaluateError {
                task: "routing counts".into(),
                message: e.to_string(),
            })?;
        let experts = counts.len() / num_tasks;
        result.routing.insert(
            layer,
            counts.chunks(experts).map(|row| row.to_vec()).collect(),
        );
    }
    for (layer, sums) in logits.gates {
        let sums: Vec<f64> = Vec::try_from(&sums.to_kind(Kind::Double).reshape([-1])).map_err(
            |e: tch::TchError| EvaluateError {
                task: "gate statistics".into(),
                message: e.to_string(),
            },
        )?;
        let per_task = sums
            .chunks(3)
            .map(|c| {
                let n = c[2].max(1.0);
                GateStats {
                    entropy: c[0] / n,
                    top1_margin: c[1] / n,
                    tokens: c[2].round() as u64,
                }
            })
            .collect();
        result.gates.insert(layer, per_task);
    }
    Ok(result)
}

/// The predictions for a batch of `rows` (the examples, in batch order) from its logits.
pub fn predictions(spec: &TaskSpec, logits: &Tensor, rows: &[&EncodedExample]) -> Vec<Prediction> {
    let logits = logits.to_kind(Kind::Float);
    let id = |e: &EncodedExample| e.source_id.clone().unwrap_or_else(|| e.id.to_string());
    let class_name = |c: usize| spec.labels.get(c).cloned().unwrap_or_else(|| c.to_string());
    match spec.kind {
        TaskKind::Classification => {
            let n = spec.labels.len().max(2) as i64;
            let probs = logits.narrow(1, 0, n).softmax(-1, Kind::Float);
            let table: Vec<Vec<f32>> = Vec::try_from(&probs).unwrap_or_default();
            table
                .into_iter()
                .zip(rows)
                .map(|(p, e)| {
                    let best = p
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f32::MIN),
                            |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                        )
                        .0;
                    let gold = e.label.class();
                    Prediction {
                        task: spec.name.clone(),
                        index: e.id,
                        id: id(e),
                        label: gold.map(|c| Answer::Class(class_name(c as usize))),
                        prediction: Answer::Class(class_name(best)),
                        probabilities: p
                            .iter()
                            .enumerate()
                            .map(|(i, &v)| (class_name(i), serde_json::json!(v)))
                            .collect(),
                        gold: gold.map(|c| c as f64),
                        predicted: best as f64,
                    }
                })
                .collect()
        }
        TaskKind::Regression => {
            let values: Vec<f32> = Vec::try_from(&logits.select(1, 0)).unwrap_or_default();
            values
                .into_iter()
                .zip(rows)
                .map(|(v, e)| {
                    let gold = match e.label {
                        Label::Value(x) => Some(x as f64),
                        Label::Class(c) => Some(c as f64),
                        Label::Missing => None,
                    };
                    Prediction {
                        task: spec.name.clone(),
                        index: e.id,
                        id: id(e),
                        label: gold.map(Answer::Value),
                        prediction: Answer::Value(v as f64),
                        probabilities: serde_json::Map::new(),
                        gold,
                        predicted: v as f64,
                    }
                })
                .collect()
        }
    }
}

fn score(spec: &TaskSpec, preds: &[Prediction]) -> Result<TaskScores, String> {
    let mut kinds: Vec<MetricKind> = match spec.kind {
        TaskKind::Classification => vec![
            MetricKind::Accuracy,
            MetricKind::BalancedAccuracy,
            MetricKind::MacroF1,
            MetricKind::Matthews,
        ],
        TaskKind::Regression => vec![MetricKind::Pearson, MetricKind::Spearman, MetricKind::Mse],
    };
    let primary = spec
        .metrics
        .first()
        .map(|&m| MetricKind::from(m))
        .unwrap_or(kinds[0]);
    for &m in &spec.metrics {
        let k = MetricKind::from(m);
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    let mut metrics = BTreeMap::new();
    let mut majority = None;
    let labeled = preds.iter().all(|p| p.gold.is_some());
    if !labeled {
        return Ok(TaskScores {
            task: spec.name.clone(),
            examples: preds.len(),
            metrics,
            primary: primary.name().to_string(),
            labeled,
            majority_baseline: None,
        });
    }
    match spec.kind {
        TaskKind::Classification => {
            let p: Vec<usize> = preds.iter().map(|p| p.predicted as usize).collect();
            let l: Vec<usize> = preds
                .iter()
                .map(|p| p.gold.unwrap_or(0.0).max(0.0) as usize)
                .collect();
            for k in kinds {
                metrics.insert(
                    k.name().to_string(),
                    compute(k, &p, &l).map_err(|e| e.to_string())?,
                );
            }
            // The best constant predictor on these very labels: a model must beat it here,
            // whatever the training split's balance.
            majority = Some(majority_baseline(&l, &l).map_err(|e| e.to_string())?);
        }
        TaskKind::Regression => {
            let p: Vec<f64> = preds.iter().map(|p| p.predicted).collect();
            let l: Vec<f64> = preds.iter().map(|p| p.gold.unwrap_or(0.0)).collect();
            for k in kinds {
                metrics.insert(
                    k.name().to_string(),
                    compute(k, &p, &l).map_err(|e| e.to_string())?,
                );
            }
        }
    }
    Ok(TaskScores {
        task: spec.name.clone(),
        examples: preds.len(),
        metrics,
        primary: primary.name().to_string(),
        labeled,
        majority_baseline: majority,
    })
}
