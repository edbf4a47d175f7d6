//! `cargo xtask test`: the one command CI and README run. Provisions libtorch, the MiniLM
//! test model and the real-text benchmarks (WordNet glosses, Python docstrings), then checks
//! formatting, lints (warnings are errors, missing docs included) and runs every test.

use std::path::PathBuf;

use crate::debian;
use crate::libtorch;
use crate::models;
use crate::project::{cargo, run_cmd};
use crate::Result;
use crate::{pydocs, wordnet};

/// Runs the checks in order and stops at the first failure; `args` go to `cargo test`. With
/// `--repeat N` it instead runs every test binary N times and reports flaky tests
/// ([`crate::repeat`]).
pub fn run(args: &[String]) -> Result<()> {
    let lt = libtorch::ensure()?;
    if args.iter().any(|a| a == "--repeat") {
        let (repeat, only, test_args) = crate::repeat::parse(args)?;
        let minilm = models::ensure("minilm")?;
        let mut env = vec![("TASKMOE_MINILM_DIR", minilm)];
        env.extend(real_text_env()?);
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
    test.envs(real_text_env()?);
    lt.apply_env(&mut test);
    run_cmd(&mut test)
}

/// `TASKMOE_WORDNET_DATA` and `TASKMOE_PYDOCS_DATA` (the data folders), `TASKMOE_WORDNET_DICT`
/// and `TASKMOE_PYDOCS_LIB` (the unpacked packages) for the tests, after writing the real-text
/// benchmarks (a few seconds the first time: 6.5 MB and 2.6 MB of Debian packages): their
/// tests then must find them. On a machine without `apt-get` / `dpkg-deb` they are skipped,
/// and this says so.
fn real_text_env() -> Result<Vec<(&'static str, PathBuf)>> {
    if !debian::tools_available() {
        eprintln!(
            "warning: no apt-get / dpkg-deb here: the real-text benchmarks (WordNet, Python \
             docstrings) are not provisioned and their tests are skipped"
        );
        return Ok(Vec::new());
    }
    let (dict, wordnet_data) = wordnet::BENCHMARK.ensure()?;
    let (lib, pydocs_data) = pydocs::BENCHMARK.ensure()?;
    Ok(vec![
        ("TASKMOE_WORDNET_DATA", wordnet_data),
        ("TASKMOE_WORDNET_DICT", dict),
        ("TASKMOE_PYDOCS_DATA", pydocs_data),
        ("TASKMOE_PYDOCS_LIB", lib),
    ])
}
