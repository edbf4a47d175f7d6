//! The integration tests of taskmoe-data, one module per area, linked as one test binary
//! (`cargo test -p taskmoe-data --test data`): libtorch is linked once, not once per file.
//!
//! The modules share a process, so none may change process-global state another relies on:
//! no test sets environment variables, intra-op threads or libtorch's global RNG (the crate's
//! randomness is counter-based, [`taskmoe_data::rng`]), and every test that writes files uses a
//! temporary folder of its own name. Fixtures live in `tests/fixtures/`.

mod check;
mod files;
mod mixture;
mod pydocs;
mod pydocs_scan;
mod readers;
mod sampler;
mod synthetic;
mod synthetic_v2;
mod tokenize;
mod wordnet;
mod realtext {
    //! What the real-text benchmarks' tests share.

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use taskmoe_data::TaskRegistry;

    /// The committed registry of benchmark `name` (`configs/<name>/tasks.toml`).
    pub fn registry_path(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs")
            .join(name)
            .join("tasks.toml")
    }

    /// Benchmark `name`'s registry when its files are there (`first_task`'s training split
    /// shows it); `None` (after saying why) when they are not and `cargo xtask test` did not
    /// promise them by setting `variable`.
    pub fn built_registry(name: &str, first_task: &str, variable: &str) -> Option<TaskRegistry> {
        let registry =
            TaskRegistry::from_toml_file(&registry_path(name)).expect("the committed registry");
        let first = registry.split_path(first_task, "train").unwrap().clone();
        if !first.exists() {
            assert!(
                std::env::var_os(variable).is_none(),
                "{variable} is set but {} is missing",
                first.display()
            );
            eprintln!(
                "skipped: {} is missing (`cargo xtask fetch-data {name}`)",
                first.display()
            );
            return None;
        }
        Some(registry)
    }

    /// Two extractions of `input` by `extract` are identical, name `fingerprint` in their
    /// `source_file`, and (when `data` is given: the benchmark's data folder is there) are
    /// the files it holds; `benchmark` names the `cargo xtask fetch-data` that writes them.
    pub fn assert_extraction_pinned<E: std::fmt::Debug>(
        input: &Path,
        extract: impl Fn(&Path) -> Result<BTreeMap<String, String>, E>,
        source_file: &str,
        fingerprint: &str,
        data: Option<&Path>,
        benchmark: &str,
    ) {
        let first = extract(input).unwrap();
        assert_eq!(first, extract(input).unwrap());
        let source = &first[source_file];
        assert!(source.contains(fingerprint), "{source}");
        if let Some(data) = data {
            for (rel, text) in &first {
                let written = std::fs::read_to_string(data.join(rel)).unwrap();
                assert!(
                    &written == text,
                    "{} is not what the builder writes: `cargo xtask fetch-data {benchmark}`",
                    data.join(rel).display()
                );
            }
        }
    }
}
