//! One transformer block: self-attention, then a dense or MoE feed-forward.

use tch::{nn, nn::Module, Tensor};

use taskmoe_experts::{FeedForward, FfnOutput, LayerStats};
use taskmoe_kernels::{dropout, TaskGroups};
use taskmoe_router::AuxLosses;

use crate::config::{ModelConfig, NormPlacement};
use crate::error::Result;

/// The non-padding tokens of a batch, as rows of the flattened `[B * L, d]` hidden states,
/// with the task of each. Computed once per batch and shared by every block, so the
/// feed-forward layers (dense or MoE) never compute or route padding.
#[derive(Debug)]
pub(crate) struct TokenRows {
    /// Flat indices into `B * L`; `None` when every token is real (no gather or scatter
    /// needed). `[N]` int64
    pub(crate) index: Option<Tensor>,
    /// Task of each row. `[N]` int64
    pub(crate) task_ids: Tensor,
    /// The rows grouped by task, for `per-task` routers (built without a host transfer from
    /// what the model read once); `None` when no block routes per task.
    pub(crate) groups: Option<TaskGroups>,
}

/// A block's output: hidden states, and the MoE layer's aux losses and statistics.
pub(crate) struct BlockOutput {
    pub(crate) x: Tensor,
    pub(crate) aux: Option<AuxLosses>,
    pub(crate) stats: Option<LayerStats>,
}

/// Attention and feed-forward sub-layers with residuals, LayerNorm post (BERT) or pre.
///
/// Names under `encoder.layer.{i}`: `attention.*` and `attention.output.LayerNorm`; a dense
/// FFN's `intermediate.dense` and `output.dense`, or a MoE layer's `moe.*`; and
/// `output.LayerNorm`. A dense block's names are exactly HF BERT's.
#[derive(Debug)]
pub(crate) struct Block {
    attention: crate::attention::SelfAttention,
    attention_norm: nn::LayerNorm,
    pub(crate) ffn: FeedForward,
    ffn_norm: nn::LayerNorm,
    norm: NormPlacement,
    dropout: f64,
}

pub(crate) fn layer_norm(p: nn::Path, cfg: &ModelConfig) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![cfg.d_model as i64],
        nn::LayerNormConfig {
            eps: cfg.layer_norm_eps,
            ..Default::default()
        },
    )
}

impl Block {
    pub(crate) fn new(
        p: &nn::Path,
        cfg: &ModelConfig,
        layer: usize,
        num_tasks: usize,
    ) -> Result<Self> {
        let ffn = if cfg.is_moe_block(layer) {
            FeedForward::moe(p / "moe", &cfg.moe, cfg.d_model, num_tasks)?
        } else {
            FeedForward::dense(p.clone(), cfg.d_model, cfg.d_ff, 0.0)?
        };
        Ok(Block {
            attention: crate::attention::SelfAttention::new(&(p / "attention"), cfg),
            attention_norm: layer_norm(p / "attention" / "output" / "LayerNorm", cfg),
            ffn,
            ffn_norm: layer_norm(p / "output" / "LayerNorm", cfg),
            norm: cfg.norm,
            dropout: cfg.dropout,
        })
    }

    /// # Shapes
    /// `x: [B, L, d]`, `attend: [B, 1, 1, L]` (`None`: no padding) -> `[B, L, d]`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        attend: Option<&Tensor>,
        rows: &TokenRows,
        train: bool,
    ) -> Result<BlockOutput> {
        let (b, l, d) = x.size3()?;
        // The feed-forward sees only real tokens; padding positions get a zero update.
        let ffn = |h: &Tensor| -> Result<(Tensor, Option<AuxLosses>, Option<LayerStats>)> {
            let flat = h.contiguous().view([b * l, d]);
            let full = match &rows.index {
                Some(index) => {
                    let out = self.ffn.forward_grouped(
                        &flat.index_select(0, index),
                        &rows.task_ids,
                        rows.groups.as_ref(),
                        train,
                    )?;
                    let y = flat.zeros_like().index_copy(0, index, &out.y);
                    FfnOutput { y, ..out }
                }
                None => {
                    self.ffn
                        .forward_grouped(&flat, &rows.task_ids, rows.groups.as_ref(), train)?
                }
            };
            let FfnOutput { y, aux, stats } = full;
            Ok((dropout(&y.view([b, l, d]), self.dropout, train), aux, stats))
        };
        let (x, aux, stats) = match self.norm {
            NormPlacement::Post => {
                let a = dropout(
                    &self.attention.forward(x, attend, train),
                    self.dropout,
                    train,
                );
                let x = self.attention_norm.forward(&(x + a));
                let (f, aux, stats) = ffn(&x)?;
                (self.ffn_norm.forward(&(x + f)), aux, stats)
            }
            NormPlacement::Pre => {
                let a = self
                    .attention
                    .forward(&self.attention_norm.forward(x), attend, train);
                let x = x + dropout(&a, self.dropout, train);
                let (f, aux, stats) = ffn(&self.ffn_norm.forward(&x))?;
                (x + f, aux, stats)
            }
        };
        Ok(BlockOutput { x, aux, stats })
    }
}
