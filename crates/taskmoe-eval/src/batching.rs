//! Evaluation batches: length-bucketed, each padded to its own longest example.

use taskmoe_data::{Batch, TaskData};

/// How an evaluation batches a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalBatching {
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Sort the split by length and pad each batch to its own longest example (the
    /// default), instead of batching in split order padded to the run's `seq_len`. An
    /// example's logits do not depend on its padding or batch mates, so both give the same
    /// predictions (tested); bucketing computes far less padding on short texts.
    pub bucket_by_length: bool,
}

impl EvalBatching {
    /// Length-bucketed batches of `batch_size`.
    pub fn bucketed(batch_size: usize) -> Self {
        EvalBatching {
            batch_size,
            bucket_by_length: true,
        }
    }
}

/// The batches of `data` under `batching`, each with the split positions of its examples
/// (predictions are put back in split order from them). Every example appears exactly once.
/// Bucketed batches are padded to their longest example (at least 1), never beyond
/// `seq_len`; an example longer than `seq_len` is an error, as in training.
pub fn eval_batches(
    data: &TaskData,
    batching: EvalBatching,
    seq_len: usize,
    pad_id: i64,
) -> Vec<(Vec<usize>, taskmoe_data::Result<Batch>)> {
    eval_batch_positions(data, batching)
        .into_iter()
        .map(|positions| {
            let batch = eval_batch(data, &positions, batching, seq_len, pad_id);
            (positions, batch)
        })
        .collect()
}

/// The split positions of each of [`eval_batches`]' batches, without building them: a pure
/// function of the split and `batching`.
pub fn eval_batch_positions(data: &TaskData, batching: EvalBatching) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..data.examples.len()).collect();
    if batching.bucket_by_length {
        // Stable: equal lengths keep split order, so the batches are a pure function of the
        // split.
        order.sort_by_key(|&i| data.examples[i].input_ids.len());
    }
    order
        .chunks(batching.batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// The batch of the examples at `positions` of `data`, padded as [`eval_batches`] pads.
pub fn eval_batch(
    data: &TaskData,
    positions: &[usize],
    batching: EvalBatching,
    seq_len: usize,
    pad_id: i64,
) -> taskmoe_data::Result<Batch> {
    let longest = positions
        .iter()
        .map(|&i| data.examples[i].input_ids.len())
        .max()
        .unwrap_or(0);
    // An over-long example is padded to the run's limit, so the batcher names it.
    let len = match batching.bucket_by_length && longest <= seq_len {
        true => longest.max(1),
        false => seq_len,
    };
    Batch::from_examples(
        positions.iter().map(|&i| (data.task_id, &data.examples[i])),
        len,
        pad_id,
    )
}
