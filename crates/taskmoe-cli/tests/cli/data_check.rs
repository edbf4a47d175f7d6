//! `taskmoe data check`: a data set with planted errors fails naming each one (file, line,
//! field) under the per-task table; the GLUE example and the synthetic benchmark pass.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{minilm, scratch, taskmoe, text, write};

fn data_check(args: &[&str]) -> Output {
    let mut all = vec!["data", "check"];
    all.extend_from_slice(args);
    taskmoe(&all)
}

/// A run configuration over a registry of two tasks with planted errors: `nli/train.tsv` has
/// an unknown label on line 3 and an input cut at 16 tokens on line 4, `nli/dev.tsv` is
/// missing, `nli/test.tsv` line 2 repeats training line 2, and `sent/train.jsonl` line 2 has
/// no `sentence`.
fn planted(dir: &Path) -> PathBuf {
    write(
        dir,
        "vocab.txt",
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\na\ncat\ndog\nsleeps\nplays\nmusic\n",
    );
    // taskmoe-data's data-check registry without `sent`'s validation split, so that the
    // registry itself draws a warning.
    let registry = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../taskmoe-data/tests/fixtures/check/tasks.toml"),
    )
    .unwrap();
    let without_dev = registry.replace("validation = \"sent/dev.jsonl\"\n", "");
    assert_ne!(without_dev, registry, "the fixture declares sent/dev.jsonl");
    write(dir, "data/tasks.toml", &without_dev);
    let long = "the cat plays music ".repeat(5);
    write(
        dir,
        "data/nli/train.tsv",
        &format!(
            "premise\thypothesis\tlabel\n\
             the cat sleeps\tthe dog sleeps\tyes\n\
             a cat plays\ta dog plays\tperhaps\n\
             {long}\tmusic\tno\n"
        ),
    );
    write(
        dir,
        "data/nli/test.tsv",
        "premise\thypothesis\tlabel\nthe cat sleeps\tthe dog sleeps\tyes\n",
    );
    write(
        dir,
        "data/sent/train.jsonl",
        "{\"sentence\": \"the cat\", \"label\": \"pos\"}\n{\"label\": \"neg\"}\n\
         {\"sentence\": \"a dog\", \"label\": \"neg\"}\n",
    );
    // Paths in a run configuration are relative to it.
    write(
        dir,
        "run.toml",
        "[data]\nsource = \"registry\"\nregistry = \"data/tasks.toml\"\n\
         tokenizer = \"vocab.txt\"\nseq_len = 16\n",
    );
    dir.join("run.toml")
}

#[test]
fn planted_errors_fail_with_the_table_and_each_place_named() {
    let dir = scratch("data-check");
    let config = planted(&dir);
    let output = data_check(&["--config", config.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(stderr.contains("the data has 3 errors"), "{stderr}");
    // The table: a row per split, the missing one not read, the counts of the good rows.
    let row = |task: &str, split: &str| {
        stdout
            .lines()
            .find(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.first() == Some(&task) && cells.get(2) == Some(&split)
                    || task.is_empty() && cells.first() == Some(&split)
            })
            .unwrap_or_else(|| panic!("no row {task} {split}: {stdout}"))
            .to_string()
    };
    let header = stdout.lines().find(|l| l.starts_with("task")).unwrap();
    for column in [
        "examples",
        "bad",
        "labels",
        "tokens min/mean/max",
        "> 16",
        "repeated",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let train: Vec<String> = row("nli", "train")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(
        &train[..5],
        ["nli", "trained", "train", "2", "1"],
        "{train:?}"
    );
    assert!(row("", "validation").contains("not read"), "{stdout}");
    assert!(
        row("", "test").trim_end().ends_with(" 1"),
        "one input repeated: {stdout}"
    );
    // The problems, task by task, each with file, line and field.
    for expected in [
        "task `nli` (2 errors, 2 warnings):",
        "nli/train.tsv:3: field `label`: unknown label `perhaps`",
        "nli/dev.tsv: the file does not exist",
        "nli/test.tsv:2: field `premise, hypothesis`: 1 example repeats an input of the `train` split",
        "nli/train.tsv:4: 1 of 2 examples (50.0%) are longer than 16 tokens",
        "task `sent` (1 error, 1 warning):",
        "sent/train.jsonl:2: field `sentence`: missing field",
        "3 errors, 3 warnings",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
    // A warning of the registry's: `sent` declares no validation split.
    assert!(stdout.contains("no `validation` split"), "{stdout}");

    // At most N problems per task are printed; the rest are counted.
    let output = data_check(&["--config", config.to_str().unwrap(), "--max-problems", "1"]);
    let (stdout, _) = text(&output);
    assert!(
        stdout.contains("... and 3 more") && stdout.contains("... and 1 more"),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_glue_example_and_the_synthetic_benchmark_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let registry = format!(
        "data.registry={}",
        root.join("configs/glue-example/tasks.toml").display()
    );
    let tokenizer = format!(
        "data.tokenizer={}",
        minilm().join("tokenizer.json").display()
    );
    let output = data_check(&[
        "--set",
        "data.source=registry",
        "--set",
        &registry,
        "--set",
        &tokenizer,
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}\n{stdout}");
    for task in ["rte", "sst2", "stsb"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(task)),
            "{task}: {stdout}"
        );
    }
    // dev.tsv is validation and test; the STS-B example's dev rows are copies of training rows,
    // which is a warning, not an error.
    assert!(stdout.contains("= validation"), "{stdout}");
    assert!(stdout.contains("0 errors, 1 warning"), "{stdout}");

    let output = data_check(&[]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}\n{stdout}");
    assert!(stdout.contains("the synthetic benchmark") && stdout.contains("no files to check"));
    assert!(stdout.contains("lexicon_hi0"), "{stdout}");
}
