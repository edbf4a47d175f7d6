//! Building the benchmark's files from scanned docstrings: usable summaries, per-label quotas
//! per split, one training task per text, and `SOURCE.txt` with the fingerprint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use super::hash::{order_of, split_of, text_key};
use super::parse::{read_tree, Docstring, Scan};
use super::tasks::{Class, TASKS};
use super::{MAX_WORDS, MIN_WORDS, PACKAGES, RULES, SOURCE_FILE};
use crate::error::{DataError, Result};
use crate::realtext::{split_files, task_table_header, SplitFiles, SplitSource};
use crate::realtext::{DEV_BUCKETS, TRAIN_BUCKETS};

/// Every file of the benchmark's data folder (path relative to it, with `/` separators ->
/// content) from a Python 3.11 library folder (the `usr/lib/python3.11` of Debian's
/// `libpython3.11-minimal` and `libpython3.11-stdlib` unpacked together): the split files
/// `<task>/{train,dev,test}.tsv` (columns `id`, `object`, `docstring`, `label`) and
/// [`SOURCE_FILE`]. The same folder always gives the same bytes. Errors name a file that
/// cannot be read, or the task, label and split whose quota the data cannot fill.
pub fn extract(root: &Path) -> Result<BTreeMap<String, String>> {
    build(&read_tree(root)?)
}

/// The docstrings the tasks may use, in path and line order: a summary of [`MIN_WORDS`] to
/// [`MAX_WORDS`] words, and one text (compared without case) once only. A text found more
/// than once is kept at its first place when every copy would get the same labels (same
/// package, kind and parameter count: an override repeating its base's docstring), else
/// dropped everywhere.
pub fn usable(docstrings: &[Docstring]) -> Vec<&Docstring> {
    let words = |d: &Docstring| d.summary.split(' ').count();
    let in_range: Vec<&Docstring> = docstrings
        .iter()
        .filter(|d| !d.summary.is_empty() && (MIN_WORDS..=MAX_WORDS).contains(&words(d)))
        .collect();
    let mut copies: HashMap<String, Vec<&Docstring>> = HashMap::new();
    for d in &in_range {
        copies.entry(d.summary.to_lowercase()).or_default().push(d);
    }
    let mut kept = HashSet::new();
    let mut out = Vec::new();
    for d in in_range {
        let key = d.summary.to_lowercase();
        let all = &copies[&key];
        let agree = all
            .iter()
            .all(|c| (&c.package, c.kind, c.params) == (&d.package, d.kind, d.params));
        if agree && kept.insert(key) {
            out.push(d);
        }
    }
    out
}

/// The usable docstrings per label and split (with their text keys), in hash order.
struct Pools<'a>(HashMap<&'static str, [Vec<(u64, &'a Docstring)>; 3]>);

impl<'a> SplitSource<Class> for Pools<'a> {
    type Item = (u64, &'a Docstring);
    const HEADER: &'static str = "id\tobject\tdocstring\tlabel";

    fn pool(&self, c: &Class, split: usize) -> &[(u64, &'a Docstring)] {
        self.0.get(c.label).map_or(&[], |p| &p[split])
    }

    fn key((k, _): &(u64, &'a Docstring)) -> u64 {
        *k
    }

    fn order((k, _): &(u64, &'a Docstring)) -> (u64, u64) {
        order_of(*k)
    }

    fn write_row(text: &mut String, (_, d): &(u64, &'a Docstring), label: &str) {
        let _ = writeln!(
            text,
            "{}:{}\t{}\t{}\t{label}",
            d.path,
            d.line,
            d.object(),
            d.summary
        );
    }

    fn too_few(task: &str, c: &Class, split: &str, found: usize, wanted: usize) -> DataError {
        DataError::TooFewDocstrings {
            task: task.to_string(),
            label: c.label.to_string(),
            split: split.to_string(),
            found,
            wanted,
        }
    }
}

/// The task files and `SOURCE.txt` from a scan (its docstrings in any order).
pub fn build(scan: &Scan) -> Result<BTreeMap<String, String>> {
    let mut docstrings = scan.docstrings.clone();
    docstrings.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    let usable = usable(&docstrings);
    // pools[label][split]: the usable docstrings of a label, in hash order.
    let mut pools: HashMap<&str, [Vec<(u64, &Docstring)>; 3]> = HashMap::new();
    // Every label once (a label serves several tasks of its family).
    let mut classes: Vec<&Class> = Vec::new();
    for c in TASKS.iter().flat_map(|t| t.classes) {
        if !classes.iter().any(|k| k.label == c.label) {
            classes.push(c);
        }
    }
    for d in &usable {
        let key = text_key(&d.summary);
        for c in classes.iter().filter(|c| c.takes(d)) {
            // Usable texts are unique, so a label's pool holds each key once.
            pools.entry(c.label).or_default()[split_of(key)].push((key, d));
        }
    }
    for splits in pools.values_mut() {
        for pool in splits.iter_mut() {
            pool.sort_by_key(|(k, _)| order_of(*k));
        }
    }

    let pools = Pools(pools);
    let SplitFiles {
        mut files,
        fingerprint,
        table,
    } = split_files(TASKS, 9, &pools)?;
    let mut pool_table = String::new();
    for c in &classes {
        let n = pools
            .0
            .get(c.label)
            .map_or([0; 3], |p| p.each_ref().map(Vec::len));
        let _ = writeln!(
            pool_table,
            "{:<10} {:>5} {:>4} {:>5}  {}",
            c.label, n[0], n[1], n[2], c.about
        );
    }
    let debs: Vec<String> = PACKAGES
        .iter()
        .map(|p| {
            format!(
                "{} {} ({}, SHA-256 {})",
                p.name, p.version, p.file, p.sha256
            )
        })
        .collect();
    let skipped: Vec<String> = scan
        .skipped
        .iter()
        .map(|(why, n)| format!("  {n} {why}"))
        .chain(
            scan.unreadable
                .iter()
                .map(|f| format!("  skipped file {f}")),
        )
        .collect();
    let source = format!(
        "Python 3.11 standard library docstrings from Debian bookworm's\n  {}\nwritten by \
         `cargo xtask fetch-data pydocs` (crates/taskmoe-data/src/pydocs/, rules v{RULES}: \
         first paragraph, {MIN_WORDS}-{MAX_WORDS} words, one copy of a text, split by text \
         hash {TRAIN_BUCKETS}/{DEV_BUCKETS}/{}).\nThe Python standard library is (c) Python \
         Software Foundation, under the PSF License Agreement (PSF-2.0; see the packages' \
         copyright file).\n{} .py files read ({} test files left out), {} docstrings found, \
         {} usable.\nskipped:\n{}\nfingerprint {fingerprint:016x}\n\n\
         {:<10} {:>5} {:>4} {:>5}  usable docstrings per label\n{pool_table}\n\
         {}\n{table}",
        debs.join("\n  "),
        100 - TRAIN_BUCKETS - DEV_BUCKETS,
        scan.files,
        scan.test_files,
        docstrings.len(),
        usable.len(),
        if skipped.is_empty() {
            "  nothing".to_string()
        } else {
            skipped.join("\n")
        },
        "label",
        "train",
        "dev",
        "test",
        task_table_header(9)
    );
    files.insert(SOURCE_FILE.to_string(), source);
    Ok(files)
}
