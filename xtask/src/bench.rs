//! `cargo xtask bench`: runs the criterion benches against the provisioned libtorch, optimised.

use crate::libtorch;
use crate::project::{cargo, run_cmd};
use crate::Result;

/// Runs `cargo bench --workspace` with `args` passed on (criterion filters after `--`).
pub fn run(args: &[String]) -> Result<()> {
    let lt = libtorch::ensure()?;
    let mut cmd = cargo();
    cmd.args(["bench", "--workspace"]).args(args);
    lt.apply_env(&mut cmd);
    run_cmd(&mut cmd)
}
