//! The integration tests of `taskmoe-router`, one test binary with a module per topic. Every
//! test here seeds libtorch's global generator or draws from it, so each holds
//! `taskmoe_device::lock_global_rng()` while it does.

mod families;
mod gate_start;
mod per_task;
mod precision;
