//! The one initialisation of every feed-forward network: the dense FFN, the routed experts and
//! the shared experts draw from the same distributions, so a MoE block starts as strong as the
//! dense block it replaces.
//!
//! Weights: uniform in `±sqrt(6 / fan_in)` (Kaiming-uniform with the ReLU gain, tch's `Linear`
//! default). Biases: uniform in `±1 / sqrt(fan_in)` (PyTorch's and tch's `Linear` bias
//! default). On unit-variance inputs a freshly drawn FFN `d -> d_ff -> d` with GELU gives
//! outputs of RMS about 1.4 at any width, the same for each expert as for the dense FFN; with
//! top-1 straight-through gates (weight 1 in the forward pass) the MoE block's output then has
//! the dense block's scale.

use tch::nn::Init;

/// The distribution of an FFN weight matrix with `fan_in` inputs: `U(±sqrt(6 / fan_in))`.
pub fn ffn_weight_init(fan_in: i64) -> Init {
    let bound = (6.0 / fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// The distribution of an FFN bias after a layer with `fan_in` inputs: `U(±1 / sqrt(fan_in))`.
pub fn ffn_bias_init(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}
