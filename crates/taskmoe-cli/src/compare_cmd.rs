//! `taskmoe compare`: finished runs side by side (`RUN...`), two sets of them task by task,
//! paired by seed (`--a RUN... --b RUN...`), or two runs file by file (`--identical A B`).
//! Runs given as patterns are expanded here.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use taskmoe_experiments::compare::{compare, compare_runs};
use taskmoe_experiments::identical::identical as identical_runs;

/// Compares `runs` side by side, or the runs `a` against `b`, and prints the markdown table;
/// with `out`, also writes `compare.md` and `compare.json` there.
pub fn run(runs: &[PathBuf], a: &[PathBuf], b: &[PathBuf], out: Option<&Path>) -> Result<()> {
    let (md, json) = match runs.is_empty() {
        false => {
            let table = compare_runs(&expand(runs)?)?;
            (table.markdown(), serde_json::to_string_pretty(&table)?)
        }
        true => {
            let comparison = compare(&expand(a)?, &expand(b)?)?;
            (
                comparison.markdown(),
                serde_json::to_string_pretty(&comparison)?,
            )
        }
    };
    show(md, json, out)
}

/// Compares two runs file by file (`--identical A B`) and prints the table; an error, after
/// the table, when any output differs.
pub fn identical(runs: &[PathBuf], out: Option<&Path>) -> Result<()> {
    let runs = expand(runs)?;
    let [a, b] = runs.as_slice() else {
        bail!(
            "compare --identical takes two run folders, got {}",
            runs.len()
        );
    };
    let identity = identical_runs(a, b)?;
    show(
        identity.markdown(),
        serde_json::to_string_pretty(&identity)?,
        out,
    )?;
    if !identity.identical {
        bail!(
            "{} and {} differ in {} of {} output files (table above)",
            a.display(),
            b.display(),
            identity.differing(),
            identity.files.len()
        );
    }
    Ok(())
}

/// Prints `md`; with `out`, also writes it and `json` there as compare.md and compare.json.
fn show(md: String, json: String, out: Option<&Path>) -> Result<()> {
    print!("{md}");
    if let Some(out) = out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for (name, text) in [("compare.md", md), ("compare.json", json + "\n")] {
            let path = out.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!("written: {}", out.join("compare.md").display());
    }
    Ok(())
}

/// The run folders `args` name: a path as given, or (when no such path exists and it holds
/// `*`, `?` or `[`) every folder the pattern matches, in name order.
fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut runs = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        if arg.exists() || !text.contains(['*', '?', '[']) {
            runs.push(arg.clone());
            continue;
        }
        let matches: Vec<PathBuf> = glob::glob(&text)
            .with_context(|| format!("run pattern `{text}`"))?
            .filter_map(|m| m.ok())
            .filter(|p| p.is_dir())
            .collect();
        if matches.is_empty() {
            bail!("run pattern `{text}` matches no run folder");
        }
        runs.extend(matches);
    }
    Ok(runs)
}
