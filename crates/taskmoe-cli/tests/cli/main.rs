//! The `taskmoe` command's integration tests as one binary (`cargo test -p taskmoe-cli --test
//! cli`): each test runs the built binary (`CARGO_BIN_EXE_taskmoe`) in its own scratch
//! folder, so they share nothing but the machine. The catalogue is docs/testing.md.

mod commands;
mod common;
mod data_check;
mod experiments;
mod pydocs;
mod realtext;
mod run_folder;
mod torchrun;
mod using;
mod wordnet;
