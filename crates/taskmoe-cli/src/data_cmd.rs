//! `taskmoe data check`: a run's data read in full before training, every problem listed.

use anyhow::{bail, Result};
use taskmoe_data::check::Severity;
use taskmoe_train::{check_data, RunConfig};

use crate::ConfigArgs;

/// Resolves the run configuration as `taskmoe train` does, checks its data (the registry
/// and every split it names, or the synthetic benchmark), prints the per-task table and the
/// problems (at most `max_problems` per task), and fails when any problem is an error.
pub fn check(args: &ConfigArgs, max_problems: usize) -> Result<()> {
    let cfg = RunConfig::load(args.config.as_deref(), &args.set)?;
    let report = check_data(&cfg)?;
    print!("{}", report.render(max_problems));
    let errors = report.count(Severity::Error);
    if errors > 0 {
        bail!(
            "the data has {errors} error{} (listed above)",
            if errors == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
