//! `cargo xtask fetch-data wordnet`: provisions the WordNet gloss benchmark. The benchmark
//! itself (parsing, splits, tasks, files, registry) is built by `taskmoe_data::wordnet`
//! (`crates/taskmoe-data/src/wordnet/`, docs/realtext.md); this module only fetches its input
//! and runs it:
//!
//! 1. `apt-get download wordnet-base=1:3.0-37` (pinned; apt checks the package against the
//!    signed archive index, this checks its SHA-256 too) into `<cache>/debs/`, once;
//! 2. `dpkg-deb -x` into a temporary folder, keeping `data.{noun,verb,adj,adv}` in
//!    `<cache>/data/wordnet-base_3.0-37/`, once;
//! 3. the data crate's `wordnet` example on that folder (built with the workspace's examples,
//!    against the provisioned libtorch, which the data crate links), which writes
//!    `configs/wordnet/data/` when its files
//!    differ from what the rules give, and checks (or with `--write-registry` rewrites)
//!    `configs/wordnet/tasks.toml`.
//!
//! xtask stays dependency-free (it must build before libtorch exists), so it calls the data
//! crate through that example rather than linking it ([`crate::data::run_builder`]); the
//! package pins below repeat those of `taskmoe_data::wordnet`, and a test checks that they
//! agree.

use std::fs;
use std::path::PathBuf;

use crate::data::{install_unpacked, RealText};
use crate::debian::{ensure_deb, Deb};
use crate::project;
use crate::Result;

/// The Debian package the text comes from (`taskmoe_data::wordnet::PACKAGE`).
const PACKAGE: &str = "wordnet-base";
/// Its pinned version, Debian bookworm (`taskmoe_data::wordnet::VERSION`).
const VERSION: &str = "1:3.0-37";
/// The name the cached package gets (`taskmoe_data::wordnet::DEB_NAME`).
const DEB_NAME: &str = "wordnet-base_3.0-37_all.deb";
/// SHA-256 of that package (`taskmoe_data::wordnet::DEB_SHA256`).
const DEB_SHA256: &str = "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752";
/// Where the data files sit inside the package.
const DICT_IN_DEB: &str = "usr/share/wordnet";
/// The data files the builder reads (`taskmoe_data::wordnet::Pos::file`).
const DATA_FILES: [&str; 4] = ["data.noun", "data.verb", "data.adj", "data.adv"];
/// Marks a complete unpacked folder; holds the package's SHA-256.
const STAMP_FILE: &str = "taskmoe-data.stamp";
/// The package, as [`ensure_deb`] fetches it.
const DEB: Deb = Deb {
    package: PACKAGE,
    version: VERSION,
    file: DEB_NAME,
    sha256: DEB_SHA256,
    size: "6.5 MB",
};

/// The benchmark: its input is the unpacked `dict` folder.
pub const BENCHMARK: RealText = RealText {
    name: "wordnet",
    input: ensure_dict,
};

/// The folder of the unpacked data files, `<cache>/data/wordnet-base_3.0-37/`, made once.
pub fn ensure_dict() -> Result<PathBuf> {
    let cache = project::cache_dir()?;
    let data = cache.join("data");
    let dict = data.join(DEB_NAME.trim_end_matches("_all.deb"));
    let stamp = dict.join(STAMP_FILE);
    if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == DEB_SHA256) {
        return Ok(dict);
    }
    let deb = ensure_deb(&cache.join("debs"), &DEB)?;
    install_unpacked(
        std::slice::from_ref(&deb),
        &dict,
        (STAMP_FILE, DEB_SHA256),
        |unpacked, tmp| {
            let fresh = tmp.join("dict");
            fs::create_dir_all(&fresh)
                .map_err(|e| format!("cannot create {}: {e}", fresh.display()))?;
            for file in DATA_FILES {
                let from = unpacked.join(DICT_IN_DEB).join(file);
                fs::rename(&from, fresh.join(file))
                    .map_err(|e| format!("{} lacks {}: {e}", deb.display(), from.display()))?;
            }
            Ok(fresh)
        },
    )?;
    Ok(dict)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pins here must be those the data crate writes into `SOURCE.txt`.
    #[test]
    fn the_package_pins_are_the_data_crates() {
        let dir = project::root().join("crates/taskmoe-data/src/wordnet");
        let read = |file: &str| fs::read_to_string(dir.join(file)).unwrap();
        let module = read("mod.rs");
        for (name, value) in [
            ("PACKAGE", PACKAGE),
            ("VERSION", VERSION),
            ("DEB_NAME", DEB_NAME),
            ("DEB_SHA256", DEB_SHA256),
        ] {
            let line = format!("pub const {name}: &str = \"{value}\";");
            assert!(module.contains(&line), "mod.rs lacks `{line}`");
        }
        let tasks = read("tasks.rs");
        for file in DATA_FILES {
            assert!(
                tasks.contains(&format!("=> \"{file}\",")),
                "tasks.rs lacks {file}"
            );
        }
    }
}
