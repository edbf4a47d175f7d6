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

/// Token ids, their attention mask and each row's task: a batch the tests build by hand.
struct Batch {
    ids: tch::Tensor,
    mask: tch::Tensor,
    tasks: tch::Tensor,
}

impl Batch {
    /// The model's input: these tensors, no token types.
    fn input(&self) -> taskmoe_model::ModelInput<'_> {
        taskmoe_model::ModelInput {
            input_ids: &self.ids,
            attention_mask: &self.mask,
            token_type_ids: None,
            task_ids: &self.tasks,
        }
    }
}

/// A model of `cfg` with `heads`, its parameters drawn after seeding libtorch with `seed`,
/// holding the global generator's lock meanwhile.
fn seeded_model(
    cfg: &taskmoe_model::ModelConfig,
    heads: &[taskmoe_model::HeadSpec],
    seed: i64,
) -> (tch::nn::VarStore, taskmoe_model::MultiTaskModel) {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(seed);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let model = taskmoe_model::MultiTaskModel::new(&vs.root(), cfg, heads).unwrap();
    (vs, model)
}
