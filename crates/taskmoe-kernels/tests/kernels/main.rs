//! The integration tests of `taskmoe-kernels`, one test binary (one link of libtorch) with a
//! module per topic. Tests that seed libtorch's global generator and depend on what it draws
//! hold `taskmoe_device::lock_global_rng()` while they draw, and so does every test here that
//! draws from it at all; the others use `common::normal`, which needs no global state.

mod common;
mod device_paths;
mod dropout;
mod gradients;
mod grouped_mm;
mod properties;
mod units;
mod weight_grads;
