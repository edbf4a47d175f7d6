//! The routed experts of a MoE layer, of either kind ([`crate::MoeConfig::expert_kind`]).

use tch::Tensor;

use taskmoe_kernels::{GemmPath, GroupLayout, WeightGrads};

use crate::bank::ExpertBank;
use crate::dense::DenseFfn;
use crate::error::{ExpertsError, Result};
use crate::lora::LoraExpertBank;
use crate::upcycle::Upcycling;

/// A MoE layer's routed experts: full FFNs, or low-rank updates of one frozen FFN. Both run
/// on rows grouped by expert and give `[R, d]`.
#[derive(Debug)]
pub enum Experts {
    /// `E` independent FFNs (`expert_kind = "ffn"`).
    Ffn(ExpertBank),
    /// `E` LoRA updates of one frozen FFN (`expert_kind = "lora"`).
    Lora(LoraExpertBank),
}

impl Experts {
    /// The FFN bank, if the experts are full FFNs.
    pub fn ffn(&self) -> Option<&ExpertBank> {
        match self {
            Experts::Ffn(bank) => Some(bank),
            Experts::Lora(_) => None,
        }
    }

    /// The LoRA bank, if the experts are LoRA updates.
    pub fn lora(&self) -> Option<&LoraExpertBank> {
        match self {
            Experts::Ffn(_) => None,
            Experts::Lora(bank) => Some(bank),
        }
    }

    /// Number of experts this rank stores.
    pub fn num_experts(&self) -> usize {
        match self {
            Experts::Ffn(bank) => bank.num_experts(),
            Experts::Lora(bank) => bank.num_experts(),
        }
    }

    /// Which grouped matmul the experts run.
    pub fn gemm_path(&self) -> GemmPath {
        match self {
            Experts::Ffn(bank) => bank.gemm_path(),
            Experts::Lora(bank) => bank.gemm_path(),
        }
    }

    /// Chooses the grouped matmul (results are equal).
    pub fn set_gemm_path(&self, path: GemmPath) {
        match self {
            Experts::Ffn(bank) => bank.set_gemm_path(path),
            Experts::Lora(bank) => bank.set_gemm_path(path),
        }
    }

    /// Chooses how FFN experts' weight gradients reach `.grad` in training
    /// ([`ExpertBank::set_weight_grads`]); LoRA experts keep autograd's (their stacked adapters
    /// are small, and their frozen base weights get no gradient).
    pub fn set_weight_grads(&self, grads: WeightGrads) {
        if let Experts::Ffn(bank) = self {
            bank.set_weight_grads(grads);
        }
    }

    /// Runs each expert on its rows, given as host counts.
    ///
    /// # Shapes
    /// `rows: [R, d]`, `counts: [E]` summing to `R` -> `[R, d]`.
    pub fn forward(&self, rows: &Tensor, counts: &[usize], train: bool) -> Result<Tensor> {
        match self {
            Experts::Ffn(bank) => bank.forward(rows, counts, train),
            Experts::Lora(bank) => bank.forward(rows, counts, train),
        }
    }

    /// Runs each expert on its rows, grouped as `layout` says.
    ///
    /// # Shapes
    /// `rows: [R, d]`, `layout` of `E` groups and `R` rows -> `[R, d]`.
    pub fn forward_layout(
        &self,
        rows: &Tensor,
        layout: &GroupLayout,
        train: bool,
    ) -> Result<Tensor> {
        match self {
            Experts::Ffn(bank) => bank.forward_layout(rows, layout, train),
            Experts::Lora(bank) => bank.forward_layout(rows, layout, train),
        }
    }

    /// Starts the experts from a dense FFN given in PyTorch `Linear` layout: FFN experts are
    /// upcycled ([`ExpertBank::upcycle_from_weights`], then [`ExpertBank::drop_units`]); LoRA
    /// experts take it as their frozen base ([`LoraExpertBank::set_base_from_weights`]), where
    /// noise or dropped units would make no expert differ (they share the base) and are
    /// refused.
    pub fn upcycle_from_weights(
        &self,
        w1: &Tensor,
        b1: &Tensor,
        w2: &Tensor,
        b2: &Tensor,
        upcycling: Upcycling,
    ) -> Result<()> {
        match self {
            Experts::Ffn(bank) => {
                bank.upcycle_from_weights(w1, b1, w2, b2, upcycling.noise)?;
                bank.drop_units(upcycling.drop)
            }
            Experts::Lora(bank) => {
                if upcycling != Upcycling::default() {
                    return Err(ExpertsError::Input(format!(
                        "LoRA experts share one frozen base FFN: upcycling noise {} and \
                         dropped units {} would change the pretrained FFN itself, not make \
                         experts differ; use 0 (the LoRA factors make them differ)",
                        upcycling.noise, upcycling.drop
                    )));
                }
                bank.set_base_from_weights(w1, b1, w2, b2)
            }
        }
    }

    /// [`Experts::upcycle_from_weights`] from a [`DenseFfn`].
    pub fn upcycle(&self, dense: &DenseFfn, upcycling: Upcycling) -> Result<()> {
        let (w1, b1, w2, b2) = dense.weights();
        self.upcycle_from_weights(w1, b1, w2, b2, upcycling)
    }

    /// The experts as full FFNs: the FFN bank's own parameters (views, gradients reach them),
    /// or the LoRA bank merged into detached copies ([`LoraExpertBank::merged`]).
    pub fn as_ffn(&self) -> Result<ExpertBank> {
        match self {
            Experts::Ffn(bank) => {
                let [w1, b1, w2, b2] = bank.params().map(Tensor::shallow_clone);
                ExpertBank::from_weights(w1, b1, w2, b2, 0.0)
            }
            Experts::Lora(bank) => bank.merged(),
        }
    }
}
