//! The tower: feed-forward blocks above the pooling (`model.tower_layers`), each
//! `x + dropout(FFN(LN(x)))` on every example's pooled vector, a MoE layer in the MoE variants
//! (its router sees one row per example, with the example's task) and a dense FFN otherwise.
//! Over a frozen encoder (`frozen_layers = num_layers`) it is the multi-task recommendation
//! model: experts and per-task gates over fixed features (MMoE's setting), with the dense tower
//! as its twin.

use tch::{nn, nn::Module, Tensor};

use taskmoe_experts::{FeedForward, FfnOutput, LayerStats};
use taskmoe_kernels::{dropout, TaskGroups};
use taskmoe_router::AuxLosses;

use crate::block::layer_norm;
use crate::config::ModelConfig;
use crate::error::Result;

/// One tower block. Names under `tower.{j}`: `LayerNorm.{weight,bias}`, and the FFN's
/// (`intermediate.dense.*`, `output.dense.*`) or the MoE layer's (`moe.*`).
#[derive(Debug)]
pub(crate) struct TowerBlock {
    norm: nn::LayerNorm,
    pub(crate) ffn: FeedForward,
    dropout: f64,
}

/// What a tower block returns: the new rows and, for a MoE block, its aux losses and routing
/// statistics.
pub(crate) struct TowerOutput {
    pub x: Tensor,
    pub aux: Option<AuxLosses>,
    pub stats: Option<LayerStats>,
}

impl TowerBlock {
    /// Tower block `j` of `cfg`: MoE in the MoE variants (experts of `moe.d_ff`), else a dense
    /// FFN of width `d_ff`.
    pub(crate) fn new(p: &nn::Path, cfg: &ModelConfig, num_tasks: usize) -> Result<Self> {
        let ffn = match cfg.variant.is_moe() {
            true => FeedForward::moe(p / "moe", &cfg.moe, cfg.d_model, num_tasks)?,
            false => FeedForward::dense(p.clone(), cfg.d_model, cfg.d_ff, 0.0)?,
        };
        Ok(TowerBlock {
            norm: layer_norm(p / "LayerNorm", cfg),
            ffn,
            dropout: cfg.dropout,
        })
    }

    /// # Shapes
    /// `x: [B, d]`, `task_ids: [B]` -> `[B, d]`; `groups` are the examples grouped by task
    /// (for routers that route per task).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        task_ids: &Tensor,
        groups: Option<&TaskGroups>,
        train: bool,
    ) -> Result<TowerOutput> {
        let h = self.norm.forward(x);
        let FfnOutput { y, aux, stats } = self.ffn.forward_grouped(&h, task_ids, groups, train)?;
        let y = dropout(&y, self.dropout, train);
        Ok(TowerOutput {
            x: x + y,
            aux,
            stats,
        })
    }
}
