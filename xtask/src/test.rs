//! `cargo xtask test`: the one command CI and README run. Provisions libtorch, then checks
//! formatting, lints (warnings are errors, missing docs included) and runs every test.

use crate::libtorch;
use crate::project::{cargo, run_cmd};
use crate::Result;

/// Runs the checks in order and stops at the first failure; `args` go to `cargo test`.
pub fn run(args: &[String]) -> Result<()> {
    let lt = libtorch::ensure()?;

    run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    lt.apply_env(&mut clippy);
    run_cmd(&mut clippy)?;

    let mut test = cargo();
    test.args(["test", "--workspace"]).args(args);
    lt.apply_env(&mut test);
    run_cmd(&mut test)
}
