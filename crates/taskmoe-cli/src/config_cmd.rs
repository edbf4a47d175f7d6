//! `taskmoe config show`: the resolved run configuration.

use anyhow::Result;
use taskmoe_train::RunConfig;

use crate::ConfigArgs;

/// Prints the configuration a run with these arguments would use: the preset, then the file,
/// then every `--set`, merged key by key and validated. The output is itself a complete run
/// configuration (`taskmoe train --config` reads it back to the same values).
pub fn show(args: &ConfigArgs) -> Result<()> {
    let cfg = RunConfig::load(args.config.as_deref(), &args.set)?;
    print!("{}", cfg.to_toml());
    Ok(())
}
