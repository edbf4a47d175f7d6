//! Gating functions for sparse Mixture-of-Experts layers: task-agnostic and task-aware.
//!
//! A `per-task` router (one gate per task over shared experts) routing a batch that mixes
//! tasks:
//!
//! ```rust
//! use taskmoe_router::{AuxLosses, Router, RouterConfig, RouterKind};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! # fn main() -> taskmoe_router::Result<()> {
//! let cfg = RouterConfig {
//!     kind: RouterKind::PerTask,
//!     num_experts: 4,
//!     k: 2,
//!     ..RouterConfig::default()
//! };
//! let vs = nn::VarStore::new(Device::Cpu);
//! let router = Router::new(vs.root() / "router", &cfg, 16, 3)?; // 16-wide tokens, 3 tasks
//! let x = Tensor::randn([5, 16], (Kind::Float, Device::Cpu)); // 5 token states
//! let tasks = Tensor::from_slice(&[0i64, 2, 1, 0, 2]); // each token's own task
//! let out = router.forward(&x, &tasks, false)?; // evaluation: no noise
//! assert_eq!(out.routed.experts.size(), [5, 2]); // 2 experts per token...
//! let total = out.routed.weights.sum_dim_intlist(-1, false, Kind::Float);
//! assert!(total.allclose(&total.ones_like(), 1e-6, 1e-6, false)); // ...weighted to sum to 1
//! let aux = AuxLosses::compute(&out, &tasks, 3)?;
//! let _add_to_the_task_loss = aux.weighted(&cfg);
//! # Ok(())
//! # }
//! ```
//!
//! A [`Router`] turns token representations and their task ids into the `k` experts of each
//! token and their combine weights, in fp32. Eight gating functions share one
//! [`RouterConfig`] ([`RouterKind`]):
//!
//! - `token`: task-agnostic top-k (Switch, [Fedus et al. 2021](https://arxiv.org/abs/2101.03961);
//!   GShard, [Lepikhin et al. 2020](https://arxiv.org/abs/2006.16668));
//! - `task-concat`: the token concatenated with a learned task embedding;
//! - `per-task`: one gate matrix per task over shared experts (task-MoE,
//!   [Kudugunta et al. 2021](https://arxiv.org/abs/2110.03742));
//! - `task-level`: one decision per task from the task embedding alone, so a task's
//!   sub-network can be extracted;
//! - `mmoe`: one dense softmax gate per task over every expert (MMoE,
//!   [Ma et al. 2018](https://doi.org/10.1145/3219819.3220007));
//! - `cgc`: per-task gates over each task's own experts plus shared ones (PLE's Customized
//!   Gate Control, [Tang et al. 2020](https://doi.org/10.1145/3383313.3412236));
//! - `dselect-k`: a static per-task gate of `k` differentiable binary selectors
//!   ([Hazimeh et al. 2021](https://arxiv.org/abs/2106.03760));
//! - `expert-choice`: experts choose their tokens, task by task
//!   ([Zhou et al. 2022](https://arxiv.org/abs/2202.09368)).
//!
//! Batches may mix tasks: every token carries its own task id. [`Router::init_task_from`]
//! gives a new task the routing of related ones (copy or weighted mix), which the unseen-task
//! experiment relies on. [`AuxLosses`] computes the load-balance, z- and mutual-information
//! losses of a decision. Built on `taskmoe-kernels`.

#![warn(missing_docs)]

mod aux;
mod config;
mod dselect;
mod error;
mod expert_choice;
mod router;
mod task_state;

pub use aux::AuxLosses;
/// The source of this crate's configuration types: `taskmoe config show` prints each key's
/// documentation from it beside the value.
pub const CONFIG_SOURCE: &str = include_str!("config.rs");
pub use config::{BalanceOver, GateStart, RouterConfig, RouterKind};
pub use error::{Result, RouterError};
pub use expert_choice::ExpertChoice;
pub use router::{Router, RouterOutput};
