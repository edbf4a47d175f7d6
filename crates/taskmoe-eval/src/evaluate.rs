//! Running a model over evaluation splits: predictions, per-task metrics, routing counts.

use std::collections::BTreeMap;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use taskmoe_data::{eval_batches, Label, TaskData, TaskKind, TaskSpec};
use taskmoe_model::{ModelInput, MultiTaskModel};

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

/// One example's prediction, as exported to `predictions.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// Task name.
    pub task: String,
    /// Example id within the task's split.
    pub id: u64,
    /// Gold label: class index or real value.
    pub label: f64,
    /// Predicted class index or value.
    pub prediction: f64,
    /// Class probabilities (classification only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probabilities: Vec<f32>,
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
    /// Accuracy of always predicting the training set's most frequent label
    /// (classification only).
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
    /// Routing slots per MoE block (by block index): `[tasks][experts]` counts over the
    /// evaluated examples' tokens, the router's choices before any capacity drop.
    pub routing: BTreeMap<usize, Vec<Vec<i64>>>,
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

/// The data an evaluation reads: specs, eval splits and training splits (for the majority
/// baseline), in task-id order.
pub struct EvalData<'a> {
    /// Task specs.
    pub specs: &'a [TaskSpec],
    /// The split to score.
    pub split: &'a [TaskData],
    /// Training examples (majority-class baseline).
    pub train: &'a [TaskData],
    /// Padded length.
    pub seq_len: usize,
    /// Padding id.
    pub pad_id: i64,
}

/// Evaluates `model` (in evaluation mode) on `tasks` of `data`.
pub fn evaluate(
    model: &MultiTaskModel,
    data: &EvalData,
    tasks: &[usize],
    batch_size: usize,
    device: Device,
) -> Result<EvalResult, EvaluateError> {
    let mut result = EvalResult {
        tasks: Vec::new(),
        predictions: Vec::new(),
        routing: BTreeMap::new(),
    };
    let num_tasks = data.specs.len();
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
        let mut preds = Vec::with_capacity(split.examples.len());
        for batch in eval_batches(split, batch_size, data.seq_len, data.pad_id) {
            let batch = batch.map_err(|e| fail(e.to_string()))?;
            let t = batch.to_tensors(device).map_err(|e| fail(e.to_string()))?;
            let out = tch::no_grad(|| {
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
            for (layer, stats) in &out.stats {
                let counts: Vec<i64> = Vec::try_from(&stats.task_expert.reshape([-1]))
                    .map_err(|e: tch::TchError| fail(e.to_string()))?;
                let experts = counts.len() / num_tasks;
                let entry = result
                    .routing
                    .entry(*layer)
                    .or_insert_with(|| vec![vec![0; experts]; num_tasks]);
                for (i, c) in counts.iter().enumerate() {
                    entry[i / experts][i % experts] += c;
                }
            }
            preds.extend(predictions(
                spec,
                &out.logits,
                &batch.labels,
                &batch.example_ids,
            ));
        }
        result
            .tasks
            .push(score(spec, &preds, &data.train[task]).map_err(fail)?);
        result.predictions.extend(preds);
    }
    Ok(result)
}

fn predictions(spec: &TaskSpec, logits: &Tensor, labels: &[Label], ids: &[u64]) -> Vec<Prediction> {
    let logits = logits.to_kind(Kind::Float);
    match spec.kind {
        TaskKind::Classification => {
            let n = spec.labels.len().max(2) as i64;
            let probs = logits.narrow(1, 0, n).softmax(-1, Kind::Float);
            let rows: Vec<Vec<f32>> = Vec::try_from(&probs).unwrap_or_default();
            rows.into_iter()
                .zip(labels)
                .zip(ids)
                .map(|((p, label), &id)| {
                    let best = p
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f32::MIN),
                            |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                        )
                        .0;
                    Prediction {
                        task: spec.name.clone(),
                        id,
                        label: label.class().unwrap_or(-1) as f64,
                        prediction: best as f64,
                        probabilities: p,
                    }
                })
                .collect()
        }
        TaskKind::Regression => {
            let values: Vec<f32> = Vec::try_from(&logits.select(1, 0)).unwrap_or_default();
            values
                .into_iter()
                .zip(labels)
                .zip(ids)
                .map(|((v, label), &id)| Prediction {
                    task: spec.name.clone(),
                    id,
                    label: match label {
                        Label::Value(v) => *v as f64,
                        Label::Class(c) => *c as f64,
                    },
                    prediction: v as f64,
                    probabilities: Vec::new(),
                })
                .collect()
        }
    }
}

fn score(spec: &TaskSpec, preds: &[Prediction], train: &TaskData) -> Result<TaskScores, String> {
    let mut kinds: Vec<MetricKind> = match spec.kind {
        TaskKind::Classification => vec![
            MetricKind::Accuracy,
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
    match spec.kind {
        TaskKind::Classification => {
            let p: Vec<usize> = preds.iter().map(|p| p.prediction as usize).collect();
            let l: Vec<usize> = preds.iter().map(|p| p.label.max(0.0) as usize).collect();
            for k in kinds {
                metrics.insert(
                    k.name().to_string(),
                    compute(k, &p, &l).map_err(|e| e.to_string())?,
                );
            }
            let train_labels: Vec<usize> = train
                .examples
                .iter()
                .filter_map(|e| e.label.class())
                .map(|c| c as usize)
                .collect();
            if !train_labels.is_empty() {
                majority = Some(majority_baseline(&train_labels, &l).map_err(|e| e.to_string())?);
            }
        }
        TaskKind::Regression => {
            let p: Vec<f64> = preds.iter().map(|p| p.prediction).collect();
            let l: Vec<f64> = preds.iter().map(|p| p.label).collect();
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
        majority_baseline: majority,
    })
}
