//! Batches: padded host arrays, and their tch tensors at the model boundary.
//!
//! A [`Batch`] may mix tasks and kinds. Labels travel as two tensors so that one batch can hold
//! classification and regression examples:
//!
//! - `class_labels` (int64 `[B]`): the class index of a classification example, and
//!   [`IGNORE_INDEX`] (-100, the `ignore_index` default of PyTorch's cross entropy) for a
//!   regression example;
//! - `regression_targets` (f32 `[B]`): the target of a regression example, 0 for a
//!   classification one, with `regression_mask` (bool `[B]`) true exactly on regression
//!   examples.
//!
//! The training loop selects the rows of each task by `task_ids` anyway (one head per task), so
//! these fillers are never read for the wrong kind.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{invalid, Result};
use crate::example::{EncodedExample, Label};

/// The class label of regression examples in `class_labels`.
pub const IGNORE_INDEX: i64 = -100;

/// `B` examples padded to a common length `L`, on the host. Matrices are row-major `[B, L]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Padded length `L`.
    pub seq_len: usize,
    /// Task id of each example. `[B]`
    pub task_ids: Vec<i64>,
    /// Token ids, `pad_id` after each example's end. `[B, L]`
    pub input_ids: Vec<i64>,
    /// 1 on real tokens, 0 on padding. `[B, L]`
    pub attention_mask: Vec<i64>,
    /// Segment ids, 0 on padding. `[B, L]`
    pub token_type_ids: Vec<i64>,
    /// The target of each example. `[B]`
    pub labels: Vec<Label>,
    /// Each example's id within its task's split. `[B]`
    pub example_ids: Vec<u64>,
}

impl Batch {
    /// Pads `examples` (task id, example) to `seq_len` with `pad_id`. An example longer than
    /// `seq_len` is an error: truncation is the tokenizer's job, not the batcher's.
    pub fn from_examples<'a>(
        examples: impl IntoIterator<Item = (usize, &'a EncodedExample)>,
        seq_len: usize,
        pad_id: i64,
    ) -> Result<Batch> {
        let mut b = Batch {
            seq_len,
            task_ids: Vec::new(),
            input_ids: Vec::new(),
            attention_mask: Vec::new(),
            token_type_ids: Vec::new(),
            labels: Vec::new(),
            example_ids: Vec::new(),
        };
        for (task_id, ex) in examples {
            let n = ex.input_ids.len();
            if n > seq_len {
                return Err(invalid(
                    "batch",
                    format!(
                        "example {} of task {task_id} has {n} tokens, more than {seq_len}",
                        ex.id
                    ),
                ));
            }
            if ex.token_type_ids.len() != n {
                return Err(invalid(
                    "batch",
                    format!(
                        "example {} of task {task_id}: {n} ids but {} type ids",
                        ex.id,
                        ex.token_type_ids.len()
                    ),
                ));
            }
            b.task_ids.push(task_id as i64);
            b.input_ids.extend_from_slice(&ex.input_ids);
            b.input_ids.extend(std::iter::repeat_n(pad_id, seq_len - n));
            b.attention_mask.extend(std::iter::repeat_n(1, n));
            b.attention_mask.extend(std::iter::repeat_n(0, seq_len - n));
            b.token_type_ids.extend_from_slice(&ex.token_type_ids);
            b.token_type_ids.extend(std::iter::repeat_n(0, seq_len - n));
            b.labels.push(ex.label);
            b.example_ids.push(ex.id);
        }
        if b.task_ids.is_empty() {
            return Err(invalid("batch", "no examples"));
        }
        Ok(b)
    }

    /// The number of examples `B`.
    pub fn len(&self) -> usize {
        self.task_ids.len()
    }

    /// Whether the batch holds no example (never true for a batch built by this crate).
    pub fn is_empty(&self) -> bool {
        self.task_ids.is_empty()
    }

    /// Converts to tch tensors on `device` (see the module docs for the label scheme).
    pub fn to_tensors(&self, device: Device) -> Result<TensorBatch> {
        let (b, l) = (self.len() as i64, self.seq_len as i64);
        let matrix = |v: &[i64]| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(v)?
                .f_reshape([b, l])?
                .f_to_device(device)?)
        };
        let class: Vec<i64> = self
            .labels
            .iter()
            .map(|l| l.class().unwrap_or(IGNORE_INDEX))
            .collect();
        let targets: Vec<f32> = self
            .labels
            .iter()
            .map(|l| match l {
                Label::Value(v) => *v,
                Label::Class(_) | Label::Missing => 0.0,
            })
            .collect();
        let mask: Vec<bool> = self
            .labels
            .iter()
            .map(|l| matches!(l, Label::Value(_)))
            .collect();
        let ids: Vec<i64> = self.example_ids.iter().map(|&i| i as i64).collect();
        Ok(TensorBatch {
            input_ids: matrix(&self.input_ids)?,
            attention_mask: matrix(&self.attention_mask)?,
            token_type_ids: matrix(&self.token_type_ids)?,
            task_ids: Tensor::f_from_slice(&self.task_ids)?.f_to_device(device)?,
            class_labels: Tensor::f_from_slice(&class)?.f_to_device(device)?,
            regression_targets: Tensor::f_from_slice(&targets)?.f_to_device(device)?,
            regression_mask: Tensor::f_from_slice(&mask)?
                .f_to_kind(Kind::Bool)?
                .f_to_device(device)?,
            example_ids: Tensor::f_from_slice(&ids)?.f_to_device(device)?,
        })
    }
}

/// A [`Batch`] as tch tensors.
#[derive(Debug)]
pub struct TensorBatch {
    /// Token ids, int64. `[B, L]`
    pub input_ids: Tensor,
    /// 1 on real tokens, 0 on padding, int64. `[B, L]`
    pub attention_mask: Tensor,
    /// Segment ids, int64. `[B, L]`
    pub token_type_ids: Tensor,
    /// Task ids, int64. `[B]`
    pub task_ids: Tensor,
    /// Class index, or [`IGNORE_INDEX`] on regression examples; int64. `[B]`
    pub class_labels: Tensor,
    /// Regression target, 0 on classification examples; f32. `[B]`
    pub regression_targets: Tensor,
    /// True on regression examples; bool. `[B]`
    pub regression_mask: Tensor,
    /// Example ids within their task's split, int64. `[B]`
    pub example_ids: Tensor,
}
