//! LoRA experts: `E` low-rank updates of one frozen FFN, routed like full experts.
//!
//! LoRA ([Hu et al. 2021](https://arxiv.org/abs/2106.09685)) adapts a frozen weight `W` as
//! `W + s A B` with `A [d_in, r]`, `B [r, d_out]`, `B` starting at zero and
//! `s = alpha / r`. A mixture of LoRA experts (MoLoRA / MoV, [Zadouri et al.
//! 2023](https://arxiv.org/abs/2309.05444); MixLoRA, [Li et al.
//! 2024](https://arxiv.org/abs/2404.15159)) gives every expert its own `A`, `B` on the FFN's
//! projections and routes tokens to them, so a MoE block costs one FFN plus `k` rank-`r`
//! updates, and only the updates (and the router) train.

use std::sync::atomic::{AtomicBool, Ordering};

use taskmoe_device::{draw_for, module_name};
use tch::{nn, Kind, Tensor};

use taskmoe_kernels::{dropout, grouped_linear, GemmPath, GroupLayout};

use crate::bank::ExpertBank;
use crate::error::{ExpertsError, Result};
use crate::init::{ffn_bias_init, ffn_weight_init};

/// `E` LoRA experts on one frozen FFN: expert `e` computes
///
/// ```text
/// h = gelu(x W1 + b1 + s (x A1[e]) B1[e])
/// y = h W2 + b2 + s (h A2[e]) B2[e]        with s = alpha / r
/// ```
///
/// over rows grouped by expert (the layout `taskmoe_kernels::permute` produces). The base
/// products `x W1` and `h W2` are one matmul over all rows; the rank-`r` products are grouped
/// matmuls over the layout ([`grouped_linear`], the same kernels as [`ExpertBank`]).
///
/// Parameters, under the bank's path: the base FFN `base.w1 [d, d_ff]`, `base.b1 [d_ff]`,
/// `base.w2 [d_ff, d]`, `base.b2 [d]` (input-major like [`ExpertBank`], non-trainable variables
/// of the `VarStore`, so no gradient reaches them and the optimizer never holds them; they are
/// saved in checkpoints like every variable),
/// and the stacked factors `lora_a1 [E, d, r]`, `lora_b1 [E, r, d_ff]`, `lora_a2 [E, d_ff, r]`,
/// `lora_b2 [E, r, d]`. The base starts from the initialisation every FFN shares
/// ([`crate::init`]) and is overwritten by an import ([`LoraExpertBank::set_base_from_weights`]);
/// `A` is drawn from `U(±1 / sqrt(fan_in))` (LoRA's Kaiming-uniform with `a = sqrt(5)`) and
/// `B` is zero, so at step 0 every expert computes the base FFN exactly and the gradient
/// reaches `B` first (then `A`).
#[derive(Debug)]
pub struct LoraExpertBank {
    /// Frozen base first projection. `[d, d_ff]`
    pub w1: Tensor,
    /// Frozen base first bias. `[d_ff]`
    pub b1: Tensor,
    /// Frozen base second projection. `[d_ff, d]`
    pub w2: Tensor,
    /// Frozen base second bias. `[d]`
    pub b2: Tensor,
    /// Down-projections of the first update. `[E, d, r]`
    pub a1: Tensor,
    /// Up-projections of the first update (start at zero). `[E, r, d_ff]`
    pub up1: Tensor,
    /// Down-projections of the second update. `[E, d_ff, r]`
    pub a2: Tensor,
    /// Up-projections of the second update (start at zero). `[E, r, d]`
    pub up2: Tensor,
    scale: f64,
    dropout: f64,
    loop_gemm: AtomicBool,
}

impl LoraExpertBank {
    /// Creates `num_experts` LoRA experts of rank `rank` on a frozen `d_model -> d_ff ->
    /// d_model` FFN under `p`, updates scaled by `scale` (`alpha / rank`), with dropout
    /// `dropout` on the hidden activation in training.
    pub fn new(
        p: nn::Path,
        num_experts: usize,
        d_model: usize,
        d_ff: usize,
        rank: usize,
        scale: f64,
        dropout: f64,
    ) -> Result<Self> {
        if num_experts == 0 || d_model == 0 || d_ff == 0 || rank == 0 {
            return Err(ExpertsError::Input(format!(
                "LoRA experts need positive sizes, got E {num_experts}, d {d_model}, d_ff \
                 {d_ff}, rank {rank}"
            )));
        }
        let (e, d, f, r) = (num_experts as i64, d_model as i64, d_ff as i64, rank as i64);
        let base = &p / "base";
        // Non-trainable variables (as a router's selection bias), filled from the FFN init.
        let frozen = |name: &str, shape: &[i64], init| -> Result<Tensor> {
            let mut t = base.f_zeros_no_train(name, shape)?;
            t.init(init);
            Ok(t)
        };
        draw_for(&module_name(&p), || {
            Ok(LoraExpertBank {
                w1: frozen("w1", &[d, f], ffn_weight_init(d))?,
                b1: frozen("b1", &[f], ffn_bias_init(d))?,
                w2: frozen("w2", &[f, d], ffn_weight_init(f))?,
                b2: frozen("b2", &[d], ffn_bias_init(f))?,
                a1: p.var("lora_a1", &[e, d, r], ffn_bias_init(d)),
                up1: p.var("lora_b1", &[e, r, f], nn::Init::Const(0.0)),
                a2: p.var("lora_a2", &[e, f, r], ffn_bias_init(f)),
                up2: p.var("lora_b2", &[e, r, d], nn::Init::Const(0.0)),
                scale,
                dropout,
                loop_gemm: AtomicBool::new(false),
            })
        })
    }

    /// Number of experts `E`.
    pub fn num_experts(&self) -> usize {
        self.a1.size()[0] as usize
    }

    /// The rank `r` of the updates.
    pub fn rank(&self) -> usize {
        self.a1.size()[2] as usize
    }

    /// The scale `s = alpha / r` of the updates.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The frozen base FFN, in the order `w1, b1, w2, b2`.
    pub fn base(&self) -> [&Tensor; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// The trained factors, in the order `lora_a1, lora_b1, lora_a2, lora_b2`.
    pub fn factors(&self) -> [&Tensor; 4] {
        [&self.a1, &self.up1, &self.a2, &self.up2]
    }

    /// Which grouped matmul the low-rank products run ([`GemmPath::Grouped`] unless set).
    pub fn gemm_path(&self) -> GemmPath {
        match self.loop_gemm.load(Ordering::Relaxed) {
            true => GemmPath::Loop,
            false => GemmPath::Grouped,
        }
    }

    /// Chooses the grouped matmul of the low-rank products (results are equal).
    pub fn set_gemm_path(&self, path: GemmPath) {
        self.loop_gemm
            .store(path == GemmPath::Loop, Ordering::Relaxed);
    }

    /// Sets the base FFN to a dense FFN given in PyTorch `Linear` layout (`w1 [d_ff, d]`,
    /// `b1 [d_ff]`, `w2 [d, d_ff]`, `b2 [d]`, as in a BERT checkpoint): with the `B` factors
    /// still zero, every expert then computes that FFN.
    pub fn set_base_from_weights(
        &self,
        w1: &Tensor,
        b1: &Tensor,
        w2: &Tensor,
        b2: &Tensor,
    ) -> Result<()> {
        let (d, f) = (self.w1.size()[0], self.w1.size()[1]);
        if w1.size() != [f, d] || b1.size() != [f] || w2.size() != [d, f] || b2.size() != [d] {
            return Err(ExpertsError::Input(format!(
                "cannot set the LoRA experts' base FFN: weights {:?}, {:?}, {:?}, {:?} do not \
                 fit d = {d}, d_ff = {f}",
                w1.size(),
                b1.size(),
                w2.size(),
                b2.size()
            )));
        }
        tch::no_grad(|| {
            let like = |t: &Tensor| t.to_kind(self.w1.kind()).to_device(self.w1.device());
            // shallow_clone shares storage: the copies land in the bank's parameters.
            self.w1.shallow_clone().copy_(&like(w1).tr());
            self.b1.shallow_clone().copy_(&like(b1));
            self.w2.shallow_clone().copy_(&like(w2).tr());
            self.b2.shallow_clone().copy_(&like(b2));
        });
        Ok(())
    }

    /// The same experts as full FFNs, `W1[e] = W1 + s A1[e] B1[e]`, `W2[e] = W2 + s A2[e]
    /// B2[e]` (biases repeated): a detached [`ExpertBank`] that computes what this bank
    /// computes, up to rounding, for export and task sub-networks.
    pub fn merged(&self) -> Result<ExpertBank> {
        let e = self.num_experts() as i64;
        let (w1, b1, w2, b2) = tch::no_grad(|| {
            let s = self.scale;
            (
                self.w1.unsqueeze(0) + self.a1.bmm(&self.up1) * s,
                self.b1.unsqueeze(0).expand([e, -1], false).copy(),
                self.w2.unsqueeze(0) + self.a2.bmm(&self.up2) * s,
                self.b2.unsqueeze(0).expand([e, -1], false).copy(),
            )
        });
        ExpertBank::from_weights(w1, b1, w2, b2, self.dropout)
    }

    /// Runs each expert on its rows, given as host counts (see [`ExpertBank::forward`]).
    ///
    /// # Shapes
    /// `rows: [R, d]`, `counts: [E]` summing to `R` -> `[R, d]`.
    pub fn forward(&self, rows: &Tensor, counts: &[usize], train: bool) -> Result<Tensor> {
        let layout = GroupLayout::for_path(counts, rows.device(), self.gemm_path());
        self.forward_layout(rows, &layout, train)
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
        // As ExpertBank: the grouped GEMM is not on autocast's list, so under autocast the
        // low-rank products run in bf16 with rows and factors cast; the base matmuls are
        // autocast's own.
        let path = self.gemm_path();
        let grouped = path == GemmPath::Grouped;
        let kind = match taskmoe_device::is_autocast_enabled(rows.device()) {
            true if grouped => Kind::BFloat16,
            _ => rows.kind(),
        };
        let rows = &rows.to_kind(kind);
        let cast = |w: &Tensor| match grouped && w.kind() != kind {
            true => w.to_kind(kind),
            false => w.shallow_clone(),
        };
        // (rows, r) -> (rows, d_out): each row through its expert's A then B.
        let low_rank = |x: &Tensor, a: &Tensor, b: &Tensor| -> Result<Tensor> {
            let z = grouped_linear(x, &cast(a), None, layout, path)?;
            Ok(grouped_linear(&z.to_kind(kind), &cast(b), None, layout, path)? * self.scale)
        };
        // (rows, d_ff)
        let pre = rows.matmul(&self.w1) + &self.b1;
        let pre = &pre + low_rank(rows, &self.a1, &self.up1)?;
        let h = dropout(&pre.gelu("none"), self.dropout, train);
        // (rows, d)
        let y = h.matmul(&self.w2) + &self.b2;
        Ok(&y + low_rank(&h.to_kind(kind), &self.a2, &self.up2)?)
    }
}
