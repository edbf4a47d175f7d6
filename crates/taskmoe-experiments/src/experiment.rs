//! The three experiments by name: what `taskmoe experiment NAME` parses and where each one's
//! report goes.

use crate::error::{bail, Result};

/// One of the three experiments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Experiment {
    /// Low-resource transfer.
    LowResource,
    /// Few-shot transfer to unseen tasks.
    Unseen,
    /// Robustness to unrelated tasks.
    Unrelated,
}

impl Experiment {
    /// Every experiment, in the order `all` runs them.
    pub const ALL: [Experiment; 3] = [
        Experiment::LowResource,
        Experiment::Unseen,
        Experiment::Unrelated,
    ];

    /// `low-resource`, `unseen`, `unrelated`, or `all` (every experiment).
    pub fn parse_list(name: &str) -> Result<Vec<Experiment>> {
        Ok(match name {
            "low-resource" => vec![Experiment::LowResource],
            "unseen" => vec![Experiment::Unseen],
            "unrelated" => vec![Experiment::Unrelated],
            "all" => Experiment::ALL.to_vec(),
            other => bail!(
                "unknown experiment `{other}`: expected low-resource, unseen, unrelated or all"
            ),
        })
    }

    /// The experiment's name, also its report folder.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::LowResource => "low-resource",
            Experiment::Unseen => "unseen",
            Experiment::Unrelated => "unrelated",
        }
    }
}
