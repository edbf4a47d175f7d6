//! Configuration of the feed-forward layers: dense FFN and MoE.

use serde::{Deserialize, Serialize};
use taskmoe_router::RouterConfig;

use crate::error::{ExpertsError, Result};

/// A sparse MoE feed-forward layer. Every field has a default (shown in its doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoeConfig {
    /// The router: gating function, `E`, `k`, capacities, noise, aux-loss weights.
    pub router: RouterConfig,
    /// Hidden width of each expert FFN. Default 4 * 64 = 256 (set with the model width).
    pub d_ff: usize,
    /// Dropout on each expert's hidden activation, in training only ("expert dropout", Switch
    /// uses a higher value here than elsewhere when fine-tuning). Default 0.
    pub expert_dropout: f64,
    /// Always-on shared experts beside the routed ones (PLE/CGC, DeepSeekMoE style): every
    /// token also passes through them and their output is added. Stored as one FFN of width
    /// `num_shared_experts * d_ff`, which equals the sum of that many FFNs of width `d_ff`.
    /// Default 0.
    pub num_shared_experts: usize,
    /// What each routed expert is: `ffn` (an FFN of its own, `d -> d_ff -> d`) or `lora` (a
    /// low-rank update of one frozen FFN the layer's experts share: expert `e` computes
    /// `h = gelu(x W1 + b1 + s (x A1_e) B1_e)`, `y = h W2 + b2 + s (h A2_e) B2_e` with
    /// `s = lora_alpha / lora_rank`; MoLoRA / MixLoRA style). `B` starts at zero, so every
    /// LoRA expert starts as the base FFN: imported from a BERT (`init.from`), the MoE block
    /// is exactly the pretrained FFN at step 0. The base FFN never trains (from scratch it
    /// keeps its random initialisation); only the `A`, `B` factors, the router and the shared
    /// experts do. Default `ffn`.
    pub expert_kind: ExpertKind,
    /// Rank `r` of each LoRA expert's updates (`expert_kind = "lora"` only): `A1 [d, r]`,
    /// `B1 [r, d_ff]`, `A2 [d_ff, r]`, `B2 [r, d]` per expert, `2 r (d + d_ff)` parameters. A
    /// multiple of 8 keeps the grouped GEMM's layout rule in fp32 and bf16 (otherwise the
    /// per-expert loop runs). Default 8.
    pub lora_rank: usize,
    /// LoRA's `alpha` (`expert_kind = "lora"` only): the updates are scaled by
    /// `alpha / lora_rank` (Hu et al. 2021), so changing the rank does not change the size of
    /// an update at a given learning rate. Default 16.
    pub lora_alpha: f64,
}

/// What a MoE layer's routed experts are ([`MoeConfig::expert_kind`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpertKind {
    /// Each expert a full FFN ([`crate::ExpertBank`]).
    #[default]
    Ffn,
    /// Each expert a low-rank update of one frozen FFN ([`crate::LoraExpertBank`]).
    Lora,
}

impl Default for MoeConfig {
    fn default() -> Self {
        MoeConfig {
            router: RouterConfig::default(),
            d_ff: 256,
            expert_dropout: 0.0,
            num_shared_experts: 0,
            expert_kind: ExpertKind::Ffn,
            lora_rank: 8,
            lora_alpha: 16.0,
        }
    }
}

impl MoeConfig {
    /// Checks every value; errors name the key as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        self.router.validate(&format!("{prefix}.router"))?;
        if self.d_ff == 0 {
            return Err(ExpertsError::Config {
                key: format!("{prefix}.d_ff"),
                message: "must be at least 1".into(),
            });
        }
        check_probability(&format!("{prefix}.expert_dropout"), self.expert_dropout)?;
        if self.expert_kind == ExpertKind::Lora {
            if self.lora_rank == 0 {
                return Err(ExpertsError::Config {
                    key: format!("{prefix}.lora_rank"),
                    message: "must be at least 1".into(),
                });
            }
            if !(self.lora_alpha > 0.0 && self.lora_alpha.is_finite()) {
                return Err(ExpertsError::Config {
                    key: format!("{prefix}.lora_alpha"),
                    message: format!("must be positive and finite, got {}", self.lora_alpha),
                });
            }
        }
        Ok(())
    }

    /// The scale `lora_alpha / lora_rank` of every LoRA update.
    pub fn lora_scale(&self) -> f64 {
        self.lora_alpha / self.lora_rank as f64
    }
}

/// A dropout rate must lie in `[0, 1)`.
pub(crate) fn check_probability(key: &str, p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(ExpertsError::Config {
            key: key.into(),
            message: format!("must be in [0, 1), got {p}"),
        })
    }
}
