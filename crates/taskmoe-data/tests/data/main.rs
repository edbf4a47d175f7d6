//! The integration tests of taskmoe-data, one module per area, linked as one test binary
//! (`cargo test -p taskmoe-data --test data`): libtorch is linked once, not once per file.
//!
//! The modules share a process, so none may change process-global state another relies on:
//! no test sets environment variables, intra-op threads or libtorch's global RNG (the crate's
//! randomness is counter-based, [`taskmoe_data::rng`]), and every test that writes files uses a
//! temporary folder of its own name. Fixtures live in `tests/fixtures/`.

mod check;
mod mixture;
mod pydocs;
mod pydocs_scan;
mod readers;
mod sampler;
mod synthetic;
mod synthetic_v2;
mod tokenize;
mod wordnet;
