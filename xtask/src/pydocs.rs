//! `cargo xtask fetch-data pydocs`: provisions the Python docstring benchmark. The benchmark
//! itself (scanning, splits, tasks, files, registry) is built by `taskmoe_data::pydocs`
//! (`crates/taskmoe-data/src/pydocs/`, docs/pydocs.md); this module only fetches its input and
//! runs it:
//!
//! 1. `apt-get download` of `libpython3.11-minimal` and `libpython3.11-stdlib`
//!    3.11.2-6+deb12u7 (pinned; Debian splits the standard library between the two; apt checks
//!    them against the signed archive index, this checks their SHA-256 too) into
//!    `<cache>/debs/`, once;
//! 2. `dpkg-deb -x` of both into one temporary folder, keeping its `usr/lib/python3.11` as
//!    `<cache>/data/python3.11-stdlib_3.11.2-6+deb12u7/`, once;
//! 3. the data crate's `pydocs` example on that folder, which writes `configs/pydocs/data/`
//!    when its files differ from what the rules give, and checks (or with `--write-registry`
//!    rewrites) `configs/pydocs/tasks.toml`.
//!
//! The package pins below repeat those of `taskmoe_data::pydocs::PACKAGES`; a test checks
//! that they agree.

use std::fs;
use std::path::PathBuf;

use crate::data::{install_unpacked, RealText};
use crate::debian::{ensure_deb, Deb};
use crate::project;
use crate::Result;

/// The packages (`taskmoe_data::pydocs::PACKAGES`), amd64's `.deb` files.
const DEBS: [Deb; 2] = [
    Deb {
        package: "libpython3.11-minimal",
        version: "3.11.2-6+deb12u7",
        file: "libpython3.11-minimal_3.11.2-6+deb12u7_amd64.deb",
        sha256: "099a8e81d82653de6162273bdd79bde668d1dd40594309e71e682a80f175a364",
        size: "0.8 MB",
    },
    Deb {
        package: "libpython3.11-stdlib",
        version: "3.11.2-6+deb12u7",
        file: "libpython3.11-stdlib_3.11.2-6+deb12u7_amd64.deb",
        sha256: "0ac258df74db760dc2ed408491c57880872b8a699625f6a136d15f1fb5b9f7a5",
        size: "1.8 MB",
    },
];

/// Where the library sits inside the packages (`taskmoe_data::pydocs::LIB_DIR`).
const LIB_IN_DEB: &str = "usr/lib/python3.11";
/// The cache folder of the unpacked library.
const LIB_NAME: &str = "python3.11-stdlib_3.11.2-6+deb12u7";
/// Marks a complete unpacked folder; holds the packages' SHA-256, one a line.
const STAMP_FILE: &str = "taskmoe-data.stamp";

/// The benchmark: its input is the unpacked library.
pub const BENCHMARK: RealText = RealText {
    name: "pydocs",
    input: ensure_lib,
};

/// The folder of the unpacked library, `<cache>/data/python3.11-stdlib_3.11.2-6+deb12u7/`,
/// made once.
pub fn ensure_lib() -> Result<PathBuf> {
    let cache = project::cache_dir()?;
    let data = cache.join("data");
    let lib = data.join(LIB_NAME);
    let stamp_text: String = DEBS.iter().map(|d| format!("{}\n", d.sha256)).collect();
    if fs::read_to_string(lib.join(STAMP_FILE)).is_ok_and(|s| s == stamp_text) {
        return Ok(lib);
    }
    let debs = DEBS
        .iter()
        .map(|d| ensure_deb(&cache.join("debs"), d))
        .collect::<Result<Vec<_>>>()?;
    install_unpacked(&debs, &lib, (STAMP_FILE, &stamp_text), |unpacked, _| {
        let fresh = unpacked.join(LIB_IN_DEB);
        if !fresh.join("os.py").exists() || !fresh.join("asyncio").exists() {
            return Err(format!("the packages lack {LIB_IN_DEB}/os.py or asyncio/").into());
        }
        Ok(fresh)
    })?;
    Ok(lib)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pins here must be those the data crate writes into `SOURCE.txt`.
    #[test]
    fn the_package_pins_are_the_data_crates() {
        let module =
            fs::read_to_string(project::root().join("crates/taskmoe-data/src/pydocs/mod.rs"))
                .unwrap();
        for deb in &DEBS {
            for (field, value) in [
                ("name", deb.package),
                ("version", deb.version),
                ("file", deb.file),
                ("sha256", deb.sha256),
            ] {
                let line = format!("{field}: \"{value}\",");
                assert!(module.contains(&line), "pydocs/mod.rs lacks `{line}`");
            }
        }
        let line = format!("pub const LIB_DIR: &str = \"{LIB_IN_DEB}\";");
        assert!(module.contains(&line), "pydocs/mod.rs lacks `{line}`");
    }
}
