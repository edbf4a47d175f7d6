//! Builds the Python docstring benchmark from a Python 3.11 library folder and prints its
//! tasks.
//!
//! `cargo run -p taskmoe-data --example pydocs -- LIB OUT [--registry FILE]
//! [--write-registry] [--quiet] [--counts] [--dump FILE]`
//!
//! LIB is a Python 3.11 `lib/python3.11` folder (the benchmark's pinned sizes and fingerprint
//! are those of Debian bookworm's `libpython3.11-minimal` and `libpython3.11-stdlib`
//! 3.11.2-6+deb12u7 unpacked together, which `cargo xtask fetch-data pydocs` provisions and
//! passes here). OUT is the data folder, written only when its files differ. `--registry FILE`
//! warns when FILE is not the generated registry, `--write-registry` rewrites it; the
//! registry's split paths point at `data/` next to it. `--counts` first prints the usable
//! docstrings per top-level package and whether a family label takes it (how the labels were
//! chosen). `--dump FILE` writes every docstring found (path, line, kind, object, parameters,
//! first paragraph; tab-separated, sorted) for `python/pydocs_ast.py` to compare with what
//! CPython's `ast` finds. The summary goes to stderr and OUT to stdout, unless `--quiet`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use taskmoe_data::pydocs;

mod realtext;

const USAGE: &str = "usage: pydocs LIB OUT [--registry FILE] [--write-registry] [--quiet] \
                     [--counts] [--dump FILE]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut counts, mut dump) = (false, None);
    let args = realtext::Args::parse(USAGE, |flag, rest| {
        match flag {
            "--counts" => counts = true,
            "--dump" => dump = Some(PathBuf::from(rest.next().ok_or(USAGE)?)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    args.sync_registry(pydocs::registry_toml(), "pydocs", USAGE)?;
    let scan = pydocs::read_tree(&args.input)?;
    if counts {
        print_counts(&scan);
    }
    if let Some(file) = &dump {
        let mut rows: Vec<String> = scan
            .docstrings
            .iter()
            .map(|d| {
                let params = d.params.map_or("-".to_string(), |n| n.to_string());
                let (kind, object) = (d.kind.name(), d.object());
                format!(
                    "{}\t{}\t{kind}\t{object}\t{params}\t{}\n",
                    d.path, d.line, d.summary
                )
            })
            .collect();
        rows.sort();
        std::fs::write(file, rows.concat())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    let files = pydocs::build(&scan)?;
    args.write_data(&files, pydocs::SOURCE_FILE)
}

/// Usable docstrings per top-level package, most first, with the family label that takes
/// the package (`-` for none: the unrelated tasks' packages).
fn print_counts(scan: &pydocs::Scan) {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for d in pydocs::usable(&scan.docstrings) {
        *per.entry(d.package.as_str()).or_default() += 1;
    }
    let mut rows: Vec<(&str, usize)> = per.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    eprintln!("{:<24} {:>6}  label", "package", "usable");
    for (package, n) in rows {
        let label = pydocs::TASKS
            .iter()
            .flat_map(|t| t.classes)
            .find(|c| matches!(c.rule, pydocs::Rule::Packages(p) if p.contains(&package)))
            .map_or("-", |c| c.label);
        eprintln!("{package:<24} {n:>6}  {label}");
    }
}
