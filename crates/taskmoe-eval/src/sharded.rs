//! One evaluation shared by the ranks of a data-parallel job: each rank runs its share of the
//! batches, rank 0 gathers the logits and the routing counts and scores them.
//!
//! The batches are the single-process batches ([`crate::eval_batches`]: a pure function of the
//! split), numbered across the tasks and dealt round-robin, so the ranks' shares are disjoint,
//! cover the split, and are balanced in length too (the batches are sorted by length within a
//! task). Every example is scored in the same batch, with the same padding, as in a single
//! process: the gathered predictions are the single-process ones.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use taskmoe_dist::ProcessGroup;
use taskmoe_model::MultiTaskModel;

use crate::batching::EvalBatching;
use crate::evaluate::{assemble, run_batches, EvalData, EvalResult, EvaluateError, Logits, Shard};

/// [`crate::evaluate_with`] shared over the ranks of `group`, all of which must call it with
/// the same model weights and arguments (collective). Rank 0 of `group` gets the result,
/// the same predictions and scores as a single process would compute; the other ranks get
/// `None`.
///
/// Reads back: per task, one gather of `[n, 1 + logits_width]` fp64 rows (split position and
/// logits) to rank 0; per MoE block, one all-reduce of its task x expert counts and one of its
/// gate statistics.
pub fn evaluate_sharded(
    model: &MultiTaskModel,
    data: &EvalData,
    tasks: &[usize],
    batching: EvalBatching,
    device: Device,
    group: &ProcessGroup,
) -> Result<Option<EvalResult>, EvaluateError> {
    let shard = Shard {
        rank: group.rank(),
        size: group.size(),
    };
    let mut mine = run_batches(model, data, tasks, batching, device, shard)?;
    let fail = |what: String| {
        move |e: taskmoe_dist::DistError| EvaluateError {
            task: what,
            message: e.to_string(),
        }
    };
    let width = model.logits_width() as i64;
    let mut gathered = Vec::with_capacity(mine.tasks.len());
    for (task, positions, logits) in mine.tasks {
        let name = &data.specs[task].name;
        let positions: Vec<f64> = positions.iter().map(|&p| p as f64).collect();
        let rows = Tensor::cat(
            &[
                Tensor::from_slice(&positions)
                    .unsqueeze(1)
                    .to_device(logits.device()),
                logits.to_kind(Kind::Double),
            ],
            1,
        );
        let all = group
            .gather_rows(&rows, 0)
            .map_err(fail(format!("{name} (gathering the ranks' logits)")))?;
        if let Some(all) = all {
            let positions: Vec<f64> =
                Vec::try_from(&all.select(1, 0)).map_err(|e: tch::TchError| EvaluateError {
                    task: name.clone(),
                    message: e.to_string(),
                })?;
            let positions = positions.into_iter().map(|p| p as usize).collect();
            gathered.push((
                task,
                positions,
                all.narrow(1, 1, width).to_kind(Kind::Float),
            ));
        }
    }
    let batches = group
        .all_reduce_f64(&[mine.batches as f64])
        .map_err(fail("routing counts (summing the batches)".into()))?[0];
    let (mut routing, mut gates) = (BTreeMap::new(), BTreeMap::new());
    for (block, layer) in model.moe_layers() {
        // A rank that ran no batch still takes part, with zero counts.
        let shape = [
            layer.router().num_tasks() as i64,
            layer.config().router.num_experts as i64,
        ];
        let mut counts = mine
            .routing
            .remove(&block)
            .unwrap_or_else(|| Tensor::zeros(shape, (Kind::Int64, device)))
            .to_kind(Kind::Double);
        group
            .all_reduce_sum(&mut counts)
            .map_err(fail(format!("routing counts of MoE block {block}")))?;
        if batches > 0.0 {
            routing.insert(block, counts.to_kind(Kind::Int64));
        }
        let mut sums = mine
            .gates
            .remove(&block)
            .unwrap_or_else(|| Tensor::zeros([shape[0], 3], (Kind::Float, device)))
            .to_kind(Kind::Double);
        group
            .all_reduce_sum(&mut sums)
            .map_err(fail(format!("gate statistics of MoE block {block}")))?;
        if batches > 0.0 {
            gates.insert(block, sums.to_kind(Kind::Float));
        }
    }
    if group.rank() != 0 {
        return Ok(None);
    }
    assemble(
        data,
        Logits {
            tasks: gathered,
            routing,
            gates,
            batches: batches as usize,
        },
    )
    .map(Some)
}
