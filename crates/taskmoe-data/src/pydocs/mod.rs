//! The Python docstring benchmark: a multi-task benchmark of real text from another source
//! and domain than [`crate::wordnet`]: the first paragraph of the docstrings of Python 3.11's
//! standard library as Debian bookworm ships it, labelled with the area of the package they
//! document (`mail`, `web`, `testing`, `archives`, ...) or with their form (class, function or
//! method; number of parameters).
//!
//! From a Python 3.11 library folder (Debian's [`PACKAGES`] unpacked together: their
//! `usr/lib/python3.11`, which `cargo xtask fetch-data pydocs` downloads, checks and unpacks),
//! every step deterministic and in pure Rust:
//!
//! 1. [`read_tree`] scans every `.py` file (test suites and installed packages left out,
//!    [`SKIPPED_DIRS`]) into logical lines and takes the string literal that starts a module or
//!    the body of a `class`, `def` or `async def` (decorators, multi-line signatures, nested
//!    classes; `r`/`u` prefixes, one and three quotes, escapes decoded), recording module,
//!    top-level package, kind, qualified name, parameter count and the first paragraph. What
//!    it cannot read (a file with a string never closed, a literal followed by more code) is
//!    skipped and counted;
//! 2. [`usable`] keeps summaries of [`MIN_WORDS`] to [`MAX_WORDS`] words, each text once;
//! 3. every text goes into one split by a hash of its text (not a random draw): the same text
//!    is in the same split in every task, so nothing evaluated was trained on by any task;
//! 4. fills each task of [`TASKS`] with the same number of docstrings per label and split, in
//!    hash order. A training text goes to at most one task (the first in [`TASKS`] order that
//!    asks for its label); validation and test texts may serve several tasks;
//! 5. returns the files `<task>/{train,dev,test}.tsv` (columns `id` = `path:line`, `object`,
//!    `docstring`, `label`) and [`SOURCE_FILE`] (packages, SHA-256, rules, what was skipped,
//!    per-label pools, per-task sizes, a fingerprint of the files); [`write_if_changed`]
//!    writes them as a folder, replacing it atomically and leaving it untouched when nothing
//!    changed.
//!
//! The registry (`configs/pydocs/tasks.toml` in the repository, whose split paths point at
//! `data/`) is generated from [`TASKS`] too, by [`registry_toml`]. The example
//! `cargo run -p taskmoe-data --example pydocs -- LIB OUT` runs all of it; `docs/pydocs.md`
//! explains the task design.

mod build;
mod hash;
mod literal;
mod parse;
mod registry;
mod scan;
mod tasks;

/// Writes the files of [`extract`] as a folder, atomically and only when they changed (the
/// WordNet benchmark's writer).
pub use crate::wordnet::write_if_changed;
pub use build::{build, extract, usable};
pub use parse::{module_of, parse_source, read_tree, Docstring, Kind, Scan, SKIPPED_DIRS};
pub use registry::registry_toml;
pub use tasks::{outside_families, Class, Role, Rule, TaskDef, EXCLUDED, TASKS};

/// One Debian package the text comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebPackage {
    /// The package name.
    pub name: &'static str,
    /// Its pinned version (Debian bookworm).
    pub version: &'static str,
    /// The file name of that package in Debian's archive.
    pub file: &'static str,
    /// SHA-256 of that file (named in [`SOURCE_FILE`]; `cargo xtask fetch-data pydocs`
    /// checks it).
    pub sha256: &'static str,
}

/// The packages: Debian splits the standard library of `python3.11` in two, the modules the
/// interpreter needs to start (`os`, `re`, `email`, `pathlib`, `socket`, ...) in
/// `libpython3.11-minimal` and the rest in `libpython3.11-stdlib`; both are unpacked into one
/// folder. The `.deb` files are amd64's (the Python sources in them are the same on every
/// architecture, the packages are not).
pub const PACKAGES: [DebPackage; 2] = [
    DebPackage {
        name: "libpython3.11-minimal",
        version: "3.11.2-6+deb12u7",
        file: "libpython3.11-minimal_3.11.2-6+deb12u7_amd64.deb",
        sha256: "099a8e81d82653de6162273bdd79bde668d1dd40594309e71e682a80f175a364",
    },
    DebPackage {
        name: "libpython3.11-stdlib",
        version: "3.11.2-6+deb12u7",
        file: "libpython3.11-stdlib_3.11.2-6+deb12u7_amd64.deb",
        sha256: "0ac258df74db760dc2ed408491c57880872b8a699625f6a136d15f1fb5b9f7a5",
    },
];
/// Where the library sits inside the packages.
pub const LIB_DIR: &str = "usr/lib/python3.11";
/// Bumped whenever the rules change what is written (it is part of [`SOURCE_FILE`]).
pub const RULES: u32 = 1;
/// Summaries with fewer words are dropped ("Return self.", "Constructor.").
pub const MIN_WORDS: usize = 3;
/// Summaries with more words are dropped (a first paragraph that is a whole description).
pub const MAX_WORDS: usize = 40;
pub use crate::realtext::SPLIT_FILES;
/// The provenance file of the data folder: packages, rules, sizes and the fingerprint of the
/// split files.
pub const SOURCE_FILE: &str = "SOURCE.txt";
