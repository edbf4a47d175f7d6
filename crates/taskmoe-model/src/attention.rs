//! Multi-head self-attention with a padding mask.

use taskmoe_device::{draw_for, module_name};
use taskmoe_kernels::dropout;
use tch::{nn, nn::Module, Device, Tensor};

use crate::config::ModelConfig;

/// BERT self-attention: `softmax(Q K^T / sqrt(d_h) + mask) V`, heads concatenated, then the
/// output projection. Names: `attention.self.{query,key,value}.{weight,bias}` and
/// `attention.output.dense.{weight,bias}` (the LayerNorm belongs to the block).
#[derive(Debug)]
pub(crate) struct SelfAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    output: nn::Linear,
    num_heads: i64,
    dropout: f64,
}

impl SelfAttention {
    pub(crate) fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let d = cfg.d_model as i64;
        let s = p / "self";
        let linear = |path: nn::Path| {
            draw_for(&module_name(&path), || {
                nn::linear(&path, d, d, Default::default())
            })
        };
        SelfAttention {
            query: linear(&s / "query"),
            key: linear(&s / "key"),
            value: linear(&s / "value"),
            output: linear(p / "output" / "dense"),
            num_heads: cfg.num_heads as i64,
            dropout: cfg.attention_dropout,
        }
    }

    /// In training with attention dropout on the CPU, the attention is written out (scores,
    /// mask, softmax, `taskmoe_kernels::dropout`, weighted sum), because libtorch's fused
    /// kernel does not take dropout and its fallback samples the mask serially; otherwise it is
    /// libtorch's `scaled_dot_product_attention`.
    ///
    /// # Shapes
    /// `x: [B, L, d]`, `attend: [B, 1, 1, L]` bool (true where a key may be attended; `None`:
    /// every key) -> `[B, L, d]`.
    pub(crate) fn forward(&self, x: &Tensor, attend: Option<&Tensor>, train: bool) -> Tensor {
        let (b, l, d) = x.size3().expect("checked by the model");
        let heads = |t: Tensor| {
            t.view([b, l, self.num_heads, d / self.num_heads])
                .transpose(1, 2) // (batch, heads, length, d_head)
        };
        let (q, k, v) = (
            heads(self.query.forward(x)),
            heads(self.key.forward(x)),
            heads(self.value.forward(x)),
        );
        let p = if train { self.dropout } else { 0.0 };
        let context = if p > 0.0 && x.device() == Device::Cpu {
            let d_head = (d / self.num_heads) as f64;
            let mut scores = q.matmul(&k.transpose(-2, -1)) * (1.0 / d_head.sqrt());
            if let Some(attend) = attend {
                scores = scores.masked_fill(&attend.logical_not(), f64::NEG_INFINITY);
            }
            let probs = scores.softmax(-1, scores.kind());
            dropout(&probs, p, true).matmul(&v) // (batch, heads, length, d_head)
        } else {
            Tensor::scaled_dot_product_attention(&q, &k, &v, attend, p, false, None, false)
        };
        self.output
            .forward(&context.transpose(1, 2).contiguous().view([b, l, d]))
    }
}
