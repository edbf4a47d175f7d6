//! What the real-text benchmarks' CLI tests (`wordnet.rs`, `pydocs.rs`) share: whether a
//! benchmark's data is there, a two-step `taskmoe train` with a tiny model and MiniLM's
//! tokenizer whose final table is checked, `taskmoe data check` on the whole registry, and the
//! roles the experiment settings give the registry's tasks.

use std::path::Path;
use std::process::Command;

use taskmoe_data::TaskRegistry;
use taskmoe_experiments::{ExperimentConfig, Loaded, Profile};

use crate::common::minilm;

/// One real-text benchmark as its tests see it.
pub struct Benchmark {
    /// `wordnet` or `pydocs`: `configs/<name>/data/`, `cargo xtask fetch-data <name>`.
    pub name: &'static str,
    /// A task whose `train.tsv` shows the data was built.
    pub first_task: &'static str,
    /// The variable `cargo xtask test` sets when it built the data (then it must be there).
    pub variable: &'static str,
    /// The run configuration under `configs/`.
    pub config: &'static str,
    /// `model.max_position` of the tiny model (the configuration's `seq_len`).
    pub max_position: usize,
    /// The six training tasks of the configuration.
    pub training: [&'static str; 6],
    /// Test examples per training task.
    pub test_examples: usize,
    /// Tasks of the registry the configuration does not train.
    pub untrained: [&'static str; 3],
}

impl Benchmark {
    /// The repository root.
    pub fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Whether the data files are there; without them (and without the variable, which says
    /// they must be) a test says it skips.
    pub fn has_data(&self) -> bool {
        let first = Self::root()
            .join("configs")
            .join(self.name)
            .join("data")
            .join(self.first_task)
            .join("train.tsv");
        if !first.exists() {
            assert!(
                std::env::var_os(self.variable).is_none(),
                "{} is set but {} is missing",
                self.variable,
                first.display()
            );
            eprintln!(
                "skipped: {} is missing (`cargo xtask fetch-data {}`)",
                first.display(),
                self.name
            );
            return false;
        }
        true
    }

    /// `taskmoe train` for two steps with a tiny random model (frozen states cached in the
    /// run's scratch folder): it succeeds without skipping a row, trains the six tasks, and its
    /// final table scores each on its whole test split against a majority baseline of 1/3
    /// (balanced labels) and names none of the untrained tasks.
    pub fn train_two_steps(&self) {
        if !self.has_data() {
            return;
        }
        let out =
            std::env::temp_dir().join(format!("taskmoe-cli-{}-{}", std::process::id(), self.name));
        let _ = std::fs::remove_dir_all(&out);
        let tokenizer = minilm().join("tokenizer.json");
        let sets = [
            "model.preset=tiny".to_string(),
            "model.vocab_size=30522".into(),
            format!("model.max_position={}", self.max_position),
            format!("data.tokenizer={}", tokenizer.display()),
            "data.batch_size=8".into(),
            "train.steps=2".into(),
            "runtime.threads=1".into(),
            "schedule.warmup_steps=1".into(),
            "eval.every=0".into(),
            "checkpoint.every=2".into(),
            "eval.batch_size=256".into(),
            format!("output.dir={}", out.display()),
            format!("output.name={}", self.name),
            format!("runtime.cache_dir={}", out.join("cache").display()),
        ];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskmoe"));
        cmd.arg("train")
            .arg("--config")
            .arg(Self::root().join("configs").join(self.config));
        for s in &sets {
            cmd.arg("--set").arg(s);
        }
        let output = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("6 training tasks"), "{stderr}");
        assert!(!stderr.contains("warning:"), "rows skipped: {stderr}");
        for task in self.training {
            let row = stdout
                .lines()
                .find(|l| l.starts_with(task))
                .unwrap_or_else(|| panic!("{task}: {stdout}"));
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cells[1], self.test_examples.to_string(), "{row}");
            assert_eq!(cells[4], "0.333", "{row}");
        }
        for absent in self.untrained {
            assert!(!stdout.contains(absent), "{absent} trained: {stdout}");
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// `taskmoe data check` on `config` (under `configs/`) with MiniLM's tokenizer: every
    /// split of the 11 tasks is read whole, with no bad row and no input in two splits; the
    /// only warnings are inputs cut at the configured length.
    pub fn data_check_is_clean(&self, config: &str) {
        if !self.has_data() {
            return;
        }
        let tokenizer = format!(
            "data.tokenizer={}",
            minilm().join("tokenizer.json").display()
        );
        let output = Command::new(env!("CARGO_BIN_EXE_taskmoe"))
            .args(["data", "check", "--config"])
            .arg(Self::root().join("configs").join(config))
            .args(["--set", &tokenizer])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}\n{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The table: the lines after its header up to the first blank line, one per split.
        let rows: Vec<Vec<&str>> = stdout
            .lines()
            .skip_while(|l| !l.starts_with("task "))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows.len(), 33, "11 tasks x 3 splits: {stdout}");
        for row in &rows {
            // ... bad, labels..., tokens min / mean / max, > seq_len, repeated
            let bad = row.iter().position(|c| c.contains('=')).unwrap() - 1;
            assert_eq!(row[bad], "0", "a bad row: {row:?}");
            assert_eq!(
                row[row.len() - 1],
                "0",
                "an input repeated across splits: {row:?}"
            );
        }
        assert!(stdout.contains("\n0 errors, "), "{stdout}");
        for line in stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("warning"))
        {
            assert!(line.contains("are cut to it"), "{line}");
        }
    }

    /// The experiment settings `file` (under `configs/experiments/`, quick profile, tokenizer
    /// left unread) with the benchmark's registry, after checking the roles the protocol
    /// gives the tasks: claim 1's mixture is the base mixture plus the unrelated tasks, the
    /// robustness experiment adds the unrelated tasks (families of their own) to exactly the
    /// base mixture, the unseen tasks are held out and the base tasks are not. Needs no data.
    pub fn experiment_roles(&self, file: &str) -> (TaskRegistry, Loaded) {
        let registry = TaskRegistry::from_toml_file(
            &Self::root().join(format!("configs/{}/tasks.toml", self.name)),
        )
        .unwrap();
        let scratch = std::env::temp_dir().join(format!(
            "taskmoe-cli-{}-{}-roles-{file}",
            std::process::id(),
            self.name
        ));
        let loaded = ExperimentConfig::load(
            Profile::Quick,
            Some(&Self::root().join("configs/experiments").join(file)),
            &[],
            &["data.tokenizer=tokenizer.json".to_string()],
            &scratch,
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&scratch);
        let s = &loaded.settings;
        let base = &loaded.run.data.tasks;
        assert_eq!(&s.unrelated.base_tasks, base, "{file}");
        let mut mixture = base.clone();
        mixture.extend(s.unrelated.new_tasks.iter().cloned());
        assert_eq!(
            s.low_resource.mixture, mixture,
            "{file}: claim 1 trains on the related and the unrelated tasks"
        );
        for t in base {
            assert!(!registry.get(t).unwrap().held_out, "{file}: {t}");
        }
        for t in &s.unseen.tasks {
            assert!(registry.get(t).unwrap().held_out, "{file}: {t}");
        }
        for t in &s.unrelated.new_tasks {
            let family = &registry.get(t).unwrap().family;
            assert!(
                base.iter()
                    .all(|b| &registry.get(b).unwrap().family != family),
                "{file}: {t} shares a family with the base mixture"
            );
        }
        (registry, loaded)
    }
}
