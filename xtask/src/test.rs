//! `cargo xtask test`: the one command CI and README run. Provisions libtorch, the MiniLM
//! test model and the WordNet gloss benchmark, then checks formatting, lints (warnings are
//! errors, missing docs included) and runs every test.

use std::path::PathBuf;

use crate::libtorch;
use crate::models;
use crate::project::{cargo, run_cmd};
use crate::wordnet;
use crate::Result;

/// Runs the checks in order and stops at the first failure; `args` go to `cargo test`. With
/// `--repeat N` it instead runs every test binary N times and reports flaky tests
/// ([`crate::repeat`]).
pub fn run(args: &[String]) -> Result<()> {
    let lt = libtorch::ensure()?;
    if args.iter().any(|a| a == "--repeat") {
        let (repeat, only, test_args) = crate::repeat::parse(args)?;
        let minilm = models::ensure("minilm")?;
        let mut env = vec![("TASKMOE_MINILM_DIR", minilm)];
        env.extend(wordnet_env()?);
        return crate::repeat::run(&lt, &env, repeat, &only, &test_args);
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
    test.envs(wordnet_env()?);
    lt.apply_env(&mut test);
    run_cmd(&mut test)
}

/// `TASKMOE_WORDNET_DATA` (the data folder) and `TASKMOE_WORDNET_DICT` (the unpacked WordNet
/// files) for the tests, after writing the WordNet benchmark (a few seconds the first time: a
/// 6.5 MB Debian package): its tests then must find them. On a machine without `apt-get` /
/// `dpkg-deb` they are skipped, and this says so.
fn wordnet_env() -> Result<Vec<(&'static str, PathBuf)>> {
    if !wordnet::tools_available() {
        eprintln!(
            "warning: no apt-get / dpkg-deb here: the WordNet benchmark is not provisioned and \
             its tests are skipped"
        );
        return Ok(Vec::new());
    }
    let (dict, data) = wordnet::ensure()?;
    Ok(vec![
        ("TASKMOE_WORDNET_DATA", data),
        ("TASKMOE_WORDNET_DICT", dict),
    ])
}
