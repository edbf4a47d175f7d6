//! A run's data checked the way the run would read it (`taskmoe data check`).

use taskmoe_data::synthetic::SyntheticBenchmark;
use taskmoe_data::DataCheck;

use crate::error::Result;
use crate::run_config::{DataSource, RunConfig};
use crate::run_data::{load_tokenizer, truncation_len};

/// Checks the data `cfg` configures without stopping at the first problem: the registry and
/// every split it names, read with the run's readers and counted with its tokenizer cut at
/// the run's length (`data.seq_len`, else `model.max_position`), or the synthetic benchmark
/// measured against its batch length. The tasks trained are `data.tasks` (empty: every task
/// not held out). Only a configuration that cannot be resolved (no tokenizer file, a bad
/// synthetic setting) is an `Err`; everything wrong with the data is in the returned report.
pub fn check_data(cfg: &RunConfig) -> Result<DataCheck> {
    let d = &cfg.data;
    Ok(match d.source {
        DataSource::Synthetic => {
            let bench = SyntheticBenchmark::generate(&d.synthetic)?;
            let seq_len = match d.seq_len {
                0 => bench.max_seq_len(),
                n => n,
            };
            DataCheck::synthetic(&bench, seq_len, &d.tasks)
        }
        DataSource::Registry => {
            let registry = d.registry.as_ref().expect("validated");
            let tokenizer = d.tokenizer.as_ref().expect("validated");
            let tokenizer = load_tokenizer(tokenizer, truncation_len(cfg))?;
            DataCheck::registry(registry, &tokenizer, &d.tasks)
        }
    })
}
