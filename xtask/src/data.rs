//! `cargo xtask fetch-data <benchmark>`: the real-text benchmarks ([`crate::wordnet`],
//! [`crate::pydocs`]) and how xtask runs their builders, which live in the data crate.

use std::ffi::OsString;

use crate::libtorch;
use crate::project::{self, cargo, run_cmd};
use crate::{pydocs, wordnet, Result};

/// The usage line of `fetch-data`.
const USAGE: &str = "usage: cargo xtask fetch-data <wordnet|pydocs> [--write-registry]";

/// `cargo xtask fetch-data <wordnet|pydocs> [--write-registry]`.
pub fn fetch(args: &[String]) -> Result<()> {
    let (name, rest) = args.split_first().ok_or(USAGE)?;
    match name.as_str() {
        "wordnet" => wordnet::fetch(rest),
        "pydocs" => pydocs::fetch(rest),
        other => Err(format!(
            "unknown data set `{other}`: the known ones are wordnet and pydocs\n{USAGE}"
        )
        .into()),
    }
}

/// Runs the data crate's example `example` (a benchmark builder) with `args`.
///
/// The example is built with the whole workspace's examples (`cargo build --workspace
/// --examples`), not `cargo run -p taskmoe-data`: the workspace resolves its dependencies'
/// features once, so `cargo test --workspace` afterwards reuses the same tch build instead of
/// compiling it a second time. xtask links no library crate (it must build before libtorch
/// exists), hence a separate program.
pub fn run_builder(example: &str, args: &[OsString]) -> Result<()> {
    let lt = libtorch::ensure()?;
    let mut compile = cargo();
    compile.args(["build", "--workspace", "--examples", "--quiet"]);
    lt.apply_env(&mut compile);
    run_cmd(&mut compile)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| project::root().join("target"));
    let mut cmd = std::process::Command::new(target.join("debug").join("examples").join(example));
    cmd.args(args);
    lt.apply_env(&mut cmd);
    run_cmd(&mut cmd)
}
