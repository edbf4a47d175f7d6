//! The integration tests of `taskmoe-model`, one test binary (one link of libtorch) with a
//! module per topic. Fixtures stay in `tests/golden/` (found through `CARGO_MANIFEST_DIR`).
//!
//! Shared process state: every test that seeds libtorch's global generator or draws from it
//! (model construction, `randn`, dropout, router noise, upcycling noise) holds
//! `taskmoe_device::lock_global_rng()` while it does; tests whose results are pinned to a
//! thread count call [`threads`] first.

mod export;
mod frozen;
mod heads;
mod minilm;
mod model;
mod paired_init;
mod precision;
mod tower;
mod transfer;

/// libtorch's intra-op thread count in this binary, the one value every test that cares uses
/// (the golden exports, the MiniLM comparison with transformers and the convergence checks).
const THREADS: i32 = 1;

/// Sets this thread's libtorch thread count to [`THREADS`] (libtorch keeps the setting per
/// thread once a thread has run an op, so each test sets it itself).
fn threads() {
    tch::set_num_threads(THREADS);
}
