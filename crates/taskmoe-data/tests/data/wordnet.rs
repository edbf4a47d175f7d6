//! The WordNet gloss benchmark (`configs/wordnet/`) read through the registry as a run reads
//! it: the tasks, their roles and sizes, exact label balance, the declared relatedness of the
//! label sets, and no leakage: a synset and its definition sit in one split across all tasks,
//! and a training definition in one task.
//!
//! The files come from `cargo xtask fetch-data wordnet`; `cargo xtask test` writes them and
//! sets `TASKMOE_WORDNET_DATA`, so there the tests must find them. Elsewhere, without the
//! files, they say so and pass. With `TASKMOE_WORDNET_DICT` (the unpacked WordNet files, which
//! `cargo xtask test` also sets), the builder itself runs on the real package: deterministic,
//! the pinned fingerprint, and the same files as the data folder.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use taskmoe_data::wordnet;
use taskmoe_data::{TaskRegistry, TaskSpec};

use crate::realtext::{read_named, Benchmark};

/// name, family, held out, train / dev / test sizes, labels.
type Row = (
    &'static str,
    &'static str,
    bool,
    [usize; 3],
    &'static [&'static str],
);

/// The benchmark as docs/realtext.md describes it.
const TABLE: [Row; 11] = [
    (
        "living_hi",
        "living",
        false,
        [3000, 300, 750],
        &["animal", "plant", "person"],
    ),
    (
        "physical_hi",
        "physical",
        false,
        [3000, 300, 750],
        &["artifact", "substance", "food"],
    ),
    (
        "abstract_hi",
        "abstract",
        false,
        [3000, 300, 750],
        &["act", "communication", "cognition"],
    ),
    (
        "living_lo",
        "living",
        false,
        [300, 300, 750],
        &["animal", "body", "person"],
    ),
    (
        "physical_lo",
        "physical",
        false,
        [300, 300, 750],
        &["artifact", "object", "food"],
    ),
    (
        "abstract_lo",
        "abstract",
        false,
        [300, 300, 750],
        &["act", "state", "cognition"],
    ),
    (
        "living_new",
        "living",
        true,
        [300, 300, 750],
        &["animal", "plant", "body"],
    ),
    (
        "physical_new",
        "physical",
        true,
        [300, 300, 750],
        &["artifact", "substance", "object"],
    ),
    (
        "abstract_new",
        "abstract",
        true,
        [300, 300, 750],
        &["act", "communication", "state"],
    ),
    (
        "verb_sense",
        "verb",
        false,
        [2400, 400, 1000],
        &["change", "contact", "communication", "motion"],
    ),
    (
        "word_class",
        "word_class",
        false,
        [2400, 300, 750],
        &["adjective", "relational", "adverb"],
    ),
];

const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// The benchmark these tests check.
const BENCHMARK: Benchmark = Benchmark {
    name: "wordnet",
    first_task: "living_hi",
    data_variable: "TASKMOE_WORDNET_DATA",
};

/// One example: synset id, definition, label name.
struct Ex {
    synset: String,
    gloss: String,
    label: String,
}

fn read(registry: &TaskRegistry, spec: &TaskSpec, split: &str) -> Vec<Ex> {
    read_named(registry, spec, split)
        .into_iter()
        .map(|(synset, gloss, label)| Ex {
            synset,
            gloss,
            label,
        })
        .collect()
}

#[test]
fn tasks_sizes_and_exact_label_balance() {
    let Some(registry) = BENCHMARK.registry() else {
        return;
    };
    let names: Vec<&str> = registry.tasks().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, TABLE.map(|r| r.0));
    for (spec, (name, family, held_out, sizes, labels)) in registry.tasks().iter().zip(TABLE) {
        assert_eq!(spec.family, family, "{name}");
        assert_eq!(spec.held_out, held_out, "{name}");
        assert_eq!(spec.labels, labels, "{name}");
        assert_eq!(spec.text_fields, ["gloss"], "{name}");
        for (split, size) in SPLITS.iter().zip(sizes) {
            let rows = read(&registry, spec, split);
            assert_eq!(rows.len(), size, "{name} {split}");
            // Every label equally often: the majority baseline is exactly 1 / labels.
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &rows {
                *counts.entry(r.label.as_str()).or_default() += 1;
            }
            assert_eq!(counts.len(), labels.len(), "{name} {split}: {counts:?}");
            assert!(
                counts.values().all(|&c| c * labels.len() == size),
                "{name} {split}: {counts:?}"
            );
            for r in &rows {
                let words = r.gloss.split(' ').count();
                assert!((3..=14).contains(&words), "{name}: {:?}", r.gloss);
                assert_eq!(r.gloss.trim(), r.gloss);
                let pos = r.synset.chars().next().unwrap();
                let expected = match family {
                    "verb" => "v",
                    "word_class" => "ar",
                    _ => "n",
                };
                assert!(expected.contains(pos), "{name}: {}", r.synset);
            }
        }
    }
}

#[test]
fn no_synset_or_definition_crosses_splits_or_trains_two_tasks() {
    let Some(registry) = BENCHMARK.registry() else {
        return;
    };
    let mut split_of_synset: HashMap<String, &str> = HashMap::new();
    let mut split_of_gloss: HashMap<String, &str> = HashMap::new();
    let mut synset_of_gloss: HashMap<String, String> = HashMap::new();
    let mut label_of_synset: HashMap<String, String> = HashMap::new();
    let mut trained_by: HashMap<String, String> = HashMap::new();
    for spec in registry.tasks() {
        for split in SPLITS {
            for r in read(&registry, spec, split) {
                let key = r.gloss.to_lowercase();
                let s = *split_of_synset.entry(r.synset.clone()).or_insert(split);
                assert_eq!(s, split, "{} in {s} and {split}", r.synset);
                let g = *split_of_gloss.entry(key.clone()).or_insert(split);
                assert_eq!(g, split, "{:?} in {g} and {split}", r.gloss);
                let id = synset_of_gloss.entry(key).or_insert(r.synset.clone());
                assert_eq!(*id, r.synset, "{:?} defines two synsets", r.gloss);
                // A synset shared by two tasks' evaluation splits has one supersense.
                let l = label_of_synset
                    .entry(r.synset.clone())
                    .or_insert(r.label.clone());
                assert_eq!(*l, r.label, "{}", r.synset);
                if split == "train" {
                    if let Some(other) = trained_by.insert(r.synset.clone(), spec.name.clone()) {
                        panic!("{} trains {other} and {}", r.synset, spec.name);
                    }
                }
            }
        }
    }
}

#[test]
fn relatedness_follows_the_declared_families() {
    let Some(registry) = BENCHMARK.registry() else {
        return;
    };
    let labels = |name: &str| -> BTreeSet<&str> {
        registry
            .get(name)
            .unwrap()
            .labels
            .iter()
            .map(String::as_str)
            .collect()
    };
    for family in ["living", "physical", "abstract"] {
        let [hi, lo, new] = ["hi", "lo", "new"].map(|r| format!("{family}_{r}"));
        // Every pair of a family shares exactly two of its three labels ...
        for (a, b) in [(&hi, &lo), (&hi, &new), (&lo, &new)] {
            assert_eq!(labels(a).intersection(&labels(b)).count(), 2, "{a} {b}");
        }
        // ... and the held-out task's first two label positions are the high-resource one's,
        // so the head it starts from already tells those two apart.
        let (h, n) = (registry.get(&hi).unwrap(), registry.get(&new).unwrap());
        assert_eq!(h.labels[..2], n.labels[..2], "{family}");
        // Families share no label.
        for other in ["living", "physical", "abstract"]
            .iter()
            .filter(|f| **f != family)
        {
            for r in ["hi", "lo", "new"] {
                assert!(labels(&hi).is_disjoint(&labels(&format!("{other}_{r}"))));
            }
        }
    }
}

/// The fingerprint of the split files the rules write from wordnet-base 1:3.0-37 (in
/// `SOURCE.txt`). A change of the rules changes it: bump `wordnet::RULES` and update it.
const FINGERPRINT: &str = "fingerprint 17dfbbbbb3c65709";

/// On the real package (`TASKMOE_WORDNET_DICT`): two extractions are identical, give the
/// pinned fingerprint, and (when the data folder is there) are the files it holds.
#[test]
fn the_real_extraction_is_deterministic_and_pinned() {
    BENCHMARK.assert_extraction_pinned(
        ("TASKMOE_WORDNET_DICT", "the unpacked wordnet-base files"),
        wordnet::extract,
        wordnet::SOURCE_FILE,
        FINGERPRINT,
    );
}
