//! The checkpoint a command reads: `--run DIR` (its newest verified checkpoint) or
//! `--checkpoint DIR`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use taskmoe_train::{latest_verified, Checkpoint};

/// The newest checkpoint of `run` whose files match their manifest (sizes and SHA-256; the
/// ones skipped are named on stderr with the reason), or the checkpoint folder `checkpoint`,
/// checked the same way.
pub fn resolve(run: Option<&Path>, checkpoint: Option<&Path>) -> Result<Checkpoint> {
    match (run, checkpoint) {
        (Some(run), _) => {
            let latest = latest_verified(run)?;
            for line in latest.skipped_lines() {
                eprintln!("taskmoe: {line}");
            }
            latest.checkpoint.with_context(|| {
                format!(
                    "{} holds no checkpoint whose files match their manifest",
                    run.display()
                )
            })
        }
        (None, Some(dir)) => {
            let ckpt = Checkpoint::open(dir)?;
            ckpt.verify_hashes()?;
            Ok(ckpt)
        }
        (None, None) => bail!("pass --run DIR or --checkpoint DIR"),
    }
}
