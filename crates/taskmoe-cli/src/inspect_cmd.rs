//! `taskmoe inspect`.

use anyhow::Result;
use taskmoe_model::{param_report, Variant};
use taskmoe_train::{RunConfig, RunData};

use crate::report::spelling;
use crate::ConfigArgs;

/// Prints the parameter report of the configured model and of the other variants with the
/// same settings, so equal active compute can be checked.
pub fn run(args: &ConfigArgs) -> Result<()> {
    let cfg = RunConfig::load(args.config.as_deref(), &args.set)?;
    let data = RunData::load(&cfg)?;
    let heads = data.heads();
    println!(
        "{} tasks, sequence length {}; configured variant: {}\n",
        heads.len(),
        data.seq_len,
        spelling(&cfg.model.variant)
    );
    for variant in [Variant::Dense, Variant::TokenMoe, Variant::TaskMoe] {
        let model = cfg.model.with_variant(variant);
        println!(
            "== {} (router {})",
            spelling(&variant),
            spelling(&model.moe.router.kind)
        );
        println!("{}", param_report(&model, &heads, data.seq_len));
    }
    Ok(())
}
