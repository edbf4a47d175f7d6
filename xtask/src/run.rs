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
    if let Some(commit) = git_commit() {
        // Read by `option_env!` into the model cards `taskmoe export` writes.
        build.env("TASKMOE_GIT_COMMIT", commit);
    }
    run_cmd(&mut build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok((lt, target))
}

/// The commit the workspace is at (`git rev-parse --short=12 HEAD`, `-dirty` when tracked
/// files differ from it), or `None` outside a git checkout or without git.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Some(if dirty { format!("{head}-dirty") } else { head })
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
