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

use taskmoe_data::wordnet;

mod realtext;

const USAGE: &str = "usage: wordnet DICT OUT [--registry FILE] [--write-registry] [--quiet]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = realtext::Args::parse(USAGE, |_, _| Ok(false))?;
    args.sync_registry(wordnet::registry_toml(), "wordnet", USAGE)?;
    let files = wordnet::extract(&args.input)?;
    args.write_data(&files, wordnet::SOURCE_FILE)
}
