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
}

impl Default for MoeConfig {
    fn default() -> Self {
        MoeConfig {
            router: RouterConfig::default(),
            d_ff: 256,
            expert_dropout: 0.0,
            num_shared_experts: 0,
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
        check_probability(&format!("{prefix}.expert_dropout"), self.expert_dropout)
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
