//! Using what was trained, through the `taskmoe` binary: a model trained on a user's JSONL
//! dataset predicts on an unlabeled file from a copied checkpoint folder after the data folder
//! moved; predictions carry source ids and label names; `verify` finds a same-size
//! corruption that `eval` then skips, saying why; skipped data rows are reported; exports; a
//! project copied whole resumes, evaluates, predicts and exports from its own data, and a run
//! folder moved on its own still finds the data where it was.

use std::path::Path;
use std::process::Output;

use crate::common::{fails, ok, ok_with_stderr, on_run, scratch, taskmoe, tiny_config};

/// `taskmoe predict` on `input` from `source` (`--checkpoint DIR` or `--run DIR`), then `rest`.
fn predict(source: (&str, &Path), input: &Path, rest: &[&str]) -> Output {
    let mut args = vec![
        "predict",
        source.0,
        source.1.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(rest);
    taskmoe(&args)
}

fn jsonl(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const WORDS: [&str; 8] = [
    "good", "bad", "fine", "awful", "film", "plot", "very", "not",
];

/// A user's dataset: a sentiment task (labels by name, an id field) and a sentence-pair
/// regression task, JSONL splits, a WordPiece vocabulary; the test split of `sent` has no
/// labels and one training row of `sent` is broken (skipped).
fn write_dataset(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut vocab: Vec<&str> = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    vocab.extend(WORDS);
    std::fs::write(dir.join("vocab.txt"), vocab.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("tasks.toml"),
        r#"
[[tasks]]
name = "sent"
family = "sentiment"
kind = "classification"
labels = ["neg", "pos"]
text_fields = ["text"]
id_field = "uid"
metrics = ["accuracy"]
on_invalid = "skip"
[tasks.splits]
train = "sent/train.jsonl"
validation = "sent/dev.jsonl"
test = "sent/test.jsonl"

[[tasks]]
name = "sim"
family = "similarity"
kind = "regression"
text_fields = ["a", "b"]
metrics = ["pearson"]
[tasks.splits]
train = "sim/train.jsonl"
validation = "sim/dev.jsonl"
test = "sim/dev.jsonl"
"#,
    )
    .unwrap();
    let sentence = |i: usize| {
        (0..4)
            .map(|j| WORDS[(i * 3 + j * 5) % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows = |n: usize, labeled: bool, offset: usize| -> String {
        (0..n)
            .map(|i| {
                let text = sentence(i + offset);
                let mut row =
                    serde_json::json!({ "uid": format!("s-{}", i + offset), "text": text });
                if labeled {
                    row["label"] = if text.contains("good") { "pos" } else { "neg" }.into();
                }
                row.to_string() + "\n"
            })
            .collect()
    };
    std::fs::create_dir_all(dir.join("sent")).unwrap();
    let mut train = rows(24, true, 0);
    train.push_str("{\"uid\": \"broken\", \"text\": \"good film\", \"label\": \"meh\"}\n");
    std::fs::write(dir.join("sent/train.jsonl"), train).unwrap();
    std::fs::write(dir.join("sent/dev.jsonl"), rows(8, true, 100)).unwrap();
    std::fs::write(dir.join("sent/test.jsonl"), rows(6, false, 200)).unwrap();
    std::fs::create_dir_all(dir.join("sim")).unwrap();
    let pairs = |n: usize, offset: usize| -> String {
        (0..n)
            .map(|i| {
                serde_json::json!({
                    "a": sentence(i + offset),
                    "b": sentence(i + offset + 1),
                    "label": (i % 5) as f64,
                })
                .to_string()
                    + "\n"
            })
            .collect()
    };
    std::fs::write(dir.join("sim/train.jsonl"), pairs(16, 0)).unwrap();
    std::fs::write(dir.join("sim/dev.jsonl"), pairs(6, 50)).unwrap();
}

fn train_registry(out: &Path, data: &Path, extra: &[&str]) -> Output {
    let tiny = tiny_config();
    let sets = [
        format!("output.dir={}", out.display()),
        "output.name=user".into(),
        "data.source=registry".into(),
        format!("data.registry={}", data.join("tasks.toml").display()),
        format!("data.tokenizer={}", data.join("vocab.txt").display()),
        "train.steps=4".into(),
        "eval.every=2".into(),
    ];
    let mut args = vec!["train", "--config", tiny.to_str().unwrap()];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    args.extend_from_slice(extra);
    taskmoe(&args)
}

#[test]
fn a_model_trained_on_jsonl_predicts_from_a_copied_checkpoint_after_the_data_moved() {
    let root = scratch("jsonl");
    let data = root.join("data");
    write_dataset(&data);
    let out = root.join("runs");
    let (table, err) = ok_with_stderr(train_registry(&out, &data, &[]));
    // Skipped rows are reported per file with the first reason.
    assert!(
        err.contains("skipped 1 of 25 rows")
            && err.contains("sent/train.jsonl")
            && err.contains("unknown label `meh`"),
        "{err}"
    );
    assert!(
        table.contains("unlabeled"),
        "the unlabeled test split: {table}"
    );
    // Final predictions: source ids and label names; the unlabeled split has no gold label.
    let run = out.join("user");
    let preds = jsonl(&std::fs::read_to_string(run.join("final-test-predictions.jsonl")).unwrap());
    let sent: Vec<&serde_json::Value> = preds.iter().filter(|p| p["task"] == "sent").collect();
    assert_eq!(sent.len(), 6);
    assert_eq!(sent[0]["id"], "s-200");
    assert!(sent[0]["label"].is_null());
    assert!(["neg", "pos"].contains(&sent[0]["prediction"].as_str().unwrap()));
    let sim = preds.iter().find(|p| p["task"] == "sim").unwrap();
    assert!(
        sim["label"].is_number() && sim["prediction"].is_number(),
        "{sim}"
    );

    // Copy the checkpoint away and move the data folder: predict needs neither.
    let copy = root.join("elsewhere/ckpt");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(run.join("checkpoint-4")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    let moved = root.join("data-moved");
    std::fs::rename(&data, &moved).unwrap();
    let input = root.join("new.jsonl");
    std::fs::write(
        &input,
        "{\"uid\": \"q1\", \"text\": \"very good film\"}\n\n{\"text\": \"awful plot\"}\n",
    )
    .unwrap();
    let stdout = ok(predict(
        ("--checkpoint", &copy),
        &input,
        &["--task", "sent"],
    ));
    let rows = jsonl(&stdout);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "q1");
    assert_eq!(rows[1]["id"], "3", "no id field: the line number");
    assert_eq!(rows[1]["line"], 3);
    for r in &rows {
        assert!(
            ["neg", "pos"].contains(&r["label"].as_str().unwrap()),
            "{r}"
        );
        let p = r["probabilities"].as_object().unwrap();
        let total: f64 = p.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-5 && p.contains_key("neg"), "{r}");
    }
    // A task per row, TSV, written to a file.
    let mixed = root.join("mixed.tsv");
    std::fs::write(
        &mixed,
        "task\ttext\ta\tb\nsim\t\tgood film\tbad film\nsent\tnot good\t\t\n",
    )
    .unwrap();
    let written = root.join("mixed.jsonl");
    ok(predict(
        ("--checkpoint", &copy),
        &mixed,
        &[
            "--task-field",
            "task",
            "--output",
            written.to_str().unwrap(),
        ],
    ));
    let rows = jsonl(&std::fs::read_to_string(&written).unwrap());
    assert!(
        rows[0]["value"].is_number() && rows[0]["task"] == "sim",
        "{rows:?}"
    );
    assert!(
        rows[1]["label"].is_string() && rows[1]["task"] == "sent",
        "{rows:?}"
    );
    // Errors name file, line and field.
    let err = fails(predict(
        ("--checkpoint", &copy),
        &input,
        &["--task", "nope"],
    ));
    assert!(
        err.contains("unknown task `nope`") && err.contains("sent, sim"),
        "{err}"
    );
    let bad = root.join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"good\"}\n{\"txt\": \"bad\"}\n").unwrap();
    let err = fails(predict(("--checkpoint", &copy), &bad, &["--task", "sent"]));
    assert!(err.contains("bad.jsonl:2: missing field `text`"), "{err}");
    let err = fails(predict(
        ("--checkpoint", &copy),
        &mixed,
        &["--task-field", "kind"],
    ));
    assert!(err.contains("mixed.tsv:1: missing field `kind`"), "{err}");

    // eval of the copy says the data is gone, and works with the data pointed at.
    let err = fails(taskmoe(&["eval", "--checkpoint", copy.to_str().unwrap()]));
    assert!(err.contains("data.registry"), "{err}");
    let registry = format!("data.registry={}", moved.join("tasks.toml").display());
    let table = ok(taskmoe(&[
        "eval",
        "--checkpoint",
        copy.to_str().unwrap(),
        "--set",
        &registry,
    ]));
    assert!(
        table.contains("sent") && table.contains("step 4"),
        "{table}"
    );
    assert!(root.join("elsewhere/eval-validation-step4.json").exists());
    std::fs::remove_dir_all(root).unwrap();
}

/// Copies folder `from` to `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => copy_tree(&entry.path(), &target),
            false => drop(std::fs::copy(entry.path(), target).unwrap()),
        }
    }
}

#[test]
fn a_project_copied_whole_resumes_evaluates_predicts_and_exports_from_its_own_data() {
    let root = scratch("portable");
    let project = root.join("project");
    write_dataset(&project.join("data"));
    let out = project.join("runs");
    ok(train_registry(
        &out,
        &project.join("data"),
        &["--set", "train.steps=2", "--set", "schedule.total_steps=4"],
    ));
    let saved = std::fs::read_to_string(out.join("user/config.toml")).unwrap();
    assert!(
        saved.contains("registry = \"../../data/tasks.toml\"")
            && saved.contains("tokenizer = \"../../data/vocab.txt\"")
            && saved.contains(&format!("# saved in: {}", out.join("user").display())),
        "{saved}"
    );
    let checkpoint = std::fs::read_to_string(out.join("user/checkpoint-2/config.toml")).unwrap();
    assert!(
        checkpoint.contains("registry = \"../../../data/tasks.toml\""),
        "{checkpoint}"
    );

    // The whole project copied elsewhere, the original gone: the copy reads its own data.
    let copy = root.join("elsewhere/project copy");
    copy_tree(&project, &copy);
    std::fs::remove_dir_all(&project).unwrap();
    let run = copy.join("runs/user");
    let run_str = run.to_str().unwrap();
    ok(on_run(
        "train",
        run_str,
        &["--resume", "--set", "train.steps=4"],
    ));
    assert!(run.join("checkpoint-4").is_dir());
    let table = ok(on_run("eval", run_str, &["--split", "validation"]));
    assert!(
        table.contains("sent") && table.contains("step 4"),
        "{table}"
    );
    let input = root.join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"very good film\"}\n").unwrap();
    let stdout = ok(predict(("--run", &run), &input, &["--task", "sent"]));
    assert_eq!(jsonl(&stdout).len(), 1);
    ok(taskmoe(&["export", "--run", run_str, "--format", "hf"]));
    assert!(run.join("export-hf-step4/config.json").is_file());
    assert!(!project.exists(), "nothing written at the old place");

    // The run folder moved on its own, its data left in the project: read where it was.
    let alone = root.join("alone");
    std::fs::rename(&run, &alone).unwrap();
    let table = ok(on_run("eval", &alone, &["--split", "validation"]));
    assert!(table.contains("sent"), "{table}");
    // With the data gone too, the error names the key and the path it looked at.
    std::fs::remove_dir_all(copy.join("data")).unwrap();
    let err = fails(on_run(
        "train",
        &alone,
        &["--resume", "--set", "train.steps=6"],
    ));
    assert!(err.contains("tasks.toml"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_synthetic_run_predicts_and_exports() {
    let out = scratch("synthetic");
    let tiny = tiny_config();
    let dir = format!("output.dir={}", out.display());
    ok(taskmoe(&[
        "train",
        "--config",
        tiny.to_str().unwrap(),
        "--set",
        &dir,
        "--set",
        "output.name=s",
        "--set",
        "train.steps=3",
    ]));
    let run = out.join("s");
    assert!(run.join("checkpoint-3/tasks.toml").exists());
    assert!(run.join("checkpoint-3/vocab.txt").exists());
    let input = out.join("in.csv");
    std::fs::write(&input, "sentence\n\"w1 w2 w3\"\nw4 w5\n").unwrap();
    let stdout = ok(predict(("--run", &run), &input, &["--task", "lexicon_hi0"]));
    let rows = jsonl(&stdout);
    assert_eq!(rows.len(), 2);
    assert!(["0", "1"].contains(&rows[0]["label"].as_str().unwrap()));

    // A held-out task the model never trained on is refused unless asked for, then warned
    // about; rows longer than the model's positions are predicted truncated, with a warning.
    let long = (0..40)
        .map(|i| format!("w{}", i % 9 + 1))
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(&input, format!("sentence\nw1 w2\n{long}\n")).unwrap();
    let predict = |task: &str, extra: &[&str]| {
        let mut rest = vec!["--task", task];
        rest.extend_from_slice(extra);
        predict(("--run", &run), &input, &rest)
    };
    let err = fails(predict("lexicon_unseen0", &[]));
    assert!(
        err.contains("did not train on task(s) lexicon_unseen0")
            && err.contains("--allow-untrained"),
        "{err}"
    );
    let (stdout, warned) = ok_with_stderr(predict("lexicon_unseen0", &["--allow-untrained"]));
    assert_eq!(jsonl(&stdout).len(), 2);
    assert!(warned.contains("did not train on"), "{warned}");
    let (_, warned) = ok_with_stderr(predict("lexicon_hi0", &[]));
    assert!(
        warned.contains("1 of 2 rows") && warned.contains("truncated (lines 3)"),
        "{warned}"
    );

    // The tiny task-MoE (per-task router) exports in taskmoe's layout.
    let msg = ok(on_run(
        "export",
        &run,
        &["--format", "hf", "--dtype", "bf16"],
    ));
    assert!(msg.contains("taskmoe layout"), "{msg}");
    let folder = run.join("export-hf-step3");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "taskmoe");
    assert_eq!(config["torch_dtype"], "bfloat16");
    assert_eq!(config["taskmoe"]["tasks"][0]["labels"][1], "1");
    for f in [
        "model.safetensors",
        "heads.safetensors",
        "vocab.txt",
        "tokenizer_config.json",
        "README.md",
        "modeling_taskmoe.py",
        "configuration_taskmoe.py",
        "taskmoe_hf.py",
    ] {
        assert!(folder.join(f).exists(), "{f}");
    }
    assert_eq!(
        config["auto_map"]["AutoModel"],
        "modeling_taskmoe.TaskmoeModel"
    );
    let card = std::fs::read_to_string(folder.join("README.md")).unwrap();
    assert!(
        card.starts_with(
            "---\nlibrary_name: transformers\ntags:\n- taskmoe\n- mixture-of-experts\n"
        ),
        "{card}"
    );
    for want in [
        "- custom_code\n",
        "pipeline_tag: text-classification\n",
        "| variant | task-moe |",
        "| router kind | per-task |",
        "4 per MoE block, k = 1",
        "3 of 3 training steps (this export is of the checkpoint at step 3), seed 0.",
        "[data.synthetic]",
        "high_resource_examples = 64",
        &format!("taskmoe {}, commit ", env!("CARGO_PKG_VERSION")),
        "AutoModel.from_pretrained(folder, trust_remote_code=True)",
        "Not a `BertModel` folder",
    ] {
        assert!(card.contains(want), "{want}\n{card}");
    }
    // Every task with its labels, and the final test table equal to final-test.json.
    for (i, task) in config["taskmoe"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let labels: Vec<&str> = task["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let row = format!(
            "| {i} | {} | classification | {} |",
            task["name"].as_str().unwrap(),
            labels.join(", ")
        );
        assert!(card.contains(&row), "{row}\n{card}");
    }
    let scores = final_test_rows(&run);
    assert!(!scores.is_empty());
    for row in &scores {
        assert!(card.contains(row), "{row}\n{card}");
    }
    // A task-level model cut to one task: a pre-LN dense sub-network (taskmoe layout, not a
    // BertModel) whose card names the task and scores it alone.
    ok(taskmoe(&[
        "train",
        "--config",
        tiny.to_str().unwrap(),
        "--set",
        &dir,
        "--set",
        "output.name=tl",
        "--set",
        "model.moe.router.kind=task-level",
        "--set",
        "train.steps=2",
    ]));
    let tl = out.join("tl");
    let msg = ok(on_run("export", &tl, &["--task", "lexicon_hi0"]));
    assert!(msg.contains("trust_remote_code=True"), "{msg}");
    let folder = tl.join("export-hf-step2-lexicon_hi0");
    assert!(folder.join("modeling_taskmoe.py").exists());
    let card = std::fs::read_to_string(folder.join("README.md")).unwrap();
    assert!(
        card.contains("cut down to task `lexicon_hi0`'s dense sub-network")
            && card.contains("| router kind | task-level |")
            && card.contains("| 0 | lexicon_hi0 | classification |")
            && !card.contains("| 1 |"),
        "{card}"
    );
    let scores = final_test_rows(&tl);
    assert!(scores.len() > 1);
    for row in scores {
        let own = row.starts_with("| lexicon_hi0 |");
        assert_eq!(card.contains(&row), own, "{row}\n{card}");
    }
    // A dense model exports as a BertModel folder; --task needs a task-level router.
    let err = fails(on_run("export", &run, &["--task", "lexicon_hi0"]));
    assert!(err.contains("task-level"), "{err}");

    // A dense post-LN model (BERT's layout; the presets are pre-LN) exports as a
    // transformers BertModel folder.
    ok(taskmoe(&[
        "train",
        "--config",
        tiny.to_str().unwrap(),
        "--set",
        &dir,
        "--set",
        "output.name=d",
        "--set",
        "model.variant=dense",
        "--set",
        "model.norm=post",
        "--set",
        "train.steps=2",
    ]));
    let dense = out.join("d");
    let msg = ok(taskmoe(&["export", "--run", dense.to_str().unwrap()]));
    assert!(msg.contains("BertModel layout"), "{msg}");
    let folder = dense.join("export-hf-step2");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "bert");
    assert_eq!(config["architectures"][0], "BertModel");
    assert_eq!(config["hidden_size"], 32);
    assert_eq!(config["torch_dtype"], "float32");
    assert!(config.get("auto_map").is_none());
    assert!(!folder.join("modeling_taskmoe.py").exists());
    let card = std::fs::read_to_string(folder.join("README.md")).unwrap();
    assert!(
        card.contains("- bert\n")
            && !card.contains("custom_code")
            && !card.contains("mixture-of-experts")
            && card.contains("BertModel.from_pretrained(folder")
            && card.contains("| variant | dense |"),
        "{card}"
    );
    for row in final_test_rows(&dense) {
        assert!(card.contains(&row), "{row}\n{card}");
    }
    std::fs::remove_dir_all(out).unwrap();
}

/// The final test table rows a model card shows for `run`, from its `final-test.json`:
/// `| task | metric | value (4 places) |`.
fn final_test_rows(run: &Path) -> Vec<String> {
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("final-test.json")).unwrap())
            .unwrap();
    scores["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            let metric = t["primary"].as_str().unwrap();
            let value = t["metrics"][metric].as_f64()?;
            Some(format!(
                "| {} | {metric} | {value:.4} |",
                t["task"].as_str().unwrap()
            ))
        })
        .collect()
}

#[test]
fn export_help_says_which_exports_load_as_bert_model() {
    let help = ok(taskmoe(&["export", "--help"]));
    for want in [
        "transformers.BertModel",
        "post-LN dense",
        "Every preset is pre-LN",
        "no export is a BertModel folder",
        "trust_remote_code=True",
        "modeling_taskmoe.py",
        "README.md",
    ] {
        assert!(help.contains(want), "{want}\n{help}");
    }
}

#[test]
fn verify_finds_a_same_size_corruption_that_eval_and_resume_skip_saying_why() {
    let out = scratch("verify");
    let tiny = tiny_config();
    let dir = format!("output.dir={}", out.display());
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--config",
            tiny.to_str().unwrap(),
            "--set",
            &dir,
            "--set",
            "output.name=v",
            "--set",
            "checkpoint.keep_best=false",
        ];
        args.extend_from_slice(extra);
        taskmoe(&args)
    };
    ok(train(&["--set", "train.steps=6"]));
    let run = out.join("v");
    let report = ok(taskmoe(&["verify", run.to_str().unwrap()]));
    assert!(report.contains("checkpoint-6 (step 6): ok"), "{report}");
    // Flip one byte near the end of the newest weights: same size, other content.
    let file = run.join("checkpoint-6/model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let output = taskmoe(&["verify", run.join("checkpoint-6").to_str().unwrap()]);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    fails(output);
    assert!(
        report.contains("BAD   model.safetensors: SHA-256 differs"),
        "{report}"
    );
    let (table, err) = ok_with_stderr(taskmoe(&["eval", "--run", run.to_str().unwrap()]));
    assert!(table.contains("step 3"), "{table}");
    assert!(
        err.contains("skipped") && err.contains("checkpoint-6") && err.contains("SHA-256"),
        "{err}"
    );
    let (_, err) = ok_with_stderr(train(&["--set", "train.steps=6", "--resume"]));
    assert!(
        err.contains("--resume skipped") && err.contains("checkpoint-6"),
        "{err}"
    );
    std::fs::remove_dir_all(out).unwrap();
}
