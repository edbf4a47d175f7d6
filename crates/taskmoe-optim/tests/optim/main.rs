//! The optimizer crate's integration tests as one binary (`cargo test -p taskmoe-optim --test
//! optim`). None of them depends on what libtorch's global generator draws (one builds a linear
//! layer and overwrites nothing it asserts on), so they share the binary freely.

mod adamw;
mod clip;
mod fused;
mod schedule;
mod unused_experts;
