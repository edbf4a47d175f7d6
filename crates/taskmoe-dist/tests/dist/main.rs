//! The integration tests of `taskmoe-dist`, one test binary with a module per topic.
//!
//! A distributed test starts this same binary as its ranks (`run_local`), with a filter that
//! selects exactly one worker test: [`taskmoe_dist::worker_test`] spells that test's full path, so the filter
//! stays right whatever module the worker lives in. The workers print a marker that the
//! launching test requires, so a filter that selected nothing fails the test.

mod collectives;
mod nccl;
