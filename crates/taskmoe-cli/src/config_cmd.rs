//! `taskmoe config show` (the resolved run configuration, documented) and `taskmoe config
//! migrate` (a file of the old `[train]` layout into the sections).

use std::path::Path;

use anyhow::{bail, Context, Result};
use taskmoe_train::{annotate, migrate_table, RunConfig};

use crate::ConfigArgs;

/// Prints the configuration a run with these arguments would use: the preset, then the file,
/// then every `--set`, merged key by key and validated, each key with its documentation as a
/// comment unless `bare`. The output is itself a complete run configuration (`taskmoe train
/// --config` reads it back to the same values).
pub fn show(args: &ConfigArgs, bare: bool) -> Result<()> {
    let cfg = RunConfig::load(args.config.as_deref(), &args.set)?;
    let text = cfg.to_toml();
    match bare {
        true => print!("{text}"),
        false => print!("{}", annotate(&text, 96)),
    }
    Ok(())
}

/// Moves the keys of the old `[train]` layout in `file` to their sections and prints the
/// result (or, with `write`, replaces the file and keeps the original as `FILE.old`). The
/// result must load as a run configuration; a file with nothing to move is left alone.
pub fn migrate(file: &Path, write: bool) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let moved = migrate_table(&mut table);
    if moved.is_empty() {
        eprintln!("{}: no key to move", file.display());
        if !write {
            print!("{text}");
        }
        return Ok(());
    }
    for (old, new) in &moved {
        eprintln!("{old} -> {new}");
    }
    let migrated = toml::to_string_pretty(&table)?;
    // The migrated file must load where the old one was (its relative paths stay relative).
    let check = file.with_extension("migrated.toml");
    std::fs::write(&check, &migrated).with_context(|| format!("writing {}", check.display()))?;
    let loaded = RunConfig::load(Some(&check), &[]);
    let _ = std::fs::remove_file(&check);
    if let Err(e) = loaded {
        bail!("the migrated configuration does not load: {e}");
    }
    if !write {
        print!("{migrated}");
        return Ok(());
    }
    let old = file.with_extension("toml.old");
    std::fs::copy(file, &old).with_context(|| format!("keeping {}", old.display()))?;
    std::fs::write(file, migrated).with_context(|| format!("writing {}", file.display()))?;
    eprintln!(
        "{} rewritten (the original is {}; comments were not carried over)",
        file.display(),
        old.display()
    );
    Ok(())
}
