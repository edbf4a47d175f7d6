//! The Python docstring benchmark through the `taskmoe` command: `taskmoe train` reads it
//! through its run configuration (`configs/pydocs-minilm-frozen.toml` ->
//! `configs/pydocs/tasks.toml` -> `configs/pydocs/data/`), here with a tiny random model and
//! MiniLM's tokenizer for two steps; `taskmoe data check` reads every split; the experiment
//! settings (`configs/experiments/pydocs-frozen.toml`) name tasks in the roles they were built
//! for.
//!
//! The data comes from `cargo xtask fetch-data pydocs`; `cargo xtask test` writes it and sets
//! `TASKMOE_PYDOCS_DATA`, so there the tests must find it. Elsewhere, without the files, they
//! say so and pass; the settings test needs no data.

use std::path::Path;
use std::process::Command;

use crate::common::minilm;

/// Whether the docstring data files are there; without them (and without
/// `TASKMOE_PYDOCS_DATA`, which says they must be) a test says it skips.
fn pydocs_data(root: &Path) -> bool {
    let first = root.join("configs/pydocs/data/internet_hi/train.tsv");
    if !first.exists() {
        assert!(
            std::env::var_os("TASKMOE_PYDOCS_DATA").is_none(),
            "TASKMOE_PYDOCS_DATA is set but {} is missing",
            first.display()
        );
        eprintln!(
            "skipped: {} is missing (`cargo xtask fetch-data pydocs`)",
            first.display()
        );
        return false;
    }
    true
}

#[test]
fn train_reads_the_pydocs_registry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !pydocs_data(&root) {
        return;
    }
    let out = std::env::temp_dir().join(format!("taskmoe-cli-{}-pydocs", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let tokenizer = minilm().join("tokenizer.json");
    let sets = [
        "model.preset=tiny".to_string(),
        "model.vocab_size=30522".into(),
        "model.max_position=64".into(),
        format!("data.tokenizer={}", tokenizer.display()),
        "data.batch_size=8".into(),
        "train.steps=2".into(),
        "runtime.threads=1".into(),
        format!("runtime.cache_dir={}", out.join("cache").display()),
        "schedule.warmup_steps=1".into(),
        "eval.every=0".into(),
        "checkpoint.every=2".into(),
        "eval.batch_size=256".into(),
        format!("output.dir={}", out.display()),
        "output.name=pydocs".into(),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskmoe"));
    cmd.arg("train")
        .arg("--config")
        .arg(root.join("configs/pydocs-minilm-frozen.toml"));
    for s in &sets {
        cmd.arg("--set").arg(s);
    }
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("6 training tasks"), "{stderr}");
    assert!(!stderr.contains("warning:"), "rows skipped: {stderr}");
    // The final table scores the six related training tasks on their 120-example test splits,
    // against a majority baseline of 1/3 (every label equally often).
    for task in [
        "internet_hi",
        "tooling_hi",
        "system_hi",
        "internet_lo",
        "tooling_lo",
        "system_lo",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(task))
            .unwrap_or_else(|| panic!("{task}: {stdout}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "120", "{row}");
        assert_eq!(cells[4], "0.333", "{row}");
    }
    for absent in ["internet_new", "doc_kind", "arity"] {
        assert!(!stdout.contains(absent), "{absent} trained: {stdout}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// `taskmoe data check` on the docstring run configuration: every split of the 11 tasks is
/// read whole, with no bad row and no input in two splits (the builder splits by text); the
/// only warnings are the few summaries cut at the configured length.
#[test]
fn data_check_passes_on_the_pydocs_registry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !pydocs_data(&root) {
        return;
    }
    let tokenizer = format!(
        "data.tokenizer={}",
        minilm().join("tokenizer.json").display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_taskmoe"))
        .args(["data", "check", "--config"])
        .arg(root.join("configs/pydocs-minilm-frozen.toml"))
        .args(["--set", &tokenizer])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("task "))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 33, "11 tasks x 3 splits: {stdout}");
    for row in &rows {
        let bad = row.iter().position(|c| c.contains('=')).unwrap() - 1;
        assert_eq!(row[bad], "0", "a bad row: {row:?}");
        assert_eq!(row[row.len() - 1], "0", "an input in two splits: {row:?}");
    }
    assert!(stdout.contains("\n0 errors, "), "{stdout}");
    for line in stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("warning"))
    {
        assert!(line.contains("are cut to it"), "{line}");
    }
}

/// The frozen-bottom experiment settings name tasks of the registry in the roles the protocol
/// gives them, as WordNet's do (`wordnet.rs`): claim 1's mixture is the base mixture plus the
/// unrelated tasks, the low-resource tasks are the three `_lo`, the unseen tasks the three
/// held-out `_new`, the robustness experiment adds the two unrelated tasks (families of their
/// own) to exactly the base mixture; the seeds, evaluations and arms are WordNet's. Needs no
/// data.
#[test]
fn the_experiment_settings_fit_the_registry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let registry =
        taskmoe_data::TaskRegistry::from_toml_file(&root.join("configs/pydocs/tasks.toml"))
            .unwrap();
    let scratch = std::env::temp_dir().join(format!("taskmoe-cli-{}-pdexp", std::process::id()));
    let load = |file: &str| {
        taskmoe_experiments::ExperimentConfig::load(
            taskmoe_experiments::Profile::Quick,
            Some(&root.join("configs/experiments").join(file)),
            &[],
            &["data.tokenizer=tokenizer.json".to_string()],
            &scratch.join(file),
        )
        .unwrap()
    };
    let loaded = load("pydocs-frozen.toml");
    let s = &loaded.settings;
    let base = &loaded.run.data.tasks;
    let names = |suffix: &str| -> Vec<String> {
        ["internet", "tooling", "system"]
            .map(|f| format!("{f}_{suffix}"))
            .to_vec()
    };
    let mut related = names("hi");
    related.extend(names("lo"));
    assert_eq!(base, &related);
    assert_eq!(&s.unrelated.base_tasks, base);
    assert_eq!(s.unrelated.new_tasks, ["doc_kind", "arity"]);
    let mut mixture = base.clone();
    mixture.extend(s.unrelated.new_tasks.iter().cloned());
    assert_eq!(
        s.low_resource.mixture, mixture,
        "claim 1 trains on all eight"
    );
    assert_eq!(s.low_resource.tasks, names("lo"));
    assert_eq!(s.unseen.tasks, names("new"));
    for t in base {
        assert!(!registry.get(t).unwrap().held_out, "{t}");
    }
    for t in &s.unseen.tasks {
        assert!(registry.get(t).unwrap().held_out, "{t}");
    }
    for t in &s.unrelated.new_tasks {
        let family = &registry.get(t).unwrap().family;
        assert!(
            base.iter()
                .all(|b| &registry.get(b).unwrap().family != family),
            "{t} shares a family with the base mixture"
        );
    }
    // The low-resource and k-shot cuts fit the 45-example pools.
    for t in s.low_resource.tasks.iter().chain(&s.unseen.tasks) {
        let pool = registry.read_split(t, "train").map(|r| r.examples.len());
        let need = s
            .low_resource
            .sizes
            .iter()
            .chain(&s.unseen.k)
            .max()
            .unwrap();
        if let Ok(n) = pool {
            assert!(n >= *need, "{t}: {n} training examples, {need} wanted");
        }
    }
    // The structure is WordNet's frozen-bottom profile's.
    let wordnet = load("wordnet-frozen.toml").settings;
    assert_eq!(
        (s.seeds, s.tuning_seeds, s.evals_per_run),
        (20, 1, wordnet.evals_per_run)
    );
    assert_eq!(s.evals_per_run, 5);
    assert_eq!(s.low_resource.variants, wordnet.low_resource.variants);
    assert_eq!(
        s.low_resource.variants,
        [
            "single-task",
            "dense",
            "task-dense",
            "token-moe",
            "task-moe"
        ]
    );
    assert_eq!(s.unrelated.variants, ["dense", "task-dense", "task-moe"]);
    assert_eq!(s.unrelated.variants, wordnet.unrelated.variants);
    assert_eq!(
        (&s.low_resource.sizes, &s.unseen.k),
        (&wordnet.low_resource.sizes, &wordnet.unseen.k)
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
