//! The dense feed-forward block: the baseline a MoE layer is compared with.

use taskmoe_device::{draw_for, module_name};
use tch::{nn, nn::Module, Tensor};

use taskmoe_kernels::dropout;

use crate::config::check_probability;
use crate::error::{ExpertsError, Result};
use crate::init::{ffn_bias_init, ffn_weight_init};

/// `y = W2 gelu(W1 x + b1) + b2`, the transformer FFN, with optional dropout on the hidden
/// activation in training.
///
/// Parameter names follow HF BERT, so BERT weights load without renaming:
/// `intermediate.dense.{weight [d_ff, d], bias [d_ff]}` and
/// `output.dense.{weight [d, d_ff], bias [d]}` (PyTorch `Linear` layout, `[out, in]`).
/// Weights and biases start from the initialisation every FFN shares ([`crate::init`]:
/// weights `U(±sqrt(6 / fan_in))`, biases `U(±1 / sqrt(fan_in))`), the routed experts' too.
#[derive(Debug)]
pub struct DenseFfn {
    intermediate: nn::Linear,
    output: nn::Linear,
    dropout: f64,
}

/// A `Linear` with `fan_in` inputs, initialised as every FFN is.
/// A `fan_in -> fan_out` linear layer under `path`, drawn from the module's keyed stream
/// (`taskmoe_device::draw_for`).
fn linear(path: &nn::Path, fan_in: i64, fan_out: i64) -> nn::Linear {
    draw_for(&module_name(path), || {
        nn::linear(path, fan_in, fan_out, linear_init(fan_in))
    })
}

fn linear_init(fan_in: i64) -> nn::LinearConfig {
    nn::LinearConfig {
        ws_init: ffn_weight_init(fan_in),
        bs_init: Some(ffn_bias_init(fan_in)),
        bias: true,
    }
}

impl DenseFfn {
    /// Creates the block under `p`, `d_model -> d_ff -> d_model`.
    pub fn new(p: nn::Path, d_model: usize, d_ff: usize, dropout: f64) -> Result<Self> {
        check_probability("dropout", dropout)?;
        if d_model == 0 || d_ff == 0 {
            return Err(ExpertsError::Input(format!(
                "DenseFfn needs positive sizes, got d_model {d_model}, d_ff {d_ff}"
            )));
        }
        let (d, f) = (d_model as i64, d_ff as i64);
        Ok(DenseFfn {
            intermediate: linear(&(&p / "intermediate" / "dense"), d, f),
            output: linear(&(&p / "output" / "dense"), f, d),
            dropout,
        })
    }

    /// Applies the block to every row.
    ///
    /// # Shapes
    /// `x: [.., d]` -> `[.., d]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let h = self.intermediate.forward(x).gelu("none");
        self.output.forward(&dropout(&h, self.dropout, train))
    }

    /// `(W1 [d_ff, d], b1 [d_ff], W2 [d, d_ff], b2 [d])`, the weights in `Linear` layout.
    pub fn weights(&self) -> (&Tensor, &Tensor, &Tensor, &Tensor) {
        (
            &self.intermediate.ws,
            self.intermediate
                .bs
                .as_ref()
                .expect("FFN layers have biases"),
            &self.output.ws,
            self.output.bs.as_ref().expect("FFN layers have biases"),
        )
    }
}
