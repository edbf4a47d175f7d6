//! Routing primitives for sparse Mixture-of-Experts layers, on tch tensors.
//!
//! One MoE feed-forward step on 6 tokens, 4 experts, top-2, built from the pieces below:
//!
//! ```rust
//! use taskmoe_kernels::{combine, grouped_mm, permute, top_k, Capacity, DispatchPlan};
//! use tch::{Device, Kind, Tensor};
//!
//! # fn main() -> taskmoe_kernels::Result<()> {
//! let cpu = (Kind::Float, Device::Cpu);
//! tch::manual_seed(0);
//! let logits = Tensor::randn([6, 4], cpu); // router scores  [T, E]
//! let x = Tensor::randn([6, 8], cpu); // token states   [T, d]
//! let w = Tensor::randn([4, 8, 8], cpu); // one matrix per expert [E, d, d]
//!
//! let routed = top_k(&logits, 2, true)?; // 2 experts per token, weights summing to 1
//! // Capacity factor 1: each expert takes at most ceil(6 * 2 / 4) = 3 of the 12 slots.
//! let plan = DispatchPlan::new(&routed.experts, 4, Capacity::Factor(1.0))?;
//! assert!(plan.counts.iter().all(|&c| c <= 3));
//! assert_eq!(plan.num_rows() + plan.num_dropped(), 12);
//! let rows = permute(&x, &plan)?; // [R, d], grouped expert by expert
//! let out = grouped_mm(&rows, &w, None, &plan.layout)?; // each group times its expert
//! let y = combine(&out, &routed.weights, &plan)?; // weighted sum in token order
//! assert_eq!(y.size(), [6, 8]);
//! # Ok(())
//! # }
//! ```
//!
//! The lowest layer of taskmoe (see `docs/architecture.md`). A sparse MoE feed-forward block
//! ([Shazeer et al. 2017](https://arxiv.org/abs/1701.06538), Switch, GShard) routes every token
//! to `k` of `E` experts. This crate holds the steps of that routing, each a small function over
//! tensors, in the order they run:
//!
//! 1. [`top_k`]: router logits to fp32 probabilities, the `k` best experts per token and their
//!    combine weights;
//! 2. [`DispatchPlan`]: a sort-based plan that orders the `tokens x k` slots by expert, applies
//!    the expert capacity and its drop priority, and records where every slot went;
//! 3. [`permute`]: gathers token rows into expert order, so each expert sees one contiguous
//!    slice;
//! 4. [`grouped_mm`] (one libtorch grouped GEMM over a [`GroupLayout`]) or
//!    [`grouped_matmul`] (one matmul per expert over its slice; [`padded_bmm`] pads);
//! 5. [`combine`]: the deterministic weighted sum back into token order through a
//!    `[tokens, k, d]` buffer;
//! 6. [`aux`] losses (load balance, router z-loss, task-expert mutual information) and
//!    [`stats`] (load, drops, entropy, task x expert counts).
//!
//! [`TaskGroups`] applies the same dispatch to task ids: the `per-task` router and the task
//! heads run each row through its own task's weights with one grouped matmul.
//!
//! Beside the routing, [`dropout()`] is the training-time dropout every layer above uses: a
//! counter-based mask that is much faster on CPU than libtorch's serial Bernoulli sampler.
//!
//! No function here builds the `tokens x experts x capacity` one-hot tensors of GShard: memory
//! grows linearly with tokens. [`reference`](mod@reference) holds plain ndarray implementations of every step,
//! used by the property tests.
//!
//! Shapes use `T` tokens, `k` choices per token, `E` experts, `R` kept rows (`R <= T * k`),
//! `d` hidden size.

#![warn(missing_docs)]

pub mod aux;
mod count;
mod dispatch;
pub mod dropout;
mod error;
mod grouped;
mod layout;
mod permute;
pub mod reference;
pub mod stats;
mod task_groups;
mod topk;
mod weight_grads;

pub use count::count_ids;
pub use dispatch::{Capacity, DispatchPlan};
pub use dropout::dropout;
pub use error::{KernelError, Result};
pub use grouped::{
    grouped_linear, grouped_matmul, grouped_mm, grouped_mm_supported, padded_bmm, GemmPath,
    CPU_GROUPED_MM_MAX_ROWS_PER_GROUP,
};
pub use layout::GroupLayout;
pub use permute::{combine, permute, permute_by_slots, unpermute};
pub use task_groups::TaskGroups;
pub use topk::{top_k, top_k_biased, TopK};
pub use weight_grads::{grad_enabled, grouped_linear_with, in_place_applies, is_leaf, WeightGrads};
