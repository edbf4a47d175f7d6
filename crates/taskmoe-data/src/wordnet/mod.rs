//! The WordNet gloss benchmark: a multi-task benchmark of real text, the glosses (definitions)
//! of WordNet 3.0 as Debian ships them, labelled with their lexicographer file (the
//! supersense: `noun.animal`, `noun.artifact`, `verb.motion`, ...).
//!
//! From the four data files of a WordNet 3.0 `dict` folder (Debian's `wordnet-base` package
//! installs them in `/usr/share/wordnet`; the benchmark is pinned to [`PACKAGE`] [`VERSION`],
//! whose files `cargo xtask fetch-data wordnet` downloads, checks and unpacks), every step
//! deterministic:
//!
//! 1. [`extract`] parses every synset line (its byte offset must be its first field, as WordNet
//!    promises), keeps its definition (the gloss before the first quoted example), drops
//!    definitions shorter than [`MIN_WORDS`] or longer than [`MAX_WORDS`] words and every
//!    definition that two synsets share;
//! 2. puts every synset into one split by a hash of its part of speech and offset (not a
//!    random draw): the same synset, hence the same gloss, is in the same split in every
//!    task, so nothing evaluated was trained on by any task;
//! 3. fills each task of [`TASKS`] with the same number of synsets per label and split, in
//!    hash order. A training synset goes to at most one task (the first in [`TASKS`] order
//!    that asks for its category); validation and test synsets may serve several tasks (they
//!    are never trained on);
//! 4. returns the files `<task>/{train,dev,test}.tsv` (columns `synset`, `gloss`, `label`) and
//!    [`SOURCE_FILE`] (package, SHA-256, rules, per-task sizes, a fingerprint of the files);
//!    [`write_if_changed`] writes them as a folder, replacing it atomically and leaving it
//!    untouched when nothing changed.
//!
//! The registry (`configs/wordnet/tasks.toml` in the repository, whose split paths point at
//! `data/`) is generated from [`TASKS`] too, by [`registry_toml`]. The example
//! `cargo run -p taskmoe-data --example wordnet -- DICT OUT` runs all of it;
//! `docs/realtext.md` explains the task design.

mod build;
mod hash;
mod parse;
mod registry;
mod tasks;
mod write;

pub use build::extract;
pub use registry::registry_toml;
pub use tasks::{Class, Pos, Role, TaskDef, TASKS};
pub use write::write_if_changed;

/// The Debian package the text comes from.
pub const PACKAGE: &str = "wordnet-base";
/// Its pinned version (Debian bookworm).
pub const VERSION: &str = "1:3.0-37";
/// The file name of that package in Debian's archive.
pub const DEB_NAME: &str = "wordnet-base_3.0-37_all.deb";
/// SHA-256 of that package (named in [`SOURCE_FILE`]; `cargo xtask fetch-data wordnet`
/// checks it).
pub const DEB_SHA256: &str = "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752";
/// Bumped whenever the rules change what is written (it is part of [`SOURCE_FILE`]).
pub const RULES: u32 = 1;
/// Definitions with fewer words are dropped (most are bare cross-references: "breath").
pub const MIN_WORDS: usize = 3;
/// Definitions with more words are dropped: 14 words are at most about 22 MiniLM word
/// pieces for nine in ten definitions, so `data.seq_len = 24` truncates few.
pub const MAX_WORDS: usize = 14;
pub use crate::realtext::SPLIT_FILES;
/// The provenance file of the data folder: package, rules, sizes and the fingerprint of the
/// split files.
pub const SOURCE_FILE: &str = "SOURCE.txt";
