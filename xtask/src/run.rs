//! `cargo xtask train` / `eval` / `predict` / `verify` / `export` / `inspect` / `experiment`:
//! build the `taskmoe` binary (release) against the provisioned libtorch and run it with the
//! given arguments.

use std::path::PathBuf;
use std::process::Command;

use crate::libtorch;
use crate::project::{cargo, root, run_cmd};
use crate::Result;

/// Provisions libtorch, builds the release `taskmoe` binary and returns libtorch and the
/// target folder (`$CARGO_TARGET_DIR` or `target/`) that holds `release/taskmoe`.
pub fn build_taskmoe() -> Result<(libtorch::Libtorch, PathBuf)> {
    let lt = libtorch::ensure()?;
    let mut build = cargo();
    build.args(["build", "--release", "--package", "taskmoe-cli"]);
    lt.apply_env(&mut build);
    run_cmd(&mut build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok((lt, target))
}

/// Builds `taskmoe` and runs `taskmoe <subcommand> <args>`.
pub fn taskmoe(subcommand: &str, args: &[String]) -> Result<()> {
    let (lt, target) = build_taskmoe()?;
    let mut cmd = Command::new(target.join("release").join("taskmoe"));
    cmd.arg(subcommand).args(args).current_dir(root());
    lt.apply_env(&mut cmd);
    run_cmd(&mut cmd)
}
