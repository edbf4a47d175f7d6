//! `cargo xtask test`: the one command CI and README run. Provisions libtorch and the MiniLM
//! test model, then checks formatting, lints (warnings are errors, missing docs included) and
//! runs every test.

use crate::libtorch;
use crate::models;
use crate::project::{cargo, run_cmd};
use crate::Result;

/// Runs the checks in order and stops at the first failure; `args` go to `cargo test`. With
/// `--repeat N` it instead runs every test binary N times and reports flaky tests
/// ([`crate::repeat`]).
pub fn run(args: &[String]) -> Result<()> {
    let lt = libtorch::ensure()?;
    if args.iter().any(|a| a == "--repeat") {
        let (repeat, only, test_args) = crate::repeat::parse(args)?;
        let minilm = models::ensure("minilm")?;
        return crate::repeat::run(
            &lt,
            &[("TASKMOE_MINILM_DIR", minilm)],
            repeat,
            &only,
            &test_args,
        );
    }

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

    // The MiniLM import golden test needs the real model.
    let minilm = models::ensure("minilm")?;
    let mut test = cargo();
    test.args(["test", "--workspace"]).args(args);
    test.env("TASKMOE_MINILM_DIR", &minilm);
    lt.apply_env(&mut test);
    run_cmd(&mut test)
}
