//! Per-task output heads.

use serde::{Deserialize, Serialize};
use taskmoe_kernels::dropout;
use tch::{nn, nn::Module, Tensor};

/// What a task predicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum HeadKind {
    /// One of `num_labels` classes (cross-entropy).
    Classification {
        /// Number of classes.
        num_labels: usize,
    },
    /// One real value (mean squared error).
    Regression,
}

/// A task's head: its name (for reports) and what it predicts. The task id is its position
/// in the model's head list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// Task name.
    pub name: String,
    /// Output kind.
    pub kind: HeadKind,
}

impl HeadSpec {
    /// Outputs of the head: the class count, or 1 for regression.
    pub fn num_outputs(&self) -> usize {
        match self.kind {
            HeadKind::Classification { num_labels } => num_labels,
            HeadKind::Regression => 1,
        }
    }
}

/// `out(dropout(tanh(dense(pooled))))`, the BERT classifier on a pooled vector. Names:
/// `heads.{task}.dense.{weight,bias}` and `heads.{task}.out.{weight,bias}`.
#[derive(Debug)]
pub(crate) struct Head {
    dense: nn::Linear,
    out: nn::Linear,
    dropout: f64,
}

impl Head {
    pub(crate) fn new(p: nn::Path, d_model: usize, outputs: usize, dropout: f64) -> Self {
        let d = d_model as i64;
        Head {
            dense: nn::linear(&p / "dense", d, d, Default::default()),
            out: nn::linear(&p / "out", d, outputs as i64, Default::default()),
            dropout,
        }
    }

    /// Copies `other`'s parameters into this head (same shapes: checked by the caller).
    pub(crate) fn copy_from(&self, other: &Head) {
        tch::no_grad(|| {
            for (dst, src) in [
                (&self.dense.ws, &other.dense.ws),
                (&self.out.ws, &other.out.ws),
            ] {
                dst.shallow_clone().copy_(src);
            }
            for (dst, src) in [
                (&self.dense.bs, &other.dense.bs),
                (&self.out.bs, &other.out.bs),
            ] {
                if let (Some(d), Some(s)) = (dst, src) {
                    d.shallow_clone().copy_(s);
                }
            }
        });
    }

    /// `[n, d]` -> `[n, outputs]`.
    pub(crate) fn forward(&self, pooled: &Tensor, train: bool) -> Tensor {
        let h = dropout(&self.dense.forward(pooled).tanh(), self.dropout, train);
        self.out.forward(&h)
    }
}
