//! Optimisation for taskmoe, usable on any tch model: [`AdamW`] over named tensors with state
//! that saves and loads exactly (tch's optimizers cannot export their moments), optional
//! parameter partitions (expert-parallel shards), global-norm gradient clipping as
//! `torch.nn.utils.clip_grad_norm_`, and learning-rate [`ScheduleConfig`]s that are pure
//! functions of the step, so a resumed run gets the same rates.
//!
//! ```
//! use taskmoe_optim::{AdamW, AdamWConfig, Decay, ScheduleConfig};
//! use tch::{nn, nn::Module, Device, Kind, Tensor};
//!
//! # fn main() -> taskmoe_optim::Result<()> {
//! // A user's own model: one linear layer fitted to y = 2x.
//! let vs = nn::VarStore::new(Device::Cpu);
//! let layer = nn::linear(vs.root() / "proj", 1, 1, Default::default());
//! let mut opt = AdamW::new(vs.variables().into_iter().collect(), AdamWConfig::default())?;
//! let schedule = ScheduleConfig {
//!     peak_lr: 0.1,
//!     warmup_steps: 5,
//!     total_steps: 100,
//!     decay: Decay::Cosine,
//!     min_lr_ratio: 0.1,
//! };
//! let x = Tensor::arange(8, (Kind::Float, Device::Cpu)).view([8, 1]) / 8.0;
//! let y = &x * 2.0;
//! let first = (layer.forward(&x) - &y).square().mean(Kind::Float).double_value(&[]);
//! for step in 0..100 {
//!     let loss = (layer.forward(&x) - &y).square().mean(Kind::Float);
//!     loss.backward();
//!     let norm = opt.clip_grad_norm(1.0)?; // the norm before clipping
//!     assert!(norm.is_finite());
//!     opt.step(schedule.lr(step))?;
//!     opt.zero_grad();
//! }
//! let last = (layer.forward(&x) - &y).square().mean(Kind::Float).double_value(&[]);
//! assert!(last < first / 10.0, "{first} -> {last}");
//!
//! // The state (moments, step counts) round trips through safetensors.
//! let dir = std::env::temp_dir().join(format!("taskmoe-optim-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! opt.save(dir.join("optimizer.safetensors"))?;
//! opt.load(dir.join("optimizer.safetensors"))?;
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod adamw;
mod clip;
mod error;
mod fused;
mod schedule;

pub use adamw::{
    default_decays, is_expert_param, is_router_param, AdamW, AdamWConfig, UnusedExperts,
    EXP_AVG_PREFIX, EXP_AVG_SQ_PREFIX, NUM_STEPS, STEP_PREFIX,
};
pub use clip::{clip_grad_norm, grad_norm};
pub use error::{OptimError, Result};
pub use schedule::{Decay, ScheduleConfig};

/// The source of the schedule's configuration type: `taskmoe config show` prints each key's
/// documentation from it beside the value.
pub const CONFIG_SOURCE: &str = include_str!("schedule.rs");
