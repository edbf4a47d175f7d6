//! AdamW over named parameters, with state that can be saved and loaded.
//!
//! Adam ([Kingma & Ba 2015](https://arxiv.org/abs/1412.6980)) with decoupled weight decay
//! ([Loshchilov & Hutter 2019](https://arxiv.org/abs/1711.05101)), the update of PyTorch's
//! `torch.optim.AdamW` (`amsgrad = False`, `maximize = False`). For a parameter `p` with
//! gradient `g`, at its `t`-th update with learning rate `lr`:
//!
//! ```text
//! p  <- p * (1 - lr * weight_decay)        (only parameters in the decay group)
//! m  <- beta1 * m + (1 - beta1) * g
//! v  <- beta2 * v + (1 - beta2) * g^2
//! p  <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```
//!
//! tch's own optimizers keep their moments inside libtorch where they cannot be exported, so a
//! resumed run would restart Adam from zero; this one keeps `m` (`exp_avg`), `v` (`exp_avg_sq`)
//! and `t` per parameter as tensors it owns and saves them in safetensors (DESIGN.md section 4).
//!
//! Every parameter is updated at every step; a parameter whose gradient is undefined (no
//! backward pass has reached it yet) is updated as if its gradient were zero: the moments
//! decay and weight decay applies. This differs from PyTorch, which skips it, on purpose:
//! libtorch cannot reset a gradient to undefined, so after [`AdamW::zero_grad`] a parameter a
//! batch did not use (another task's head, an expert nobody chose) has a zero gradient, not
//! none. Treating both the same makes an update independent of which parameters earlier
//! batches reached, which is what lets a run resumed from a checkpoint (where no gradient is
//! defined yet) continue exactly as the uninterrupted run. The step count `t` is kept per
//! parameter and saved, and advances for every parameter at every step.
//!
//! Experts are the one exception, when asked for: with [`UnusedExperts::Skip`] the slice of a
//! stacked expert parameter whose gradient is zero (an expert no token was routed to) is left
//! as it is, lazy moments as in PyTorch's `SparseAdam`, so that the update's cost follows the
//! experts that received tokens; the default, [`UnusedExperts::Update`], is the rule above.
//!
//! # Flat buffers
//!
//! The parameters of one kind, device and partition ([`AdamW::with_partitions`]) are moved
//! into one flat buffer when the optimizer is built (each parameter's data becomes a view of
//! it, `Tensor::set_data`, so the model and its `VarStore` see the same values), decay group
//! first, with flat buffers for the moments and
//! for the gradients: the first time a gradient is seen it is copied into its slice and
//! becomes a view of it too, and libtorch accumulates later gradients in place, so from then on
//! the whole update, the gradient norm and the clipping are a few vectorised ops over a few
//! long buffers instead of ten small ops per parameter. For fp32 groups on the CPU the update
//! is one pass over the buffers in Rust (`fused.rs`, split across `tch::get_num_threads()`
//! threads) with the rounding of the libtorch ops, bar `sqrt`'s; other groups (bf16, CUDA),
//! and every group after [`AdamW::set_fused`]`(false)`, walk the buffers in chunks of
//! [`CHUNK`] elements with libtorch ops, so that every chunk's five arrays stay in cache
//! across its eight ops.
//! Whatever replaces a parameter's data afterwards (another `set_data`) detaches it from the
//! optimizer: load weights with `copy_`, as `taskmoe_model::load_weights` does. When the
//! parameters' step counts differ (only possible through a hand-made state file) the update
//! falls back to one parameter at a time, with the same formula.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{invalid, OptimError, Result};
use crate::fused;

/// AdamW hyper-parameters other than the learning rate, which is passed to every
/// [`AdamW::step`] (a schedule computes it).
///
/// ```toml
/// beta1 = 0.9
/// beta2 = 0.999
/// eps = 1e-8
/// weight_decay = 0.01
/// unused_experts = "update"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Decay rate of the first moment (the gradient's running mean). Default `0.9`.
    pub beta1: f64,
    /// Decay rate of the second moment (the running mean of squared gradients). Default
    /// `0.999`.
    pub beta2: f64,
    /// Added to the denominator for numerical stability. Default `1e-8`.
    pub eps: f64,
    /// Decoupled weight decay coefficient, applied as `p *= 1 - lr * weight_decay` to the
    /// parameters of the decay group only (see [`default_decays`]). Default `0.01`.
    pub weight_decay: f64,
    /// What a step does to an expert whose gradient is zero ([`UnusedExperts`]). Default
    /// `update`.
    pub unused_experts: UnusedExperts,
    /// The learning rate of router parameters ([`is_router_param`]) is the step's rate times
    /// this (weight decay follows, as in a PyTorch parameter group with its own rate).
    /// Default `1`.
    pub router_lr_scale: f64,
}

/// What [`AdamW::step`] does to an expert that received no token in the step.
///
/// An expert is one slice `[e]` of a parameter with a path segment `experts` (an expert
/// bank's stacked `w1 [E, d, d_ff]`, `b1`, `w2`, `b2`; see [`is_expert_param`]); it counts as
/// unused in a step when its slice of that parameter's gradient is exactly zero, which is what
/// an expert no token was routed to gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnusedExperts {
    /// Every expert is updated at every step, as if its zero gradient were any other gradient:
    /// its moments decay, weight decay applies, and the Adam step of the decayed moments
    /// moves it (PyTorch's `AdamW` with a zero gradient). The cost of a step follows the
    /// number of experts.
    #[default]
    Update,
    /// An unused expert's slice is left as it is: weights, both moments and weight decay
    /// untouched (lazy moments, as PyTorch's `SparseAdam` treats rows without gradient), so
    /// the update's cost follows the experts that received tokens. The step count `t` stays
    /// per parameter and advances at every step, so an expert used again is bias-corrected
    /// with the parameter's `t`, as in `SparseAdam`. Where every expert is used the update is
    /// the one of `update`, bit for bit (tested). The zero test costs one pass over the
    /// experts' gradients.
    Skip,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            unused_experts: UnusedExperts::Update,
            router_lr_scale: 1.0,
        }
    }
}

impl AdamWConfig {
    /// Checks that betas are in `[0, 1)`, `eps > 0` and `weight_decay >= 0`, all finite.
    pub fn validate(&self) -> Result<()> {
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(invalid(
                    "adamw",
                    format!("{name} = {beta} is not in [0, 1)"),
                ));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(invalid("adamw", format!("eps = {} must be > 0", self.eps)));
        }
        if !(self.router_lr_scale.is_finite() && self.router_lr_scale >= 0.0) {
            return Err(invalid(
                "adamw",
                format!("router_lr_scale = {} must be >= 0", self.router_lr_scale),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid(
                "adamw",
                format!("weight_decay = {} must be >= 0", self.weight_decay),
            ));
        }
        Ok(())
    }
}

/// The default weight-decay rule: whether the parameter called `name` is decayed.
///
/// A parameter is **not** decayed when its name
/// - is `bias` or ends in `.bias`, or is a stacked expert bias (`.b1`, `.b2` of an expert bank);
/// - has a dot-separated segment whose lower-case form contains `norm` (`LayerNorm.weight`,
///   `layer_norm.weight`, `final_norm.gamma`, `rmsnorm.weight`), or is `ln` or starts with
///   `ln_` (GPT-2's `ln_1`, `ln_f`);
/// - has a segment whose lower-case form contains `embed` (`word_embeddings.weight`,
///   `task_embedding.weight`, `embed_tokens.weight`).
///
/// Everything else (linear and expert weight matrices, router gates, heads) is decayed. This
/// is the grouping of BERT's and nanoGPT's training scripts expressed through names, so that it
/// also works for parameters that are 1-D for other reasons.
pub fn default_decays(name: &str) -> bool {
    let expert_bias =
        name.contains(".experts.") && (name.ends_with(".b1") || name.ends_with(".b2"));
    if name == "bias" || name.ends_with(".bias") || expert_bias {
        return false;
    }
    !name.split('.').any(|segment| {
        let s = segment.to_ascii_lowercase();
        s.contains("norm") || s == "ln" || s.starts_with("ln_") || s.contains("embed")
    })
}

/// Whether the parameter called `name` is a bank of stacked experts, `[E, ...]` with expert
/// `e` at index `e` of its first dimension: a dot-separated segment of its name is `experts`
/// (`blocks.1.moe.experts.w1`). [`UnusedExperts::Skip`] acts on the experts of these
/// parameters.
pub fn is_expert_param(name: &str) -> bool {
    name.split('.').any(|segment| segment == "experts")
}

/// Whether the parameter called `name` belongs to a router: a dot-separated segment of its name
/// is `router` (`encoder.layer.1.moe.router.weight`). [`AdamWConfig::router_lr_scale`] scales
/// their learning rate.
pub fn is_router_param(name: &str) -> bool {
    name.split('.').any(|segment| segment == "router")
}

/// Elements per chunk of the flat update with libtorch ops (the path of groups that are not
/// fp32 on the CPU, or of every group after [`AdamW::set_fused`]`(false)`): 1 Mi elements
/// (4 MiB per fp32 array), so the chunks of the parameter, gradient, both moments and the
/// scratch (20 MiB) stay in the 32 MiB L3 cache across the chunk's eight ops, while the number of ops stays small (64 Ki-element
/// chunks measured slower: 2,350 chunks per step for the 154M parameters of the `medium`
/// task-MoE model, each op paying libtorch's dispatch and OpenMP start-up).
pub const CHUNK: i64 = 1 << 20;

/// One parameter and its optimizer state; the tensors are views of its group's buffers.
#[derive(Debug)]
struct ParamState {
    name: String,
    param: Tensor,
    decay: bool,
    /// The number of stacked experts `E` when [`is_expert_param`] (and it has a first
    /// dimension), else 0.
    experts: i64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
    /// Its flat group, and its element offset in the group's buffers.
    group: usize,
    offset: i64,
    /// Its partition ([`AdamW::with_partitions`]; 0 by default).
    partition: usize,
    /// Its learning rate over the step's ([`AdamWConfig::router_lr_scale`] or 1).
    lr_scale: f64,
}

/// The parameters of one kind, device, partition and learning-rate scale in flat buffers,
/// decayed ones first.
#[derive(Debug)]
struct FlatGroup {
    /// The partition its parameters belong to.
    partition: usize,
    /// Its parameters' learning rate over the step's.
    lr_scale: f64,
    /// Indices into `AdamW::params`, in buffer order.
    members: Vec<usize>,
    /// Elements of the decayed parameters (a prefix of the buffers).
    decay_len: i64,
    values: Tensor,
    grads: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// One chunk of scratch space (for the update with libtorch ops).
    scratch: Tensor,
}

/// AdamW over a list of named parameters (module docs give the update).
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<ParamState>,
    groups: Vec<FlatGroup>,
    num_steps: u64,
    /// Whether fp32 CPU groups take the fused update ([`AdamW::set_fused`]).
    fused: bool,
}

/// Tensor name prefix of the first moments in a state file.
pub const EXP_AVG_PREFIX: &str = "exp_avg.";
/// Tensor name prefix of the second moments in a state file.
pub const EXP_AVG_SQ_PREFIX: &str = "exp_avg_sq.";
/// Tensor name prefix of the per-parameter step counts (int64 scalars) in a state file.
pub const STEP_PREFIX: &str = "step.";
/// Tensor name of the optimizer's own step count ([`AdamW::num_steps`], int64 scalar).
pub const NUM_STEPS: &str = "num_steps";

impl AdamW {
    /// An optimizer over `params` (as from `VarStore::variables()`), with weight decay for the
    /// parameters [`default_decays`] selects.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> Result<Self> {
        Self::with_decay_rule(params, config, default_decays)
    }

    /// An optimizer over `params` where `decays(name)` says which parameters get weight decay;
    /// an explicit set is `|n| set.contains(n)`.
    ///
    /// Parameters are kept in name order. Fails on duplicate names and non-floating-point
    /// parameters. The moments start at zero, with the parameter's kind and device.
    pub fn with_decay_rule(
        params: Vec<(String, Tensor)>,
        config: AdamWConfig,
        decays: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        Self::with_partitions(params, config, decays, |_| 0)
    }

    /// [`AdamW::with_decay_rule`] with the parameters split into partitions by
    /// `partition(name)`: each partition gets flat buffers of its own, so its gradients can be
    /// reduced over another group of ranks ([`AdamW::flat_grads_by_partition`]; expert
    /// parallelism reduces the sharded experts' gradients over the ranks that hold the same
    /// experts, the rest over all ranks). The update is the same.
    pub fn with_partitions(
        params: Vec<(String, Tensor)>,
        config: AdamWConfig,
        decays: impl Fn(&str) -> bool,
        partition: impl Fn(&str) -> usize,
    ) -> Result<Self> {
        config.validate()?;
        let mut sorted: BTreeMap<String, Tensor> = BTreeMap::new();
        for (name, param) in params {
            if !param.is_floating_point() {
                return Err(invalid(
                    "adamw",
                    format!("parameter `{name}` has kind {:?}", param.kind()),
                ));
            }
            if sorted.contains_key(&name) {
                return Err(invalid(
                    "adamw",
                    format!("parameter `{name}` appears twice"),
                ));
            }
            sorted.insert(name, param);
        }
        let mut params: Vec<ParamState> = sorted
            .into_iter()
            .map(|(name, param)| ParamState {
                decay: decays(&name),
                experts: match param.size().first() {
                    Some(&e) if is_expert_param(&name) && e > 0 => e,
                    _ => 0,
                },
                partition: partition(&name),
                lr_scale: match is_router_param(&name) {
                    true => config.router_lr_scale,
                    false => 1.0,
                },
                exp_avg: Tensor::new(),
                exp_avg_sq: Tensor::new(),
                name,
                param,
                step: 0,
                group: 0,
                offset: 0,
            })
            .collect();
        let groups = flatten(&mut params)?;
        Ok(AdamW {
            config,
            params,
            groups,
            num_steps: 0,
            fused: true,
        })
    }

    /// Makes every defined gradient a view of its slice of the group's gradient buffer
    /// (copying it there the first time); an undefined gradient's slice is zero.
    fn adopt_grads(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for group in &self.groups {
            for &i in &group.members {
                let p = &self.params[i];
                let n = p.param.numel() as i64;
                let mut g = p.param.grad();
                if n == 0 || !g.defined() {
                    continue;
                }
                if is_adopted(&g, p, &self.groups) {
                    continue;
                }
                let slice = group.grads.f_narrow(0, p.offset, n)?;
                let view = slice.f_view(p.param.size().as_slice())?;
                view.shallow_clone().f_copy_(&g)?;
                g.f_set_data(&view)?;
            }
        }
        Ok(())
    }

    /// The flat gradient buffers, one per kind and device (after making every defined
    /// gradient a view of its slice; a parameter without a gradient has a zero slice). Writing
    /// into them changes the gradients the next [`AdamW::step`] and [`AdamW::grad_norm`] use:
    /// data parallelism all-reduces them in place.
    pub fn flat_grads(&mut self) -> Result<Vec<Tensor>> {
        Ok(self
            .flat_grads_by_partition()?
            .into_iter()
            .map(|(_, g)| g)
            .collect())
    }

    /// [`AdamW::flat_grads`] with the partition of each buffer.
    pub fn flat_grads_by_partition(&mut self) -> Result<Vec<(usize, Tensor)>> {
        self.adopt_grads()?;
        Ok(self
            .groups
            .iter()
            .map(|g| (g.partition, g.grads.shallow_clone()))
            .collect())
    }

    /// The sum of the squared gradients of each partition (absent: no parameter), over the
    /// flat buffers; [`AdamW::grad_norm`] is the square root of their total.
    pub fn grad_square_sums(&mut self) -> Result<BTreeMap<usize, f64>> {
        self.adopt_grads()?;
        let _guard = tch::no_grad_guard();
        let mut sums = BTreeMap::new();
        for group in &self.groups {
            let norm = group.grads.f_norm()?.f_double_value(&[])?;
            *sums.entry(group.partition).or_insert(0.0) += norm * norm;
        }
        Ok(sums)
    }

    /// Clips the gradients to a global L2 norm of `max_norm` given that norm (computed by the
    /// caller, say over the shards of several ranks), as [`AdamW::clip_grad_norm`] does.
    pub fn clip_to_norm(&mut self, norm: f64, max_norm: f64) -> Result<()> {
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(invalid(
                "gradient clipping",
                format!("max_norm = {max_norm} must be > 0"),
            ));
        }
        if norm.is_finite() && norm > max_norm {
            let scale = max_norm / (norm + CLIP_EPS);
            let _guard = tch::no_grad_guard();
            for group in &mut self.groups {
                let _ = group.grads.f_mul_scalar_(scale)?;
            }
        }
        Ok(())
    }

    /// Chooses how the flat groups are updated: `true` (the default) updates fp32 CPU groups
    /// in one fused pass over their buffers, `false` with libtorch ops chunk by chunk, the
    /// path bf16 and CUDA groups always take. Both compute the same update in the same order
    /// of roundings: the moments come out bit for bit the same, the parameters within an ulp
    /// or two of the step, because libtorch's fp32 `sqrt` on the CPU is not correctly rounded
    /// and the fused one is (the optimizer tests compare them). The switch is there to compare
    /// and to measure; it changes nothing that is saved.
    pub fn set_fused(&mut self, fused: bool) {
        self.fused = fused;
    }

    /// Whether fp32 CPU groups take the fused update ([`AdamW::set_fused`]).
    pub fn fused(&self) -> bool {
        self.fused
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// How many times [`AdamW::step`] has run (saved and restored with the state).
    pub fn num_steps(&self) -> u64 {
        self.num_steps
    }

    /// The parameter names, in the optimizer's (sorted) order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// Whether the parameter `name` is in the weight-decay group; `None` if it is unknown.
    pub fn decays(&self, name: &str) -> Option<bool> {
        self.find(name).map(|p| p.decay)
    }

    /// The first and second moments and the step count of parameter `name`.
    pub fn state(&self, name: &str) -> Option<(&Tensor, &Tensor, u64)> {
        self.find(name).map(|p| (&p.exp_avg, &p.exp_avg_sq, p.step))
    }

    fn find(&self, name: &str) -> Option<&ParamState> {
        self.params
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.params[i])
    }

    /// Zeroes every defined gradient in place (one op per flat buffer once the gradients have
    /// been adopted).
    pub fn zero_grad(&mut self) {
        let _guard = tch::no_grad_guard();
        for group in &mut self.groups {
            let _ = group.grads.zero_();
        }
        for p in &mut self.params {
            let mut g = p.param.grad();
            if g.defined() && g.numel() > 0 && !is_adopted(&g, p, &self.groups) {
                let _ = g.zero_();
            }
        }
    }

    /// The global L2 norm of the gradients (0 when none is defined), over the flat buffers.
    pub fn grad_norm(&mut self) -> Result<f64> {
        Ok(self.grad_square_sums()?.values().sum::<f64>().sqrt())
    }

    /// Clips the parameters' gradients to a global L2 norm of `max_norm` and returns the norm
    /// before clipping, as [`crate::clip_grad_norm`] does (a non-finite norm is returned and nothing is
    /// scaled), in one scaling op per flat buffer.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.grad_norm()?;
        self.clip_to_norm(norm, max_norm)?;
        Ok(norm)
    }

    /// One AdamW update of every parameter (an undefined gradient counts as zero), at learning
    /// rate `lr`, without recording autograd history; with [`UnusedExperts::Skip`] the
    /// experts whose gradient is zero are left out.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(invalid("adamw", format!("learning rate {lr} must be >= 0")));
        }
        self.adopt_grads()?;
        // In-place tensor methods return a handle to their receiver, which is not needed.
        let _guard = tch::no_grad_guard();
        self.num_steps += 1;
        let skip = self.config.unused_experts == UnusedExperts::Skip;
        let first = self.params.first().map_or(0, |p| p.step);
        if self.params.iter().all(|p| p.step == first) {
            for p in &mut self.params {
                p.step += 1;
            }
            let t = i32::try_from(first + 1).unwrap_or(i32::MAX);
            for g in 0..self.groups.len() {
                let ranges = match skip {
                    true => self.active_ranges(g)?,
                    false => vec![(0, self.groups[g].values.size()[0])],
                };
                let lr = lr * self.groups[g].lr_scale;
                self.groups[g].update(&self.config, lr, t, &ranges, self.fused)?;
            }
            return Ok(());
        }
        for p in &mut self.params {
            let mut grad = p.param.grad();
            if !grad.defined() {
                grad = p.param.zeros_like();
            }
            p.step += 1;
            let t = i32::try_from(p.step).unwrap_or(i32::MAX);
            let lr = lr * p.lr_scale;
            let tensors = [&p.param, &grad, &p.exp_avg, &p.exp_avg_sq];
            if !(skip && p.experts > 0) {
                update_tensors(tensors, p.decay, &self.config, lr, t)?;
                continue;
            }
            for (e, used) in used_experts(&grad, p.experts)?.into_iter().enumerate() {
                if used {
                    let row = tensors.map(|x| x.narrow(0, e as i64, 1));
                    update_tensors(row.each_ref(), p.decay, &self.config, lr, t)?;
                }
            }
        }
        Ok(())
    }

    /// The element ranges of group `g`'s buffers that [`UnusedExperts::Skip`] updates: all
    /// but the slices of unused experts, adjacent ranges merged, in buffer order.
    fn active_ranges(&self, g: usize) -> Result<Vec<(i64, i64)>> {
        let group = &self.groups[g];
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        let mut push = |start: i64, end: i64| match ranges.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ if start < end => ranges.push((start, end)),
            _ => {}
        };
        for &i in &group.members {
            let p = &self.params[i];
            let n = p.param.numel() as i64;
            if p.experts == 0 || n == 0 {
                push(p.offset, p.offset + n);
                continue;
            }
            let grad = group.grads.f_narrow(0, p.offset, n)?;
            let row = n / p.experts;
            for (e, used) in used_experts(&grad, p.experts)?.into_iter().enumerate() {
                if used {
                    let start = p.offset + e as i64 * row;
                    push(start, start + row);
                }
            }
        }
        Ok(ranges)
    }

    /// The state as named CPU tensors: `exp_avg.<param>`, `exp_avg_sq.<param>` (the
    /// parameter's shape and kind), `step.<param>` (int64 scalar) and `num_steps`.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.params.len() + 1);
        for p in &self.params {
            out.push((
                format!("{EXP_AVG_PREFIX}{}", p.name),
                p.exp_avg.f_to_device(Device::Cpu)?.f_contiguous()?,
            ));
            out.push((
                format!("{EXP_AVG_SQ_PREFIX}{}", p.name),
                p.exp_avg_sq.f_to_device(Device::Cpu)?.f_contiguous()?,
            ));
            out.push((format!("{STEP_PREFIX}{}", p.name), step_tensor(p.step)));
        }
        out.push((NUM_STEPS.to_string(), step_tensor(self.num_steps)));
        Ok(out)
    }

    /// Writes the state to a safetensors file (tensors of [`AdamW::state_tensors`]).
    ///
    /// The file is not fsynced here; taskmoe-train's `CheckpointWriter` does that for the files of a
    /// checkpoint.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        Tensor::write_safetensors(&self.state_tensors()?, path.as_ref())?;
        Ok(())
    }

    /// Restores the state from a file written by [`AdamW::save`].
    ///
    /// Every parameter must have its three entries with its own shape and kind, and the file
    /// must hold nothing else; otherwise [`OptimError::StateMismatch`] lists every missing,
    /// extra and mis-shaped entry, and the optimizer is left unchanged.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        self.load_tensors(saved, path)
    }

    /// [`AdamW::load`] from tensors named as in [`AdamW::state_tensors`]; `origin` names
    /// their source in errors.
    pub fn load_tensors(
        &mut self,
        mut saved: BTreeMap<String, Tensor>,
        origin: &Path,
    ) -> Result<()> {
        let path = origin;
        let mut problems = Vec::new();
        let mut take_step = |saved: &mut BTreeMap<String, Tensor>, key: &str| {
            match saved.remove(key) {
                None => problems.push(format!("missing `{key}`")),
                Some(t) if t.kind() != Kind::Int64 || t.numel() != 1 => problems.push(format!(
                    "`{key}` is {:?} {:?}, expected an int64 scalar",
                    t.kind(),
                    t.size()
                )),
                Some(t) => match u64::try_from(t.reshape([-1]).int64_value(&[0])) {
                    Ok(step) => return Some(step),
                    Err(_) => problems.push(format!("`{key}` is negative")),
                },
            }
            None
        };
        let num_steps = take_step(&mut saved, NUM_STEPS);
        let steps: Vec<Option<u64>> = self
            .params
            .iter()
            .map(|p| take_step(&mut saved, &format!("{STEP_PREFIX}{}", p.name)))
            .collect();
        let mut moments = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let mut pair = Vec::with_capacity(2);
            for prefix in [EXP_AVG_PREFIX, EXP_AVG_SQ_PREFIX] {
                let key = format!("{prefix}{}", p.name);
                match saved.remove(&key) {
                    None => problems.push(format!("missing `{key}`")),
                    Some(t) if t.size() != p.param.size() || t.kind() != p.param.kind() => problems
                        .push(format!(
                            "`{key}` is {:?} {:?}, the parameter is {:?} {:?}",
                            t.kind(),
                            t.size(),
                            p.param.kind(),
                            p.param.size()
                        )),
                    Some(t) => pair.push(t),
                }
            }
            moments.push(pair);
        }
        problems.extend(saved.keys().map(|k| format!("extra `{k}`")));
        if !problems.is_empty() {
            return Err(OptimError::StateMismatch {
                path: path.to_path_buf(),
                problems: problems.join("; "),
            });
        }
        let _guard = tch::no_grad_guard();
        for ((p, step), pair) in self.params.iter_mut().zip(steps).zip(moments) {
            p.exp_avg.f_copy_(&pair[0])?;
            p.exp_avg_sq.f_copy_(&pair[1])?;
            p.step = step.unwrap_or_default();
        }
        self.num_steps = num_steps.unwrap_or_default();
        Ok(())
    }

    /// The names in the decay group and in the no-decay group.
    pub fn groups(&self) -> (BTreeSet<&str>, BTreeSet<&str>) {
        let (decay, no_decay): (Vec<_>, Vec<_>) = self.params.iter().partition(|p| p.decay);
        (
            decay.iter().map(|p| p.name.as_str()).collect(),
            no_decay.iter().map(|p| p.name.as_str()).collect(),
        )
    }
}

/// Which of the `experts` stacked experts of `grad` (`[E, ...]` or its flat slice) have a
/// non-zero gradient.
fn used_experts(grad: &Tensor, experts: i64) -> Result<Vec<bool>> {
    let used = grad
        .f_reshape([experts, -1])?
        .f_ne(0)?
        .f_any_dim(1, false)?;
    Ok(Vec::<bool>::try_from(&used)?)
}

/// The AdamW update of one parameter (or a slice of it) `[p, g, m, v]` at its step `t`, in
/// PyTorch's order of operations (the fallback when step counts differ).
fn update_tensors(
    [p, grad, m, v]: [&Tensor; 4],
    decay: bool,
    config: &AdamWConfig,
    lr: f64,
    t: i32,
) -> Result<()> {
    let AdamWConfig {
        beta1,
        beta2,
        eps,
        weight_decay,
        ..
    } = *config;
    let (mut p, mut m, mut v) = (p.shallow_clone(), m.shallow_clone(), v.shallow_clone());
    if decay && weight_decay != 0.0 {
        let _ = p.f_mul_scalar_(1.0 - lr * weight_decay)?;
    }
    let _ = m.f_lerp_(grad, 1.0 - beta1)?;
    let _ = v.f_mul_scalar_(beta2)?;
    let _ = v.f_addcmul_(grad, &grad.f_mul_scalar(1.0 - beta2)?)?;
    let bias_correction1 = 1.0 - beta1.powi(t);
    let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt();
    let mut denom = v.f_sqrt()?;
    let _ = denom.f_div_scalar_(bias_correction2_sqrt)?;
    let _ = denom.f_add_scalar_(eps)?;
    let mut update = m.f_div(&denom)?;
    let _ = update.f_mul_scalar_(lr / bias_correction1)?;
    let _ = p.f_sub_(&update)?;
    Ok(())
}

/// Clipping's epsilon, as in [`crate::clip_grad_norm`].
const CLIP_EPS: f64 = 1e-6;

/// Whether `g` (a defined gradient of `p`) is already the view of its flat slice.
fn is_adopted(g: &Tensor, p: &ParamState, groups: &[FlatGroup]) -> bool {
    let grads = &groups[p.group].grads;
    g.is_contiguous() && grads.narrow(0, p.offset, g.numel() as i64).data_ptr() == g.data_ptr()
}

/// Groups the parameters by kind, device, partition and learning-rate scale, decayed first, and moves each group into flat
/// buffers (module docs, "Flat buffers").
fn flatten(params: &mut [ParamState]) -> Result<Vec<FlatGroup>> {
    let _guard = tch::no_grad_guard();
    let mut keys: Vec<(Kind, Device, usize, u64)> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let key = (
            p.param.kind(),
            p.param.device(),
            p.partition,
            p.lr_scale.to_bits(),
        );
        let g = match keys.iter().position(|k| *k == key) {
            Some(g) => g,
            None => {
                keys.push(key);
                members.push(Vec::new());
                keys.len() - 1
            }
        };
        members[g].push(i);
    }
    let mut groups = Vec::with_capacity(keys.len());
    for (group, ((kind, device, partition, lr_scale), mut idx)) in
        keys.into_iter().zip(members).enumerate()
    {
        idx.sort_by_key(|&i| !params[i].decay); // stable: name order within each part
        let flat: Vec<Tensor> = idx
            .iter()
            .map(|&i| params[i].param.f_detach()?.f_reshape([-1]))
            .collect::<std::result::Result<_, _>>()?;
        let values = Tensor::f_cat(&flat, 0)?;
        let total = values.size()[0];
        let zeros = || Tensor::f_zeros([total], (kind, device));
        let (grads, exp_avg, exp_avg_sq) = (zeros()?, zeros()?, zeros()?);
        let mut offset = 0;
        let mut decay_len = 0;
        for &i in &idx {
            let p = &mut params[i];
            let n = p.param.numel() as i64;
            let shape = p.param.size();
            let view = |t: &Tensor| t.f_narrow(0, offset, n)?.f_view(shape.as_slice());
            p.param.f_set_data(&view(&values)?)?;
            p.exp_avg = view(&exp_avg)?;
            p.exp_avg_sq = view(&exp_avg_sq)?;
            p.group = group;
            p.offset = offset;
            offset += n;
            if p.decay {
                decay_len = offset;
            }
        }
        groups.push(FlatGroup {
            partition,
            lr_scale: f64::from_bits(lr_scale),
            members: idx,
            decay_len,
            scratch: Tensor::f_empty([total.min(CHUNK)], (kind, device))?,
            values,
            grads,
            exp_avg,
            exp_avg_sq,
        });
    }
    Ok(groups)
}

impl FlatGroup {
    /// The AdamW update at step `t` (the same for all) of the elements in `ranges` (sorted,
    /// disjoint): in one fused pass when `fused` and the group is fp32 on the CPU, else chunk
    /// by chunk with libtorch ops.
    fn update(
        &mut self,
        config: &AdamWConfig,
        lr: f64,
        t: i32,
        ranges: &[(i64, i64)],
        fused: bool,
    ) -> Result<()> {
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = *config;
        let bias_correction1 = 1.0 - beta1.powi(t);
        let bias_correction2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        // p + m / D with D = -(bc1 / lr) * (sqrt(v) / sqrt(bc2) + eps) is the Adam step
        // p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), in one addcdiv.
        let d_scale = -bias_correction1 / (lr * bias_correction2_sqrt);
        let d_shift = -eps * bias_correction1 / lr;
        if fused && fused::applies(&self.values) {
            // The scalars as the ATen ops below receive them: fp32 on an fp32 tensor.
            let coefficients = fused::Coefficients {
                decay: if weight_decay == 0.0 {
                    1.0
                } else {
                    (1.0 - lr * weight_decay) as f32
                },
                w1: (1.0 - beta1) as f32,
                w2: (1.0 - beta2) as f32,
                d_scale: d_scale as f32,
                d_shift: d_shift as f32,
                step: lr > 0.0,
            };
            let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1);
            let buffers = [
                &mut self.values,
                &mut self.grads,
                &mut self.exp_avg,
                &mut self.exp_avg_sq,
            ];
            return fused::update(buffers, self.decay_len, ranges, &coefficients, threads);
        }
        for &(begin, end) in ranges {
            self.update_range(
                begin,
                end,
                [beta1, beta2, weight_decay, lr, d_scale, d_shift],
            )?;
        }
        Ok(())
    }

    /// [`FlatGroup::update`] of the elements `begin..end`, given `[beta1, beta2,
    /// weight_decay, lr, d_scale, d_shift]`.
    fn update_range(&mut self, begin: i64, end: i64, scalars: [f64; 6]) -> Result<()> {
        let [beta1, beta2, weight_decay, lr, d_scale, d_shift] = scalars;
        let mut start = begin;
        while start < end {
            let n = CHUNK.min(end - start);
            let chunk = |t: &Tensor| t.f_narrow(0, start, n);
            let mut p = chunk(&self.values)?;
            let g = chunk(&self.grads)?;
            let mut m = chunk(&self.exp_avg)?;
            let mut v = chunk(&self.exp_avg_sq)?;
            let mut s = self.scratch.f_narrow(0, 0, n)?;
            let decayed = (self.decay_len - start).clamp(0, n);
            if weight_decay != 0.0 && decayed > 0 {
                let _ = p
                    .f_narrow(0, 0, decayed)?
                    .f_mul_scalar_(1.0 - lr * weight_decay)?;
            }
            let _ = m.f_lerp_(&g, 1.0 - beta1)?;
            let _ = g.f_mul_out(&s, &g)?;
            let _ = v.f_lerp_(&s, 1.0 - beta2)?;
            if lr > 0.0 {
                let _ = v.f_sqrt_out(&s)?;
                let _ = s.f_mul_scalar_(d_scale)?;
                let _ = s.f_add_scalar_(d_shift)?;
                let _ = p.f_addcdiv_(&m, &s)?;
            }
            start += n;
        }
        Ok(())
    }
}

fn step_tensor(step: u64) -> Tensor {
    Tensor::from(i64::try_from(step).unwrap_or(i64::MAX))
}
