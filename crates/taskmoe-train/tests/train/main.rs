//! taskmoe-train's integration tests as one binary (`cargo test -p taskmoe-train --test
//! train`): one link of libtorch instead of one per file. The catalogue is docs/testing.md.
//!
//! Tests share the process, so none depends on how process-global state interleaves: the
//! trainer holds `taskmoe_device::lock_global_rng()` while it seeds and draws, and so does
//! every test here that draws from libtorch's generator; the trainers here run with
//! `runtime.threads = 1`. The data- and expert-parallel tests start this binary again as ranks,
//! each selecting its worker by its full test name ([`taskmoe_dist::worker_test`]).

mod checkpoint;
mod config_layers;
mod data_parallel;
mod expert_parallel;
mod frozen;
mod lora;
mod router_gradient;
mod state;
mod tensorboard;
mod trainer;
mod transfer;

/// An evaluation that records nothing and scores nothing, for runs whose evaluations a test
/// does not look at.
pub fn no_eval(
    _: &taskmoe_model::MultiTaskModel,
    _: u64,
) -> taskmoe_train::Result<taskmoe_train::EvalPoint> {
    Ok(taskmoe_train::EvalPoint {
        record: serde_json::json!({}),
        score: None,
    })
}

/// A run of `cfg` stopped after step 3 (its trainer dropped, as a killed process's would be)
/// and resumed to its end: the resumed trainer, checked to have started at step 3.
pub fn stopped_at_3_and_resumed(
    cfg: &taskmoe_train::RunConfig,
    data: &taskmoe_train::RunData,
) -> taskmoe_train::Trainer {
    use taskmoe_train::{Silent, Trainer};
    let mut no_eval = no_eval;
    let mut first = Trainer::new(cfg, data, false).unwrap();
    first.train(&mut no_eval, &mut Silent, Some(3)).unwrap();
    drop(first);
    let mut resumed = Trainer::new(cfg, data, true).unwrap();
    assert_eq!(resumed.state().step, 3);
    resumed.train(&mut no_eval, &mut Silent, None).unwrap();
    resumed
}
