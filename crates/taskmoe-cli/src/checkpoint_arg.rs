//! The checkpoint a command reads: `--run DIR` (its newest verified checkpoint) or
//! `--checkpoint DIR`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use taskmoe_train::{resolve_checkpoint, Checkpoint};

/// `--run DIR | --checkpoint DIR`, flattened into the commands that read one checkpoint.
#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    /// A run folder: its newest checkpoint whose files match their manifest is used.
    #[arg(
        long,
        conflicts_with = "checkpoint",
        required_unless_present = "checkpoint"
    )]
    pub run: Option<PathBuf>,
    /// A checkpoint folder (a copy works: it holds its tokenizer and task specs).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

impl CheckpointArgs {
    /// The checkpoint these arguments name ([`resolve`]).
    pub fn resolve(&self) -> Result<Checkpoint> {
        resolve(self.run.as_deref(), self.checkpoint.as_deref())
    }
}

/// The newest checkpoint of `run` whose files match their manifest (sizes and SHA-256; the
/// ones skipped are named on stderr with the reason), or the checkpoint folder `checkpoint`,
/// checked the same way: [`resolve_checkpoint`], the policy every reader of a checkpoint uses.
pub fn resolve(run: Option<&Path>, checkpoint: Option<&Path>) -> Result<Checkpoint> {
    match run.or(checkpoint) {
        Some(path) => Ok(resolve_checkpoint(path)?),
        None => bail!("pass --run DIR or --checkpoint DIR"),
    }
}
