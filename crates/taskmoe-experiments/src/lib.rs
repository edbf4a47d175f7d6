//! The three experiments of task-aware sparse MoE (arXiv 2204.07689), each one command with
//! an honest answer and error bars:
//!
//! 1. [`low_resource`]: do low-resource tasks gain from related high-resource tasks in a
//!    mixture that also holds unrelated ones? Single-task models, dense multi-task, the
//!    task-conditioned dense control, token-MoE and each task-MoE router (each multi-task arm at
//!    its own mixture temperature), at several low-resource sizes and (synthetic data) several
//!    values of the relatedness knob, whose interaction with the gain is the secondary.
//! 2. [`unseen`]: do held-out tasks learn from few examples faster when they reuse the routing
//!    of a related seen task? Dense and task-MoE start from the same family source; task-MoE
//!    also with fresh routing, with an unrelated family's routing (the negative control), with
//!    the source chosen by few-shot loss, with frozen experts; and a model trained from
//!    scratch, each at its own learning rate.
//! 3. [`unrelated`]: do the original tasks keep their accuracy when unrelated or conflicting
//!    tasks are trained afterwards without rehearsal (forgetting, the primary), or jointly
//!    with matched exposure? Dense, task-conditioned dense and task-MoE, with routing heatmaps
//!    (families outlined) before and after.
//!
//! Every run is tested at its best validation checkpoint (`evals_per_run`), and the forest
//! plot of the verdicts shows every arm against its claim's baseline.
//!
//! Every arm is an ordinary `taskmoe train` run (a [`Runner`] starts them as processes, a few
//! at a time, and reuses finished ones), so every number in a report can be reproduced from
//! its run folder. Reports ([`Report`]) give mean ± standard deviation over seeds and paired
//! comparisons with 95% intervals; each declares one primary contrast, and the three are
//! decided together ([`verdicts`]: Holm's correction, TOST for "no effect",
//! [`stats::Verdict`]) under the confirmatory protocol `PROTOCOL.md`, whose hash every report
//! records ([`preregistration`]). Hyperparameters an arm depends on (mixture temperature, fine-tuning
//! learning rate) are chosen on validation scores of separate tuning seeds, never on test.
//!
//! The experiments layer sits on top: it depends on the training, evaluation, model and data
//! crates, and nothing depends on it but the `taskmoe` command.
//!
//! The statistics are usable on any per-seed scores, for example a paired comparison of two
//! arms and how many seeds a smaller effect would need:
//!
//! ```
//! use taskmoe_experiments::stats::{paired, seeds_needed};
//!
//! // Test accuracy of two arms on the same five seeds.
//! let task_moe = [0.81, 0.84, 0.79, 0.83, 0.82];
//! let dense = [0.78, 0.80, 0.78, 0.80, 0.79];
//! let diff = paired(&task_moe, &dense);
//! assert!((diff.diff.mean - 0.028).abs() < 1e-9);
//! assert!(diff.low > 0.0, "the 95% interval excludes 0: {}", diff.show());
//! // Seeds for 80% power to detect a 0.01 difference with that spread, at alpha = 0.05.
//! let n = seeds_needed(0.01, diff.diff.std, 0.05);
//! assert!(n > 5, "{n}");
//! ```
//!
//! A whole experiment runs from its settings ([`ExperimentConfig::load`], a [`Profile`] with a
//! file and `--set`s over it) through [`Experiment`]; `taskmoe experiment` is that call.

#![warn(missing_docs)]

pub mod compare;
pub mod config;
mod context;
mod error;
mod experiment;
pub mod families;
pub mod identical;
pub mod low_resource;
pub mod plot;
pub mod preregistration;
mod protocol;
pub mod report;
pub mod results;
pub mod runner;
pub mod search;
pub mod stats;
pub mod transfer;
pub mod unrelated;
pub mod unseen;
pub mod verdicts;

pub use config::{Arm, ExperimentConfig, Loaded, Profile};
pub use context::ExperimentContext;
pub use error::{Context, ExperimentError, Result};
pub use experiment::Experiment;
pub use report::Report;
pub use runner::{Job, Runner};
