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

    use taskmoe_data::{Label, TaskRegistry, TaskSpec};

    /// A real-text benchmark as its tests know it: its name (`configs/<name>/`, `cargo xtask
    /// fetch-data <name>`), a task whose training split shows the data is built, and the
    /// variable by which `cargo xtask test` promises the data.
    pub struct Benchmark {
        /// The benchmark's name.
        pub name: &'static str,
        /// A task of its registry.
        pub first_task: &'static str,
        /// Set (by `cargo xtask test`) when the data must be there.
        pub data_variable: &'static str,
    }

    impl Benchmark {
        /// The committed registry (`configs/<name>/tasks.toml`).
        pub fn registry_path(&self) -> PathBuf {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../configs")
                .join(self.name)
                .join("tasks.toml")
        }

        /// The registry when its files are there (the first task's training split shows it);
        /// `None` (after saying why) when they are not and `cargo xtask test` did not promise
        /// them.
        pub fn registry(&self) -> Option<TaskRegistry> {
            let registry = TaskRegistry::from_toml_file(&self.registry_path())
                .expect("the committed registry");
            let first = registry
                .split_path(self.first_task, "train")
                .unwrap()
                .clone();
            if !first.exists() {
                assert!(
                    std::env::var_os(self.data_variable).is_none(),
                    "{} is set but {} is missing",
                    self.data_variable,
                    first.display()
                );
                eprintln!(
                    "skipped: {} is missing (`cargo xtask fetch-data {}`)",
                    first.display(),
                    self.name
                );
                return None;
            }
            Some(registry)
        }

        /// Two extractions by `extract` of the input named by variable `input` (what it
        /// holds: `what`; the test is skipped when it is not set) are identical, name
        /// `fingerprint` in their `source_file`, and (when the data folder is there) are the
        /// files it holds.
        pub fn assert_extraction_pinned<E: std::fmt::Debug>(
            &self,
            (input, what): (&str, &str),
            extract: impl Fn(&Path) -> Result<BTreeMap<String, String>, E>,
            source_file: &str,
            fingerprint: &str,
        ) {
            let Some(input) = std::env::var_os(input).map(PathBuf::from) else {
                eprintln!("skipped: {input} ({what}) is not set");
                return;
            };
            let first = extract(&input).unwrap();
            assert_eq!(first, extract(&input).unwrap());
            let source = &first[source_file];
            assert!(source.contains(fingerprint), "{source}");
            if self.registry().is_some() {
                let data = self.registry_path().with_file_name("data");
                for (rel, text) in &first {
                    let written = std::fs::read_to_string(data.join(rel)).unwrap();
                    assert!(
                        &written == text,
                        "{} is not what the builder writes: `cargo xtask fetch-data {}`",
                        data.join(rel).display(),
                        self.name
                    );
                }
            }
        }
    }

    /// The examples of `spec`'s `split`, none skipped, as (id, first text, label name).
    pub fn read_named(
        registry: &TaskRegistry,
        spec: &TaskSpec,
        split: &str,
    ) -> Vec<(String, String, String)> {
        let report = registry.read_split(&spec.name, split).unwrap();
        assert!(report.skipped.is_empty());
        report
            .examples
            .into_iter()
            .map(|e| {
                let label = match e.label {
                    Label::Class(c) => spec.labels[c as usize].clone(),
                    other => panic!("{}: label {other:?}", spec.name),
                };
                (e.source_id.expect("an id field"), e.text_a, label)
            })
            .collect()
    }
}
