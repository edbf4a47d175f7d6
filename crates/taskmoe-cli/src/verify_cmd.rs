//! `taskmoe verify`: checks a checkpoint's files against its manifest (`COMPLETE.json`).

use std::path::Path;

use anyhow::{bail, Result};
use taskmoe_train::{list_checkpoints, Checkpoint, MANIFEST_FILE};

/// Verifies `path`: a checkpoint folder, or a run folder (every checkpoint in it). Prints one
/// line per file (`ok`, or what is wrong) and fails if any listed file has another size or
/// SHA-256 than its manifest records, or a manifest is missing or broken.
pub fn run(path: &Path) -> Result<()> {
    let dirs: Vec<_> = if path.join(MANIFEST_FILE).exists() {
        vec![path.to_path_buf()]
    } else {
        let found = list_checkpoints(path)?;
        if found.is_empty() {
            bail!(
                "{}: neither a checkpoint (no {MANIFEST_FILE}) nor a run folder with checkpoints",
                path.display()
            );
        }
        found.into_iter().map(|(_, d)| d).collect()
    };
    let mut bad = 0;
    for dir in dirs {
        match Checkpoint::open(&dir) {
            Err(e) => {
                println!("{}: BROKEN: {e}", dir.display());
                bad += 1;
            }
            Ok(ckpt) => {
                let checks = ckpt.check_files();
                let failed = checks
                    .iter()
                    .filter(|(n, p)| p.is_some() && ckpt.has_file(n))
                    .count();
                println!(
                    "{} (step {}): {}",
                    dir.display(),
                    ckpt.step,
                    if failed == 0 {
                        "ok".to_string()
                    } else {
                        format!("{failed} file(s) do not match the manifest")
                    }
                );
                for (name, problem) in checks {
                    match problem {
                        None => println!("  ok    {name}"),
                        Some(p) if ckpt.has_file(&name) => println!("  BAD   {name}: {p}"),
                        Some(p) => println!("  note  {name}: {p}"),
                    }
                }
                bad += usize::from(failed > 0);
            }
        }
    }
    if bad > 0 {
        bail!("{bad} checkpoint(s) failed verification");
    }
    Ok(())
}
