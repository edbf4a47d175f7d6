//! The integration tests of `taskmoe-experiments`, one test binary (one link of libtorch) with
//! a module per topic.

mod config;
mod identical;
