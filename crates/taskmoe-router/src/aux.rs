//! Auxiliary losses of one router, and their weighted sum.

use tch::{Device, Kind, Tensor};

use taskmoe_kernels::aux::{
    load_balance_loss, mutual_information_loss, task_load_balance_loss, z_loss,
};

use crate::config::{BalanceOver, RouterConfig, RouterKind};
use crate::error::Result;
use crate::router::RouterOutput;

/// The unweighted auxiliary losses of one MoE layer (fp32 scalars), or their sum / mean over
/// layers.
#[derive(Debug)]
pub struct AuxLosses {
    /// Switch load balance, 1 when balanced (see [`load_balance_loss`]).
    pub load_balance: Tensor,
    /// ST-MoE router z-loss (see [`z_loss`]).
    pub z_loss: Tensor,
    /// Negative task-expert mutual information (see [`mutual_information_loss`]).
    pub mutual_information: Tensor,
    /// `dselect-k`: the mean entropy of its selectors' expert distributions, 0 for other
    /// kinds (see [`crate::RouterOutput::selection_entropy`]).
    pub selection_entropy: Tensor,
}

impl AuxLosses {
    /// The losses of one routing decision, the load balance over tokens. `task_ids: [T]`.
    /// Computed with autocast off, so they stay fp32 under bf16 mixed precision (the mutual
    /// information's matmul would otherwise run in bf16).
    pub fn compute(out: &RouterOutput, task_ids: &Tensor, num_tasks: usize) -> Result<Self> {
        Self::compute_balancing(out, task_ids, num_tasks, BalanceOver::Tokens)
    }

    /// [`AuxLosses::compute`] with the load balance over `balance` (tokens or tasks).
    pub fn compute_balancing(
        out: &RouterOutput,
        task_ids: &Tensor,
        num_tasks: usize,
        balance: BalanceOver,
    ) -> Result<Self> {
        let (probs, experts) = (&out.routed.probs, &out.routed.experts);
        taskmoe_device::full_precision(|| {
            Ok(AuxLosses {
                load_balance: match balance {
                    // Every expert takes the same number of tokens: balanced by construction.
                    _ if out.expert_choice.is_some() => {
                        Tensor::zeros([], (Kind::Float, probs.device()))
                    }
                    BalanceOver::Tokens => load_balance_loss(probs, experts)?,
                    BalanceOver::Tasks => {
                        task_load_balance_loss(probs, experts, task_ids, num_tasks)?
                    }
                },
                z_loss: z_loss(&out.logits)?,
                mutual_information: mutual_information_loss(
                    &out.routed.probs,
                    task_ids,
                    num_tasks,
                )?,
                selection_entropy: match &out.selection_entropy {
                    Some(h) => h.shallow_clone(),
                    None => Tensor::zeros([], (Kind::Float, probs.device())),
                },
            })
        })
    }

    /// All zero: what a dense layer contributes.
    pub fn zeros(device: Device) -> Self {
        let zero = || Tensor::zeros([], (Kind::Float, device));
        AuxLosses {
            load_balance: zero(),
            z_loss: zero(),
            mutual_information: zero(),
            selection_entropy: zero(),
        }
    }

    /// The mean over layers (DESIGN.md: aux losses per MoE layer, averaged over layers).
    /// `None` for no layers.
    pub fn mean(layers: &[AuxLosses]) -> Option<Self> {
        let n = layers.len() as f64;
        let first = layers.first()?;
        let mut sum = AuxLosses {
            load_balance: first.load_balance.shallow_clone(),
            z_loss: first.z_loss.shallow_clone(),
            mutual_information: first.mutual_information.shallow_clone(),
            selection_entropy: first.selection_entropy.shallow_clone(),
        };
        for l in &layers[1..] {
            sum.load_balance = &sum.load_balance + &l.load_balance;
            sum.z_loss = &sum.z_loss + &l.z_loss;
            sum.mutual_information = &sum.mutual_information + &l.mutual_information;
            sum.selection_entropy = &sum.selection_entropy + &l.selection_entropy;
        }
        Some(AuxLosses {
            load_balance: sum.load_balance / n,
            z_loss: sum.z_loss / n,
            mutual_information: sum.mutual_information / n,
            selection_entropy: sum.selection_entropy / n,
        })
    }

    /// `load_balance_coef * lb + z_loss_coef * z + mutual_information_coef * (-MI)
    /// + selection_entropy_coef * H` (the last only under `dselect-k`).
    pub fn weighted(&self, cfg: &RouterConfig) -> Tensor {
        let selection = match cfg.kind {
            RouterKind::DselectK => cfg.selection_entropy_coef,
            _ => 0.0,
        };
        &self.load_balance * cfg.load_balance_coef
            + &self.z_loss * cfg.z_loss_coef
            + &self.mutual_information * cfg.mutual_information_coef
            + &self.selection_entropy * selection
    }
}
