//! Expert banks, the sparse Mixture-of-Experts feed-forward layer, and its dense baseline.
//!
//! A MoE layer with a per-task router (4 experts, top-2) over a batch that mixes 3 tasks:
//!
//! ```rust
//! use taskmoe_experts::{MoeConfig, MoeLayer};
//! use taskmoe_router::{RouterConfig, RouterKind};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! # fn main() -> taskmoe_experts::Result<()> {
//! let router = RouterConfig {
//!     kind: RouterKind::PerTask,
//!     num_experts: 4,
//!     k: 2,
//!     ..RouterConfig::default()
//! };
//! let cfg = MoeConfig { router, d_ff: 32, ..MoeConfig::default() };
//! let vs = nn::VarStore::new(Device::Cpu);
//! let moe = MoeLayer::new(vs.root() / "moe", &cfg, 16, 3)?; // 16-wide tokens, 3 tasks
//! let x = Tensor::randn([10, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
//! let tasks = Tensor::arange(10, (Kind::Int64, Device::Cpu)).remainder(3); // 0, 1, 2, 0, ...
//! let out = moe.forward(&x, &tasks, true)?; // training mode: capacity_factor_train, noise
//! assert_eq!(out.y.size(), [10, 16]);
//! // The aux losses join the task loss with the router's coefficients.
//! let loss = out.y.square().mean(Kind::Float) + out.aux.weighted(&cfg.router);
//! loss.backward();
//! assert_eq!(x.grad().size(), [10, 16]);
//! let load: f64 = out.stats.routing.load.iter().sum(); // each expert's share of the slots
//! assert!((load - 1.0).abs() < 1e-9);
//! # Ok(())
//! # }
//! ```
//!
//! - [`DenseFfn`]: `W2 gelu(W1 x + b1) + b2`, HF BERT parameter names;
//! - [`ExpertBank`]: `E` such FFNs as stacked weights, independently initialised or upcycled
//!   from a dense FFN plus noise;
//! - [`LoraExpertBank`]: `E` low-rank (LoRA) updates of one frozen FFN, the experts of
//!   `expert_kind = "lora"` (MoLoRA / MixLoRA), upcycled by taking a pretrained FFN as the base;
//! - [`Experts`]: either bank, what a [`MoeLayer`] runs;
//! - [`MoeLayer`]: router (any `taskmoe-router` gating function) + sort-based dispatch +
//!   expert bank + deterministic combine, with optional always-on shared experts; returns its
//!   output, aux losses and routing statistics ([`MoeOutput`]);
//! - [`FeedForward`]: one interface over both, for model assembly;
//! - [`ExpertExchange`]: what a [`MoeLayer`] needs to split its experts over ranks (expert
//!   parallelism; `taskmoe-train` provides it over c10d).
//!
//! A MoE layer with `k` active experts of width `d_ff` costs about what a dense FFN of width
//! `k * d_ff` costs (plus routing); `benches/moe_layer.rs` measures it.

#![warn(missing_docs)]

mod bank;
mod config;
mod dense;
mod error;
mod expert_parallel;
mod experts;
mod ffn;
pub mod init;
mod lora;
mod moe;
mod upcycle;

pub use bank::ExpertBank;
/// The source of this crate's configuration types: `taskmoe config show` prints each key's
/// documentation from it beside the value.
pub const CONFIG_SOURCE: &str = include_str!("config.rs");
pub use config::{ExpertKind, MoeConfig};
pub use dense::DenseFfn;
pub use error::{ExpertsError, Result};
pub use expert_parallel::ExpertExchange;
pub use experts::Experts;
pub use ffn::{FeedForward, FfnOutput};
pub use lora::LoraExpertBank;
pub use moe::{LayerStats, MoeLayer, MoeOutput, TaskSubnetwork};
pub use upcycle::Upcycling;
