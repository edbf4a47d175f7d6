//! Upcycling: starting a bank of experts from one pretrained dense FFN, so the MoE block
//! computes the pretrained function at step 0 ([Komatsuzaki et al.
//! 2022](https://arxiv.org/abs/2212.05055)), and Drop-Upcycling ([Nakamura et al.
//! 2025](https://arxiv.org/abs/2502.19261)), which re-initialises a different random share of
//! each expert's hidden units so that the experts differ from the first step.

use tch::{Kind, Tensor};

use crate::bank::ExpertBank;
use crate::dense::DenseFfn;
use crate::error::{ExpertsError, Result};

/// How the experts of an upcycled block start from the dense FFN. Default: exact copies.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Upcycling {
    /// Gaussian noise on every copied weight matrix, as a fraction of that matrix's standard
    /// deviation ([`ExpertBank::upcycle_from_weights`]).
    pub noise: f64,
    /// The share in `[0, 1]` of each expert's hidden units re-initialised after copying
    /// ([`ExpertBank::drop_units`]).
    pub drop: f64,
}

impl ExpertBank {
    /// Starts every expert from `dense` as `upcycling` says: a copy plus noise, then the
    /// dropped hidden units re-initialised.
    pub fn upcycle(&self, dense: &DenseFfn, upcycling: Upcycling) -> Result<()> {
        let (w1, b1, w2, b2) = dense.weights();
        self.upcycle_from_weights(w1, b1, w2, b2, upcycling.noise)?;
        self.drop_units(upcycling.drop)
    }

    /// Sets every expert to the dense FFN's weights plus independent Gaussian noise of standard
    /// deviation `noise * std(W)` on each weight matrix (biases are copied exactly), as in
    /// sparse upcycling ([Komatsuzaki et al. 2022](https://arxiv.org/abs/2212.05055)). The
    /// noise breaks the symmetry between experts; `noise = 0` makes them identical.
    pub fn upcycle_from(&self, dense: &DenseFfn, noise: f64) -> Result<()> {
        let (w1, b1, w2, b2) = dense.weights();
        self.upcycle_from_weights(w1, b1, w2, b2, noise)
    }

    /// [`ExpertBank::upcycle_from`] with the dense FFN given as tensors in PyTorch `Linear`
    /// layout: `w1 [d_ff, d]`, `b1 [d_ff]`, `w2 [d, d_ff]`, `b2 [d]` (as in a BERT checkpoint).
    pub fn upcycle_from_weights(
        &self,
        w1: &Tensor,
        b1: &Tensor,
        w2: &Tensor,
        b2: &Tensor,
        noise: f64,
    ) -> Result<()> {
        let (e, d, f) = (self.w1.size()[0], self.w1.size()[1], self.w1.size()[2]);
        if w1.size() != [f, d] || b1.size() != [f] || w2.size() != [d, f] || b2.size() != [d] {
            return Err(ExpertsError::Input(format!(
                "cannot upcycle: dense FFN weights {:?}, {:?}, {:?}, {:?} do not fit experts of \
                 d = {d}, d_ff = {f}",
                w1.size(),
                b1.size(),
                w2.size(),
                b2.size()
            )));
        }
        tch::no_grad(|| {
            let stacked = |w: &Tensor| {
                // Linear [out, in] -> expert [in, out], repeated E times, plus noise.
                let w = w.to_kind(self.w1.kind()).to_device(self.w1.device());
                let base = w.tr().unsqueeze(0).expand([e, -1, -1], false);
                let std = w.std(true).double_value(&[]);
                &base + base.randn_like() * (noise * std)
            };
            let biases = |b: &Tensor| {
                b.to_kind(self.w1.kind())
                    .to_device(self.w1.device())
                    .unsqueeze(0)
                    .expand([e, -1], false)
            };
            // shallow_clone shares storage: the copies land in the bank's parameters.
            self.w1.shallow_clone().copy_(&stacked(w1));
            self.w2.shallow_clone().copy_(&stacked(w2));
            self.b1.shallow_clone().copy_(&biases(b1));
            self.b2.shallow_clone().copy_(&biases(b2));
        });
        Ok(())
    }

    /// Drop-Upcycling's re-initialisation: in each expert, a random share `ratio` of the hidden
    /// units (`round(ratio * d_ff)`, a different draw per expert) gets fresh weights: its
    /// column of `w1`, its entry of `b1` and its row of `w2`, drawn from normal distributions
    /// with the mean and standard deviation of the whole `w1`, `b1` and `w2` of that expert
    /// (those of the pretrained FFN right after upcycling). The other units keep their values,
    /// so each expert is a partial copy of the FFN and no two experts are equal. `ratio = 0`
    /// changes nothing; the draws come from libtorch's global generator.
    pub fn drop_units(&self, ratio: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ExpertsError::Input(format!(
                "the share of re-initialised hidden units must be in [0, 1], got {ratio}"
            )));
        }
        let (e, f) = (self.w1.size()[0], self.w1.size()[2]);
        let dropped = (ratio * f as f64).round() as i64;
        if dropped == 0 {
            return Ok(());
        }
        let device = self.w1.device();
        tch::no_grad(|| {
            let like = |t: &Tensor, shape: &[i64]| {
                let t32 = t.to_kind(Kind::Float);
                let (mean, std) = (t32.mean(Kind::Float), t32.std(true));
                (Tensor::randn(shape, (Kind::Float, device)) * std + mean).to_kind(t.kind())
            };
            for x in 0..e {
                let units = Tensor::randperm(f, (Kind::Int64, device)).narrow(0, 0, dropped);
                let (w1, b1, w2) = (self.w1.get(x), self.b1.get(x), self.w2.get(x));
                let d = w1.size()[0];
                let new_w1 = like(&w1, &[d, dropped]);
                let new_b1 = like(&b1, &[dropped]);
                let new_w2 = like(&w2, &[dropped, d]);
                let _ = w1.shallow_clone().index_copy_(1, &units, &new_w1);
                let _ = b1.shallow_clone().index_copy_(0, &units, &new_b1);
                let _ = w2.shallow_clone().index_copy_(0, &units, &new_w2);
            }
        });
        Ok(())
    }
}
