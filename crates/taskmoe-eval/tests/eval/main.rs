//! The integration tests of `taskmoe-eval`, one test binary (one link of libtorch) with a
//! module per topic.
//!
//! Shared process state: models are built and trained by `taskmoe-train`'s `Trainer`, which
//! holds `taskmoe_device::lock_global_rng()` around initialisation and every step, and sets
//! the run's `runtime.threads`: every run configuration here says 1, the [`THREADS`] of this
//! binary. The two-rank test starts this same binary as its ranks with a filter that selects
//! exactly its worker test ([`test_name`]); the workers print a marker the launcher requires.

mod affinity;
mod bag_of_words;
mod bucketing;
mod learning;
mod metrics;

/// libtorch's intra-op thread count in this binary, the one value every test that cares uses.
const THREADS: i32 = 1;

/// Sets this thread's libtorch thread count to [`THREADS`] (libtorch keeps the setting per
/// thread once a thread has run an op, so each test sets it itself).
fn threads() {
    tch::set_num_threads(THREADS);
}

/// The harness's name of test `name` in the module whose `module_path!()` is `module`: the
/// path without this binary's crate name (`bucketing::sharded_evaluation_rank`), as `--exact`
/// wants it.
fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_binary, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    }
}
