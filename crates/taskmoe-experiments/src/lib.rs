//! The three experiments of task-aware sparse MoE (arXiv 2204.07689), each one command with
//! an honest answer and error bars:
//!
//! 1. [`low_resource`]: do low-resource tasks gain from related high-resource tasks in the
//!    mixture? Single-task, dense multi-task, token-MoE and each task-MoE router, at several
//!    low-resource sizes and (synthetic data) several values of the relatedness knob.
//! 2. [`unseen`]: do held-out tasks learn from few examples faster when they reuse the routing
//!    of the most related seen task (chosen by measured few-shot loss)? k-shot learning curves
//!    from the dense model, task-MoE with transferred routing, task-MoE with fresh routing, and
//!    a model trained from scratch.
//! 3. [`unrelated`]: do the original tasks keep their accuracy when unrelated or conflicting
//!    tasks are added, jointly from the start or sequentially? Dense against task-MoE, with
//!    routing heatmaps before and after.
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
