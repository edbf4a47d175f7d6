//! `taskmoe compare`: two sets of finished runs, task by task, paired by seed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taskmoe_experiments::compare::compare;

/// Compares the runs `a` against `b` and prints the markdown table; with `out`, also writes
/// `compare.md` and `compare.json` there.
pub fn run(a: &[PathBuf], b: &[PathBuf], out: Option<&Path>) -> Result<()> {
    let comparison = compare(a, b)?;
    let md = comparison.markdown();
    print!("{md}");
    if let Some(out) = out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for (name, text) in [
            ("compare.md", md.clone()),
            (
                "compare.json",
                serde_json::to_string_pretty(&comparison)? + "\n",
            ),
        ] {
            let path = out.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!("written: {}", out.join("compare.md").display());
    }
    Ok(())
}
