//! Gating functions for sparse Mixture-of-Experts layers: task-agnostic and task-aware.
//!
//! A [`Router`] turns token representations and their task ids into the `k` experts of each
//! token and their combine weights, in fp32. Four gating functions share one
//! [`RouterConfig`] ([`RouterKind`]):
//!
//! - `token`: task-agnostic top-k (Switch, [Fedus et al. 2021](https://arxiv.org/abs/2101.03961);
//!   GShard, [Lepikhin et al. 2020](https://arxiv.org/abs/2006.16668));
//! - `task-concat`: the token concatenated with a learned task embedding;
//! - `per-task`: one gate matrix per task over shared experts (task-MoE,
//!   [Kudugunta et al. 2021](https://arxiv.org/abs/2110.03742));
//! - `task-level`: one decision per task from the task embedding alone, so a task's
//!   sub-network can be extracted.
//!
//! Batches may mix tasks: every token carries its own task id. [`Router::init_task_from`]
//! gives a new task the routing of related ones (copy or weighted mix), which the unseen-task
//! experiment relies on. [`AuxLosses`] computes the load-balance, z- and mutual-information
//! losses of a decision. Built on `taskmoe-kernels`.

#![warn(missing_docs)]

mod aux;
mod config;
mod error;
mod router;

pub use aux::AuxLosses;
/// The source of this crate's configuration types: `taskmoe config show` prints each key's
/// documentation from it beside the value.
pub const CONFIG_SOURCE: &str = include_str!("config.rs");
pub use config::{RouterConfig, RouterKind};
pub use error::{Result, RouterError};
pub use router::{Router, RouterOutput};
