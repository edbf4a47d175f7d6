//! `cargo xtask train` / `eval` / `predict` / `verify` / `export` / `inspect` / `experiment` /
//! `config` / `data` / `compare` / `search` / `families`: build the `taskmoe` binary (release) against the
//! provisioned libtorch and run it with the given arguments.

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

/// Builds `taskmoe` and runs `taskmoe <subcommand> <args>`; `train --nproc N` runs `N` ranks
/// of a local data-parallel job instead (see `launch.rs`).
pub fn taskmoe(subcommand: &str, args: &[String]) -> Result<()> {
    let (nproc, args) = if subcommand == "train" {
        crate::launch::take_nproc(args)?
    } else {
        (None, args.to_vec())
    };
    let (lt, target) = build_taskmoe()?;
    let binary = target.join("release").join("taskmoe");
    if let Some(n) = nproc {
        let mut full = vec![subcommand.to_string()];
        full.extend(args);
        return crate::launch::run(n, &binary, &full, &root(), |cmd| lt.apply_env(cmd));
    }
    let mut cmd = Command::new(binary);
    cmd.arg(subcommand).args(args).current_dir(root());
    lt.apply_env(&mut cmd);
    run_cmd(&mut cmd)
}
