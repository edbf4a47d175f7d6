//! Builds the WordNet gloss benchmark from a WordNet 3.0 `dict` folder and prints its tasks.
//!
//! `cargo run -p taskmoe-data --example wordnet -- DICT OUT [--registry FILE]
//! [--write-registry] [--quiet]`
//!
//! DICT holds `data.noun`, `data.verb`, `data.adj` and `data.adv` (Debian's `wordnet-base`
//! installs them in `/usr/share/wordnet`; the benchmark's pinned sizes and fingerprint are
//! those of `wordnet-base` 1:3.0-37, which `cargo xtask fetch-data wordnet` provisions and
//! passes here). OUT is the data folder, written only when its files differ. `--registry FILE`
//! warns when FILE is not the generated registry, `--write-registry` rewrites it; the
//! registry's split paths point at `data/` next to it. The summary goes to stderr and OUT to
//! stdout, unless `--quiet`.

use std::path::PathBuf;

use taskmoe_data::wordnet;

const USAGE: &str = "usage: wordnet DICT OUT [--registry FILE] [--write-registry] [--quiet]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut paths = Vec::new();
    let (mut registry, mut write_registry, mut quiet) = (None, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--registry" => registry = Some(PathBuf::from(args.next().ok_or(USAGE)?)),
            "--write-registry" => write_registry = true,
            "--quiet" => quiet = true,
            flag if flag.starts_with('-') => {
                return Err(format!("unknown flag `{flag}`\n{USAGE}").into())
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let [dict, out] = paths.as_slice() else {
        return Err(USAGE.into());
    };
    match (&registry, write_registry) {
        (Some(file), true) => {
            std::fs::write(file, wordnet::registry_toml())
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            eprintln!("wrote {}", file.display());
        }
        (Some(file), false) => {
            if std::fs::read_to_string(file).ok() != Some(wordnet::registry_toml()) {
                eprintln!(
                    "warning: {} differs from the task table of taskmoe_data::wordnet; \
                     --write-registry rewrites it",
                    file.display()
                );
            }
        }
        (None, true) => {
            return Err(format!("--write-registry needs --registry FILE\n{USAGE}").into())
        }
        (None, false) => {}
    }
    let files = wordnet::extract(dict)?;
    if wordnet::write_if_changed(out, &files)? {
        eprintln!("wrote {}", out.display());
    } else {
        eprintln!("{} is up to date", out.display());
    }
    if !quiet {
        eprint!("{}", files[wordnet::SOURCE_FILE]);
        println!("{}", out.display());
    }
    Ok(())
}
