//! Multi-head self-attention with a padding mask.

use tch::{nn, nn::Module, Tensor};

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
        let linear = |path: nn::Path| nn::linear(path, d, d, Default::default());
        SelfAttention {
            query: linear(&s / "query"),
            key: linear(&s / "key"),
            value: linear(&s / "value"),
            output: linear(p / "output" / "dense"),
            num_heads: cfg.num_heads as i64,
            dropout: cfg.attention_dropout,
        }
    }

    /// # Shapes
    /// `x: [B, L, d]`, `attend: [B, 1, 1, L]` bool (true where a key may be attended) ->
    /// `[B, L, d]`.
    pub(crate) fn forward(&self, x: &Tensor, attend: &Tensor, train: bool) -> Tensor {
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
        let dropout = if train { self.dropout } else { 0.0 };
        let context = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(attend),
            dropout,
            false,
            None,
            false,
        );
        self.output
            .forward(&context.transpose(1, 2).contiguous().view([b, l, d]))
    }
}
