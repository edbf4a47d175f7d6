//! `cargo xtask bench`: runs the benchmarks against the provisioned libtorch, optimised.
//!
//! - `bench`: every criterion bench of the workspace;
//! - `bench kernels`: the routing kernels (criterion);
//! - `bench moe [--quick]`: the MoE layer against the dense FFN as a markdown table;
//!
//! Arguments after `--` go to the bench binary (criterion filters, for instance).

use crate::libtorch;
use crate::project::{cargo, run_cmd};
use crate::Result;

/// Runs the selected benches.
pub fn run(args: &[String]) -> Result<()> {
    let (ours, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut cmd = cargo();
    cmd.arg("bench");
    let quick = ours.iter().any(|a| a == "--quick");
    match ours
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
    {
        None => {
            cmd.arg("--workspace");
        }
        Some("kernels") => {
            cmd.args(["-p", "taskmoe-kernels", "--bench", "kernels"]);
        }
        Some("moe") => {
            cmd.args([
                "-p",
                "taskmoe-experts",
                "--bench",
                "moe_layer",
                "--",
                "--summary",
            ]);
            if quick {
                cmd.arg("--quick");
            }
        }
        Some(other) => {
            return Err(format!("unknown bench `{other}`: expected kernels or moe").into());
        }
    }
    if !passthrough.is_empty() {
        if !ours.iter().any(|a| a == "moe") {
            cmd.arg("--");
        }
        cmd.args(passthrough);
    }
    let lt = libtorch::ensure()?;
    lt.apply_env(&mut cmd);
    run_cmd(&mut cmd)
}
