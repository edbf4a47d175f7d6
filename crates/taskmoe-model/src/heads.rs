//! Per-task output heads.

use serde::{Deserialize, Serialize};

use crate::config::HeadStyle;
use taskmoe_device::{draw_for, module_name};
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
    /// The head of task `name` predicting one of `num_labels` classes.
    pub fn classification(name: impl Into<String>, num_labels: usize) -> Self {
        Self {
            name: name.into(),
            kind: HeadKind::Classification { num_labels },
        }
    }

    /// The head of task `name` predicting one real value.
    pub fn regression(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: HeadKind::Regression,
        }
    }

    /// Outputs of the head: the class count, or 1 for regression.
    pub fn num_outputs(&self) -> usize {
        match self.kind {
            HeadKind::Classification { num_labels } => num_labels,
            HeadKind::Regression => 1,
        }
    }
}

/// `out(dropout(tanh(dense(pooled))))`, the BERT classifier on a pooled vector, or with a
/// linear head (`HeadStyle::Linear`) `out(dropout(pooled))`. Names:
/// `heads.{task}.dense.{weight,bias}` (MLP heads only) and `heads.{task}.out.{weight,bias}`.
#[derive(Debug)]
pub(crate) struct Head {
    dense: Option<nn::Linear>,
    out: nn::Linear,
    dropout: f64,
}

impl Head {
    pub(crate) fn new(
        p: nn::Path,
        d_model: usize,
        outputs: usize,
        dropout: f64,
        style: HeadStyle,
    ) -> Self {
        let d = d_model as i64;
        let linear = |path: nn::Path, outputs: i64| {
            draw_for(&module_name(&path), || {
                nn::linear(&path, d, outputs, Default::default())
            })
        };
        Head {
            dense: (style == HeadStyle::Mlp).then(|| linear(&p / "dense", d)),
            out: linear(&p / "out", outputs as i64),
            dropout,
        }
    }

    /// Copies `other`'s parameters into this head (same shapes: checked by the caller).
    pub(crate) fn copy_from(&self, other: &Head) {
        let mut pairs = vec![(&self.out, &other.out)];
        if let (Some(d), Some(s)) = (&self.dense, &other.dense) {
            pairs.push((d, s));
        }
        tch::no_grad(|| {
            for (dst, src) in pairs {
                dst.ws.shallow_clone().copy_(&src.ws);
                if let (Some(d), Some(s)) = (&dst.bs, &src.bs) {
                    d.shallow_clone().copy_(s);
                }
            }
        });
    }

    /// `[n, d]` -> `[n, outputs]`.
    pub(crate) fn forward(&self, pooled: &Tensor, train: bool) -> Tensor {
        let h = match &self.dense {
            Some(dense) => dense.forward(pooled).tanh(),
            None => pooled.shallow_clone(),
        };
        self.out.forward(&dropout(&h, self.dropout, train))
    }
}
