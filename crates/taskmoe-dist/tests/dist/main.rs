//! The integration tests of `taskmoe-dist`, one test binary with a module per topic.
//!
//! A distributed test starts this same binary as its ranks (`run_local`), with a filter that
//! selects exactly one worker test: [`test_name`] spells that test's full path, so the filter
//! stays right whatever module the worker lives in. The workers print a marker that the
//! launching test requires, so a filter that selected nothing fails the test.

mod collectives;
mod nccl;

/// The harness's name of test `name` in the module whose `module_path!()` is `module`: the
/// path without this binary's crate name (`collectives::worker`), as `--exact` wants it.
fn test_name(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_binary, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    }
}
