//! Expert banks, the sparse Mixture-of-Experts feed-forward layer, and its dense baseline.
//!
//! - [`DenseFfn`]: `W2 gelu(W1 x + b1) + b2`, HF BERT parameter names;
//! - [`ExpertBank`]: `E` such FFNs as stacked weights, independently initialised or upcycled
//!   from a dense FFN plus noise;
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
mod ffn;
pub mod init;
mod moe;

pub use bank::ExpertBank;
/// The source of this crate's configuration types: `taskmoe config show` prints each key's
/// documentation from it beside the value.
pub const CONFIG_SOURCE: &str = include_str!("config.rs");
pub use config::MoeConfig;
pub use dense::DenseFfn;
pub use error::{ExpertsError, Result};
pub use expert_parallel::ExpertExchange;
pub use ffn::{FeedForward, FfnOutput};
pub use moe::{LayerStats, MoeLayer, MoeOutput, TaskSubnetwork};
