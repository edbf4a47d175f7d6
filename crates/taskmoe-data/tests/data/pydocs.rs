//! The Python docstring benchmark's tasks (`taskmoe_data::pydocs`, `configs/pydocs/`): the
//! construction on synthetic docstrings (balanced labels, disjoint splits, one training task
//! per text, one label per text within a family, the shared label positions, deterministic),
//! and the registry's files read as a run reads them.
//!
//! The real files come from `cargo xtask fetch-data pydocs`; `cargo xtask test` writes them and
//! sets `TASKMOE_PYDOCS_DATA`, so there the tests must find them. Elsewhere, without the files,
//! those tests say so and pass. With `TASKMOE_PYDOCS_LIB` (the unpacked library, which
//! `cargo xtask test` also sets), the builder itself runs on the real packages: deterministic,
//! the pinned fingerprint, and the same files as the data folder. The scanner's tests are in
//! `pydocs_scan.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use taskmoe_data::pydocs::{self, Docstring, Kind, Role, Rule, Scan, TASKS};
use taskmoe_data::DataError;

use crate::realtext::{read_named, Benchmark};

/// Synthetic docstrings: `n` per family label (in the label's first package), and from a
/// package of no family `n` classes and `3 n` functions and methods each, with 0 to 3
/// parameters; all texts distinct.
fn synthetic(n: usize) -> Scan {
    assert!(pydocs::outside_families("zz_outside"));
    let mut docstrings = Vec::new();
    let mut add = |package: &str, kind: Kind, params: Option<usize>, i: usize| {
        docstrings.push(Docstring {
            path: format!("{package}.py"),
            line: i + 1,
            module: package.to_string(),
            package: package.to_string(),
            kind,
            name: format!("f{i}"),
            params,
            summary: format!("docstring {i} of {package} {}", kind.name()),
        });
    };
    let mut seen = BTreeSet::new();
    for c in TASKS.iter().flat_map(|t| t.classes) {
        if let Rule::Packages(p) = c.rule {
            if seen.insert(p[0]) {
                for i in 0..n {
                    add(p[0], Kind::Function, Some(1), i);
                }
            }
        }
    }
    for i in 0..n {
        add("zz_outside", Kind::Class, None, i);
    }
    for i in 0..3 * n {
        add("zz_outside", Kind::Function, Some(i % 4), n + i);
        add("zz_outside", Kind::Method, Some(i % 4), 4 * n + i);
    }
    Scan {
        docstrings,
        ..Scan::default()
    }
}

/// The rows of a split file: (id, docstring, label).
fn rows(text: &str) -> Vec<(String, String, String)> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id\tobject\tdocstring\tlabel"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l}");
            (f[0].to_string(), f[2].to_string(), f[3].to_string())
        })
        .collect()
}

#[test]
fn tasks_are_balanced_disjoint_related_and_deterministic() {
    let scan = synthetic(450);
    let files = pydocs::build(&scan).unwrap();
    let mut reversed = scan.clone();
    reversed.docstrings.reverse();
    assert_eq!(
        files,
        pydocs::build(&reversed).unwrap(),
        "input order must not matter"
    );
    let mut split_of: HashMap<String, usize> = HashMap::new();
    let mut trained_by: HashMap<String, &str> = HashMap::new();
    // (family, text) -> label: a text two tasks of a family share has one label.
    let mut label_in_family: HashMap<(&str, String), String> = HashMap::new();
    for task in TASKS {
        for (split, file) in pydocs::SPLIT_FILES.iter().enumerate() {
            let rows = rows(&files[&format!("{}/{file}.tsv", task.name)]);
            assert_eq!(rows.len(), task.per_class[split] * task.classes.len());
            for c in task.classes {
                let count = rows.iter().filter(|r| r.2 == c.label).count();
                assert_eq!(
                    count, task.per_class[split],
                    "{} {file} {}",
                    task.name, c.label
                );
            }
            for (_, text, label) in rows {
                let key = text.to_lowercase();
                assert_eq!(
                    *split_of.entry(key.clone()).or_insert(split),
                    split,
                    "{text}"
                );
                if split == 0 {
                    if let Some(other) = trained_by.insert(key.clone(), task.name) {
                        panic!("{text:?} trains {other} and {}", task.name);
                    }
                }
                let l = label_in_family
                    .entry((task.family, key))
                    .or_insert(label.clone());
                assert_eq!(*l, label, "{text:?} in {}", task.family);
            }
        }
    }
    // The label positions: lo shares A and C (positions 0, 2) with hi, new shares A and B.
    for family in ["internet", "tooling", "system"] {
        let labels = |role: Role| -> Vec<&str> {
            let t = TASKS
                .iter()
                .find(|t| t.family == family && t.role == role)
                .unwrap();
            t.classes.iter().map(|c| c.label).collect()
        };
        let (hi, lo, new) = (labels(Role::High), labels(Role::Low), labels(Role::HeldOut));
        assert_eq!((lo[0], lo[2]), (hi[0], hi[2]), "{family}");
        assert_eq!(new[..2], hi[..2], "{family}");
        assert_eq!(
            new[2], lo[1],
            "{family}: D is learned from the low-resource task"
        );
        assert!(!hi.contains(&lo[1]), "{family}");
    }
    let source = &files[pydocs::SOURCE_FILE];
    assert!(
        source.contains("PSF-2.0") && source.contains("fingerprint "),
        "{source}"
    );
}

#[test]
fn a_short_pool_is_an_error_naming_task_label_and_split() {
    let err = pydocs::build(&synthetic(100)).unwrap_err();
    assert!(
        matches!(&err, DataError::TooFewDocstrings { task, label, split, wanted: 90, .. }
            if task == "internet_hi" && label == "mail" && split == "train"),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("task `internet_hi`") && text.contains("label `mail`"),
        "{text}"
    );
}

/// name, family, held out, train / dev / test sizes, labels.
type Row = (
    &'static str,
    &'static str,
    bool,
    [usize; 3],
    &'static [&'static str],
);

/// The benchmark as docs/pydocs.md describes it.
#[rustfmt::skip]
const TABLE: [Row; 11] = [
    ("internet_hi",  "internet", false, [270, 45, 120], &["mail", "web", "network"]),
    ("tooling_hi",   "tooling",  false, [270, 45, 120], &["importing", "language", "testing"]),
    ("system_hi",    "system",   false, [270, 45, 120], &["files", "processes", "archives"]),
    ("internet_lo",  "internet", false, [45, 45, 120],  &["mail", "markup", "network"]),
    ("tooling_lo",   "tooling",  false, [45, 45, 120],  &["importing", "debugging", "testing"]),
    ("system_lo",    "system",   false, [45, 45, 120],  &["files", "formats", "archives"]),
    ("internet_new", "internet", true,  [45, 45, 120],  &["mail", "web", "markup"]),
    ("tooling_new",  "tooling",  true,  [45, 45, 120],  &["importing", "language", "debugging"]),
    ("system_new",   "system",   true,  [45, 45, 120],  &["files", "processes", "formats"]),
    ("doc_kind",     "doc_kind", false, [450, 45, 120], &["class", "function", "method"]),
    ("arity",        "arity",    false, [450, 45, 120], &["none", "one", "several"]),
];

const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// The benchmark these tests check.
const BENCHMARK: Benchmark = Benchmark {
    name: "pydocs",
    first_task: "internet_hi",
    data_variable: "TASKMOE_PYDOCS_DATA",
};

#[test]
fn the_built_registry_has_its_sizes_labels_and_no_leaks() {
    let Some(registry) = BENCHMARK.registry() else {
        return;
    };
    let names: Vec<&str> = registry.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, TABLE.map(|r| r.0));
    let mut split_of: HashMap<String, &str> = HashMap::new();
    let mut trained_by: HashMap<String, String> = HashMap::new();
    for (spec, (name, family, held_out, sizes, labels)) in registry.tasks().iter().zip(TABLE) {
        assert_eq!(
            (spec.family.as_str(), spec.held_out),
            (family, held_out),
            "{name}"
        );
        assert_eq!(spec.labels, labels, "{name}");
        for (split, size) in SPLITS.iter().zip(sizes) {
            let rows = read_named(&registry, spec, split);
            assert_eq!(rows.len(), size, "{name} {split}");
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, _, label) in &rows {
                *counts.entry(label.as_str()).or_default() += 1;
            }
            assert_eq!(counts.len(), labels.len(), "{name} {split}: {counts:?}");
            assert!(
                counts.values().all(|&c| c * labels.len() == size),
                "{name} {split}"
            );
            for (id, text, _) in rows {
                let words = text.split(' ').count();
                assert!((3..=40).contains(&words), "{name}: {text:?}");
                assert!(id.contains(".py:"), "{name}: {id}");
                let key = text.to_lowercase();
                let s = *split_of.entry(key.clone()).or_insert(split);
                assert_eq!(s, *split, "{text:?} in {s} and {split}");
                if *split == "train" {
                    if let Some(other) = trained_by.insert(key, name.to_string()) {
                        panic!("{text:?} trains {other} and {name}");
                    }
                }
            }
        }
    }
}

/// The fingerprint of the split files the rules write from the pinned packages (in
/// `SOURCE.txt`). A change of the rules changes it: bump `pydocs::RULES` and update it.
const FINGERPRINT: &str = "fingerprint 617edf01fc41533e";

/// On the real packages (`TASKMOE_PYDOCS_LIB`): two extractions are identical, give the
/// pinned fingerprint, and (when the data folder is there) are the files it holds.
#[test]
fn the_real_extraction_is_deterministic_and_pinned() {
    BENCHMARK.assert_extraction_pinned(
        ("TASKMOE_PYDOCS_LIB", "the unpacked Python library"),
        pydocs::extract,
        pydocs::SOURCE_FILE,
        FINGERPRINT,
    );
}
