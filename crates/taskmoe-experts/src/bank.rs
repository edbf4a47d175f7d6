//! A bank of `E` expert FFNs stored as stacked weights.

use std::sync::atomic::{AtomicBool, Ordering};

use taskmoe_device::{draw_for, module_name};
use tch::{nn, Kind, Tensor};

use taskmoe_kernels::{dropout, grouped_linear_with, GemmPath, GroupLayout, WeightGrads};

use crate::error::{ExpertsError, Result};
use crate::init::{ffn_bias_init, ffn_weight_init};

/// `E` independent FFNs, `y = gelu(x W1[e] + b1[e]) W2[e] + b2[e]`, run over rows grouped by
/// expert (the layout `taskmoe_kernels::permute` produces).
///
/// Parameters (stacked, input-major so no transpose is needed per call):
/// `w1 [E, d, d_ff]`, `b1 [E, d_ff]`, `w2 [E, d_ff, d]`, `b2 [E, d]`. Each expert is drawn
/// independently from the initialisation every FFN shares ([`crate::init`]: the dense FFN's),
/// so no two experts are equal or tied; [`ExpertBank::upcycle_from`] instead starts every
/// expert from a dense FFN (plus optional noise).
#[derive(Debug)]
pub struct ExpertBank {
    /// First projection. `[E, d, d_ff]`
    pub w1: Tensor,
    /// First bias. `[E, d_ff]`
    pub b1: Tensor,
    /// Second projection. `[E, d_ff, d]`
    pub w2: Tensor,
    /// Second bias. `[E, d]`
    pub b2: Tensor,
    dropout: f64,
    /// Set when the bank runs the per-expert loop instead of the grouped GEMM (benches and
    /// tests switch it through a shared reference).
    loop_gemm: AtomicBool,
    /// Set when the weight gradients go through autograd's own backward instead of being
    /// accumulated in place ([`WeightGrads`]; benches and tests switch it).
    autograd_grads: AtomicBool,
}

impl ExpertBank {
    /// Creates `num_experts` experts `d_model -> d_ff -> d_model` under `p`, with dropout
    /// `dropout` on their hidden activation in training.
    pub fn new(p: nn::Path, num_experts: usize, d_model: usize, d_ff: usize, dropout: f64) -> Self {
        let (e, d, f) = (num_experts as i64, d_model as i64, d_ff as i64);
        // All four from the bank's own keyed stream (taskmoe_device::draw_for).
        draw_for(&module_name(&p), || ExpertBank {
            w1: p.var("w1", &[e, d, f], ffn_weight_init(d)),
            b1: p.var("b1", &[e, f], ffn_bias_init(d)),
            w2: p.var("w2", &[e, f, d], ffn_weight_init(f)),
            b2: p.var("b2", &[e, d], ffn_bias_init(f)),
            dropout,
            loop_gemm: AtomicBool::new(false),
            autograd_grads: AtomicBool::new(false),
        })
    }

    /// A bank from existing stacked weights (checked for consistent shapes), for import and
    /// sub-network export.
    pub fn from_weights(
        w1: Tensor,
        b1: Tensor,
        w2: Tensor,
        b2: Tensor,
        dropout: f64,
    ) -> Result<Self> {
        let s1 = w1.size();
        let ok = s1.len() == 3
            && b1.size() == [s1[0], s1[2]]
            && w2.size() == [s1[0], s1[2], s1[1]]
            && b2.size() == [s1[0], s1[1]];
        if !ok {
            return Err(ExpertsError::Input(format!(
                "inconsistent expert weights: w1 {:?}, b1 {:?}, w2 {:?}, b2 {:?} (expected \
                 [E, d, f], [E, f], [E, f, d], [E, d])",
                s1,
                b1.size(),
                w2.size(),
                b2.size()
            )));
        }
        Ok(ExpertBank {
            w1,
            b1,
            w2,
            b2,
            dropout,
            loop_gemm: AtomicBool::new(false),
            autograd_grads: AtomicBool::new(false),
        })
    }

    /// Experts `first .. first + n` as a bank of views (gradients reach these parameters), for
    /// the experts one rank runs under expert parallelism.
    pub(crate) fn narrow(&self, first: usize, n: usize) -> Result<ExpertBank> {
        let (f, n) = (first as i64, n as i64);
        Ok(ExpertBank {
            w1: self.w1.f_narrow(0, f, n)?,
            b1: self.b1.f_narrow(0, f, n)?,
            w2: self.w2.f_narrow(0, f, n)?,
            b2: self.b2.f_narrow(0, f, n)?,
            dropout: self.dropout,
            loop_gemm: AtomicBool::new(self.loop_gemm.load(Ordering::Relaxed)),
            autograd_grads: AtomicBool::new(self.autograd_grads.load(Ordering::Relaxed)),
        })
    }

    /// Number of experts `E` this bank stores (under sharded expert parallelism, this rank's
    /// `E / P`).
    pub fn num_experts(&self) -> usize {
        self.w1.size()[0] as usize
    }

    /// The four stacked parameters, in the order `w1, b1, w2, b2`.
    pub fn params(&self) -> [&Tensor; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    /// Replaces the storage of every parameter by `new[i]` (same rank, any expert count), in
    /// place: every handle on the parameters (the `VarStore`'s, an optimizer's) sees the new
    /// tensors. Used to shard the experts over ranks and to gather them back.
    pub(crate) fn set_storage(&self, new: [Tensor; 4]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (param, data) in self.params().into_iter().zip(new) {
            let mut handle = param.shallow_clone();
            handle.f_set_data(&data)?;
        }
        Ok(())
    }

    /// Which grouped matmul the bank runs ([`GemmPath::Grouped`] unless set).
    pub fn gemm_path(&self) -> GemmPath {
        match self.loop_gemm.load(Ordering::Relaxed) {
            true => GemmPath::Loop,
            false => GemmPath::Grouped,
        }
    }

    /// Chooses the grouped matmul (benches compare the two; results are equal).
    pub fn set_gemm_path(&self, path: GemmPath) {
        self.loop_gemm
            .store(path == GemmPath::Loop, Ordering::Relaxed);
    }

    /// How the experts' weight gradients reach `.grad` in training ([`WeightGrads::InPlace`]
    /// unless set: accumulated only for the experts that received rows; outside training
    /// always autograd's).
    pub fn weight_grads(&self) -> WeightGrads {
        match self.autograd_grads.load(Ordering::Relaxed) {
            true => WeightGrads::Autograd,
            false => WeightGrads::InPlace,
        }
    }

    /// Chooses how the weight gradients are computed (benches compare the two; the gradients
    /// are equal to rounding).
    pub fn set_weight_grads(&self, grads: WeightGrads) {
        self.autograd_grads
            .store(grads == WeightGrads::Autograd, Ordering::Relaxed);
    }

    /// Runs each expert on its rows, given as host counts (the layout is built from them: on
    /// CUDA with [`GemmPath::Grouped`] that is a host-to-device copy; the MoE layer passes the
    /// dispatch plan's device-built layout to [`ExpertBank::forward_layout`] instead).
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
        // libtorch's grouped GEMM is not on autocast's op list and needs one dtype: under
        // autocast it runs in bf16 as autocast's matmuls would (rows and weights cast), else
        // in the rows' dtype. The loop's matmuls are autocast's own.
        let grouped = self.gemm_path() == GemmPath::Grouped;
        let kind = match taskmoe_device::is_autocast_enabled(rows.device()) {
            true if grouped => Kind::BFloat16,
            _ => rows.kind(),
        };
        let rows = &rows.to_kind(kind);
        let cast = |w: &Tensor| match grouped && w.kind() != kind {
            true => w.to_kind(kind),
            false => w.shallow_clone(),
        };
        // In place only in training (an evaluation that records gradients, say for
        // attribution, gets autograd's, which a functional gradient call can return); cast
        // weights are not the parameters, so theirs go through autograd anyway.
        let path = self.gemm_path();
        let grads = match train {
            true => self.weight_grads(),
            false => WeightGrads::Autograd,
        };
        let h = grouped_linear_with(
            rows,
            &cast(&self.w1),
            Some(&cast(&self.b1)),
            layout,
            path,
            grads,
        )?
        .gelu("none");
        let h = dropout(&h, self.dropout, train);
        Ok(grouped_linear_with(
            &h,
            &cast(&self.w2),
            Some(&cast(&self.b2)),
            layout,
            path,
            grads,
        )?)
    }
}
