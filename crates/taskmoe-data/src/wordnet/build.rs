//! Building the benchmark's files from parsed synsets: usable definitions, per-label quotas
//! per split, one training task per synset, and `SOURCE.txt` with the fingerprint.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use super::parse::{read_dict, Synset};
use super::tasks::{Class, Pos, TASKS};
use super::{DEB_NAME, DEB_SHA256, MAX_WORDS, MIN_WORDS, PACKAGE, RULES, SOURCE_FILE, VERSION};
use crate::error::{DataError, Result};
use crate::realtext::{split_files, task_table_header, SplitFiles, SplitSource};
use crate::realtext::{DEV_BUCKETS, TRAIN_BUCKETS};

/// Every file of the benchmark's data folder (path relative to it, with `/` separators ->
/// content) from the data files of a WordNet 3.0 `dict` folder: the split files
/// `<task>/{train,dev,test}.tsv` (columns `synset`, `gloss`, `label`) and [`SOURCE_FILE`]. The
/// same data files always give the same bytes. Errors name the file and line of a bad data
/// file, or the task, label and split whose quota the data cannot fill.
pub fn extract(dict: &Path) -> Result<BTreeMap<String, String>> {
    build(&read_dict(dict)?)
}

/// The usable synsets per category (`(pos, lexfile)`) and split, in hash order.
struct Pools<'a>(HashMap<(Pos, u8), [Vec<&'a Synset>; 3]>);

impl<'a> SplitSource<Class> for Pools<'a> {
    type Item = &'a Synset;
    const HEADER: &'static str = "synset\tgloss\tlabel";

    fn pool(&self, c: &Class, split: usize) -> &[&'a Synset] {
        self.0.get(&(c.pos, c.lexfile)).map_or(&[], |p| &p[split])
    }

    fn key(s: &&'a Synset) -> u64 {
        s.key()
    }

    fn order(s: &&'a Synset) -> (u64, u64) {
        s.order()
    }

    fn write_row(text: &mut String, s: &&'a Synset, label: &str) {
        let _ = writeln!(text, "{}\t{}\t{label}", s.id(), s.definition);
    }

    fn too_few(task: &str, c: &Class, split: &str, found: usize, wanted: usize) -> DataError {
        DataError::TooFewSynsets {
            task: task.to_string(),
            label: c.label.to_string(),
            lexname: c.lexname.to_string(),
            split: split.to_string(),
            found,
            wanted,
        }
    }
}

/// The task files and `SOURCE.txt` from parsed synsets.
pub(crate) fn build(synsets: &[Synset]) -> Result<BTreeMap<String, String>> {
    // Definitions two synsets share would put one text in two splits or under two labels.
    let mut uses: HashMap<String, usize> = HashMap::new();
    for s in synsets {
        *uses.entry(s.definition.to_lowercase()).or_default() += 1;
    }
    let usable = |s: &&Synset| {
        let words = s.definition.split(' ').count();
        (MIN_WORDS..=MAX_WORDS).contains(&words) && uses[&s.definition.to_lowercase()] == 1
    };
    // pools[(pos, lexfile)][split]: the usable synsets, in hash order.
    let mut pools: HashMap<(Pos, u8), [Vec<&Synset>; 3]> = HashMap::new();
    let mut usable_count = 0usize;
    for s in synsets.iter().filter(usable) {
        pools.entry((s.pos, s.lexfile)).or_default()[s.split()].push(s);
        usable_count += 1;
    }
    for splits in pools.values_mut() {
        for pool in splits.iter_mut() {
            pool.sort_by_key(|s| s.order());
        }
    }

    let SplitFiles {
        mut files,
        fingerprint,
        table,
    } = split_files(TASKS, 11, &Pools(pools))?;
    let source = format!(
        "WordNet 3.0 definitions from Debian bookworm's {PACKAGE} {VERSION} ({DEB_NAME}, SHA-256 \
         {DEB_SHA256}),\nwritten by `cargo xtask fetch-data wordnet` \
         (crates/taskmoe-data/src/wordnet/, rules v{RULES}: {MIN_WORDS}-{MAX_WORDS} words, no \
         shared definitions, split by synset hash {TRAIN_BUCKETS}/{DEV_BUCKETS}/{}).\nWordNet is \
         (c) Princeton University, under the WordNet 3.0 license (see the package's copyright \
         file).\n{} synsets read, {usable_count} with a definition of their own of {MIN_WORDS}-{MAX_WORDS} words.\nfingerprint \
         {fingerprint:016x}\n\n\
         {}\n{table}",
        100 - TRAIN_BUCKETS - DEV_BUCKETS,
        synsets.len(),
        task_table_header(11)
    );
    files.insert(SOURCE_FILE.to_string(), source);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtext::SPLIT_FILES;
    use std::collections::HashSet;

    /// Synthetic synsets: `n` per category of every task, with distinct definitions.
    fn synthetic(n: u32) -> Vec<Synset> {
        let mut cats: Vec<(Pos, u8)> = TASKS
            .iter()
            .flat_map(|t| t.classes.iter().map(|c| (c.pos, c.lexfile)))
            .collect();
        cats.sort();
        cats.dedup();
        let mut out = Vec::new();
        for (ci, (pos, lexfile)) in cats.into_iter().enumerate() {
            for i in 0..n {
                out.push(Synset {
                    pos,
                    offset: (ci as u32) * 100_000 + i,
                    lexfile,
                    definition: format!("definition {i} of category {ci}"),
                });
            }
        }
        out
    }

    fn parse_rows(text: &str) -> Vec<(String, String, String)> {
        text.lines()
            .skip(1)
            .map(|l| {
                let mut f = l.split('\t');
                let row = (
                    f.next().unwrap().to_string(),
                    f.next().unwrap().to_string(),
                    f.next().unwrap().to_string(),
                );
                assert!(f.next().is_none(), "{l}");
                row
            })
            .collect()
    }

    #[test]
    fn build_is_deterministic_balanced_and_disjoint() {
        let synsets = synthetic(6000);
        let a = build(&synsets).unwrap();
        let mut reversed = synsets.clone();
        reversed.reverse();
        assert_eq!(a, build(&reversed).unwrap(), "input order must not matter");
        let mut split_of: HashMap<String, usize> = HashMap::new();
        let mut trained: HashSet<String> = HashSet::new();
        for task in TASKS {
            for (split, file) in SPLIT_FILES.iter().enumerate() {
                let rows = parse_rows(&a[&format!("{}/{file}.tsv", task.name)]);
                assert_eq!(rows.len(), task.per_class[split] * task.classes.len());
                for c in task.classes {
                    let count = rows.iter().filter(|r| r.2 == c.label).count();
                    assert_eq!(count, task.per_class[split], "{} {file}", task.name);
                }
                for (id, _, _) in &rows {
                    assert_eq!(*split_of.entry(id.clone()).or_insert(split), split, "{id}");
                    if split == 0 {
                        assert!(trained.insert(id.clone()), "{id} trains two tasks");
                    }
                }
            }
        }
    }

    #[test]
    fn a_short_pool_is_an_error_naming_task_label_and_split() {
        let err = build(&synthetic(500)).unwrap_err();
        assert!(
            matches!(&err, DataError::TooFewSynsets { task, label, split, wanted: 1000, .. }
                if task == "living_hi" && label == "animal" && split == "train"),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("task `living_hi`") && text.contains("label `animal`"),
            "{text}"
        );
        assert!(text.contains("train split"), "{text}");
    }
}
