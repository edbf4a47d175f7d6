//! The three experiments of task-aware sparse MoE (arXiv 2204.07689), each one command with
//! an honest answer and error bars:
//!
//! 1. [`low_resource`]: do low-resource tasks gain from related high-resource tasks in a
//!    mixture of related tasks only? Early-stopped single-task models, dense multi-task,
//!    token-MoE and each task-MoE router (each multi-task arm at its own mixture temperature),
//!    at several low-resource sizes and (synthetic data) several values of the relatedness knob.
//! 2. [`unseen`]: do held-out tasks learn from few examples faster when they reuse the routing
//!    of a related seen task? k-shot learning curves from the dense model, task-MoE with the
//!    routing of the task chosen by few-shot loss or by declared family, with fresh routing,
//!    with frozen experts, and a model trained from scratch, each at its own learning rate.
//! 3. [`unrelated`]: do the original tasks keep their accuracy when unrelated or conflicting
//!    tasks are added, jointly with matched exposure or sequentially without rehearsal? Dense
//!    against task-MoE, with routing heatmaps before and after.
//!
//! Every arm is an ordinary `taskmoe train` run (a [`Runner`] starts them as processes, a few
//! at a time, and reuses finished ones), so every number in a report can be reproduced from
//! its run folder. Reports ([`Report`]) give mean ± standard deviation over seeds and paired
//! comparisons with 95% intervals; each declares one primary contrast, and the three are
//! decided together ([`verdicts`]: Holm's correction, TOST for "no effect",
//! [`stats::Verdict`]). Hyperparameters an arm depends on (mixture temperature, fine-tuning
//! learning rate) are chosen on validation scores of separate tuning seeds, never on test.
//!
//! The experiments layer sits on top: it depends on the training, evaluation, model and data
//! crates, and nothing depends on it but the `taskmoe` command.

#![warn(missing_docs)]

pub mod config;
mod context;
pub mod low_resource;
pub mod plot;
pub mod report;
pub mod results;
pub mod runner;
pub mod stats;
pub mod transfer;
pub mod unrelated;
pub mod unseen;
pub mod verdicts;

pub use config::{Arm, ExperimentConfig, Loaded, Profile};
pub use context::{Experiment, ExperimentContext};
pub use report::Report;
pub use runner::{Job, Runner};
