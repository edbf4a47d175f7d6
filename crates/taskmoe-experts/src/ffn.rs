//! One interface over the dense FFN and the MoE layer, for model assembly.

use tch::{nn, Tensor};

use taskmoe_kernels::TaskGroups;
use taskmoe_router::AuxLosses;

use crate::config::MoeConfig;
use crate::dense::DenseFfn;
use crate::error::Result;
use crate::moe::{LayerStats, MoeLayer};

/// A transformer block's feed-forward part: dense or sparse.
#[derive(Debug)]
pub enum FeedForward {
    /// The dense FFN baseline.
    Dense(DenseFfn),
    /// A sparse MoE layer.
    Moe(Box<MoeLayer>),
}

/// The output of either kind: a dense layer has no aux losses and no routing statistics.
#[derive(Debug)]
pub struct FfnOutput {
    /// Output rows. `[T, d]`
    pub y: Tensor,
    /// The MoE layer's unweighted aux losses.
    pub aux: Option<AuxLosses>,
    /// The MoE layer's routing statistics.
    pub stats: Option<LayerStats>,
}

impl FeedForward {
    /// A dense FFN `d_model -> d_ff -> d_model`.
    pub fn dense(p: nn::Path, d_model: usize, d_ff: usize, dropout: f64) -> Result<Self> {
        Ok(FeedForward::Dense(DenseFfn::new(
            p, d_model, d_ff, dropout,
        )?))
    }

    /// A MoE layer.
    pub fn moe(p: nn::Path, cfg: &MoeConfig, d_model: usize, num_tasks: usize) -> Result<Self> {
        Ok(FeedForward::Moe(Box::new(MoeLayer::new(
            p, cfg, d_model, num_tasks,
        )?)))
    }

    /// Applies the layer to token rows with their task ids.
    ///
    /// # Shapes
    /// `x: [T, d]`, `task_ids: [T]` -> `y: [T, d]`.
    pub fn forward(&self, x: &Tensor, task_ids: &Tensor, train: bool) -> Result<FfnOutput> {
        self.forward_grouped(x, task_ids, None, train)
    }

    /// [`FeedForward::forward`] with the rows grouped by task, for a MoE layer's router (see
    /// [`MoeLayer::forward_grouped`]); a dense layer ignores them.
    ///
    /// # Shapes
    /// `x: [T, d]`, `task_ids: [T]`, groups over `T` rows -> `y: [T, d]`.
    pub fn forward_grouped(
        &self,
        x: &Tensor,
        task_ids: &Tensor,
        groups: Option<&TaskGroups>,
        train: bool,
    ) -> Result<FfnOutput> {
        match self {
            // Under autocast the dense FFN computes in bf16; its rows go back in the input's
            // dtype, as the MoE layer's do, so the block can scatter them into its buffer.
            FeedForward::Dense(ffn) => Ok(FfnOutput {
                y: ffn.forward(x, train).to_kind(x.kind()),
                aux: None,
                stats: None,
            }),
            FeedForward::Moe(moe) => {
                let out = moe.forward_grouped(x, task_ids, groups, train)?;
                Ok(FfnOutput {
                    y: out.y,
                    aux: Some(out.aux),
                    stats: Some(out.stats),
                })
            }
        }
    }
}
