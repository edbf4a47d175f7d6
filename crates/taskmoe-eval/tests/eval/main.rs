//! The integration tests of `taskmoe-eval`, one test binary (one link of libtorch) with a
//! module per topic.
//!
//! Shared process state: models are built and trained by `taskmoe-train`'s `Trainer`, which
//! holds `taskmoe_device::lock_global_rng()` around initialisation and every step, and sets
//! the run's `runtime.threads`: every run configuration here says 1, the [`THREADS`] of this
//! binary. The two-rank test starts this same binary as its ranks with a filter that selects
//! exactly its worker test ([`taskmoe_dist::worker_test`]); the workers print a marker the launcher requires.

mod affinity;
mod bag_of_words;
mod bucketing;
mod learning;
mod metrics;

/// `configs/toy-families.toml`: two families (lexicon, order) of two tasks each; per-task
/// gates over 4 experts in both blocks, shared gate start, linear heads.
const TOY_FAMILIES: &str = include_str!("../../../../configs/toy-families.toml");

/// libtorch's intra-op thread count in this binary, the one value every test that cares uses.
const THREADS: i32 = 1;

/// Sets this thread's libtorch thread count to [`THREADS`] (libtorch keeps the setting per
/// thread once a thread has run an op, so each test sets it itself).
fn threads() {
    tch::set_num_threads(THREADS);
}

/// The run configuration `toml` with the overrides `sets`, its outputs in a fresh scratch
/// folder named after `name` (returned, for the caller to remove), and its data.
fn scratch_run(
    name: &str,
    toml: &str,
    sets: &[&str],
) -> (
    std::path::PathBuf,
    taskmoe_train::RunConfig,
    taskmoe_train::RunData,
) {
    let dir = std::env::temp_dir().join(format!("taskmoe-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.toml");
    std::fs::write(&file, toml).unwrap();
    let mut overrides = vec![format!("output.dir={}", dir.display())];
    overrides.extend(sets.iter().map(|s| s.to_string()));
    let cfg = taskmoe_train::RunConfig::load(Some(&file), &overrides).unwrap();
    let data = taskmoe_train::RunData::load(&cfg).unwrap();
    (dir, cfg, data)
}
