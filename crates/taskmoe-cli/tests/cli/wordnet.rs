//! `taskmoe train` reads the WordNet gloss benchmark through its run configuration
//! (`configs/wordnet-minilm.toml` -> `configs/wordnet/tasks.toml` -> `configs/wordnet/data/`),
//! here with a tiny random model and MiniLM's tokenizer for two steps.
//!
//! The data comes from `cargo xtask fetch-data wordnet`; `cargo xtask test` writes it and sets
//! `TASKMOE_WORDNET_DATA`, so there the test must find it. Elsewhere, without the files, it
//! says so and passes.

use std::path::Path;
use std::process::Command;

use crate::common::minilm;

/// Whether the WordNet data files are there; without them (and without
/// `TASKMOE_WORDNET_DATA`, which says they must be) a test says it skips.
fn wordnet_data(root: &Path) -> bool {
    let first = root.join("configs/wordnet/data/living_hi/train.tsv");
    if !first.exists() {
        assert!(
            std::env::var_os("TASKMOE_WORDNET_DATA").is_none(),
            "TASKMOE_WORDNET_DATA is set but {} is missing",
            first.display()
        );
        eprintln!(
            "skipped: {} is missing (`cargo xtask fetch-data wordnet`)",
            first.display()
        );
        return false;
    }
    true
}

#[test]
fn train_reads_the_wordnet_registry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !wordnet_data(&root) {
        return;
    }
    let out = std::env::temp_dir().join(format!("taskmoe-cli-{}-wordnet", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = root.join("configs/wordnet-minilm.toml");
    let tokenizer = minilm().join("tokenizer.json");
    let sets = [
        "model.preset=tiny".to_string(),
        "model.vocab_size=30522".into(),
        "model.max_position=24".into(),
        format!("data.tokenizer={}", tokenizer.display()),
        "data.batch_size=8".into(),
        "train.steps=2".into(),
        "runtime.threads=1".into(),
        "schedule.warmup_steps=1".into(),
        "eval.every=0".into(),
        "checkpoint.every=2".into(),
        "eval.batch_size=256".into(),
        format!("output.dir={}", out.display()),
        "output.name=wordnet".into(),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskmoe"));
    cmd.arg("train").arg("--config").arg(&config);
    for s in &sets {
        cmd.arg("--set").arg(s);
    }
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("6 training tasks"), "{stderr}");
    assert!(!stderr.contains("warning:"), "rows skipped: {stderr}");
    // The final table scores the six related training tasks on their 750-example test splits,
    // against a majority baseline of 1/3 (every label equally often).
    for task in [
        "living_hi",
        "physical_hi",
        "abstract_hi",
        "living_lo",
        "physical_lo",
        "abstract_lo",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(task))
            .unwrap_or_else(|| panic!("{task}: {stdout}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "750", "{row}");
        assert_eq!(cells[4], "0.333", "{row}");
    }
    for absent in ["living_new", "verb_sense", "word_class"] {
        assert!(!stdout.contains(absent), "{absent} trained: {stdout}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// `taskmoe data check` on the WordNet run configuration: every split of the 11 tasks is
/// read whole, with no bad row and no input in two splits (the builder splits by synset and
/// definition); the only warnings are the few definitions cut at the configured length.
#[test]
fn data_check_passes_on_the_wordnet_registry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !wordnet_data(&root) {
        return;
    }
    let tokenizer = format!(
        "data.tokenizer={}",
        minilm().join("tokenizer.json").display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_taskmoe"))
        .args(["data", "check", "--config"])
        .arg(root.join("configs/wordnet-minilm.toml"))
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
        // ... bad, labels..., tokens min / mean / max, > 24, repeated
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

/// The experiment settings (the full fine-tune and the frozen-bottom profile) name tasks of the
/// registry in the roles the protocol gives them: claim 1's mixture is the base mixture plus
/// the unrelated tasks, the unseen tasks are held out of it, the robustness experiment adds
/// the unrelated tasks to exactly the base mixture. Needs no data.
#[test]
fn the_experiment_settings_fit_the_registry() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let registry =
        taskmoe_data::TaskRegistry::from_toml_file(&root.join("configs/wordnet/tasks.toml"))
            .unwrap();
    for file in ["wordnet.toml", "wordnet-frozen.toml"] {
        let scratch =
            std::env::temp_dir().join(format!("taskmoe-cli-{}-wnexp-{file}", std::process::id()));
        let loaded = taskmoe_experiments::ExperimentConfig::load(
            taskmoe_experiments::Profile::Quick,
            Some(&root.join("configs/experiments").join(file)),
            &[],
            &["data.tokenizer=tokenizer.json".to_string()],
            &scratch,
        )
        .unwrap();
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
            assert!(!registry.get(t).unwrap().held_out, "{t}");
        }
        for t in &s.low_resource.tasks {
            assert!(t.ends_with("_lo") && base.contains(t), "{t}");
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
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
