//! The readers on small fixture files of each format, good and broken, and the registry.

use std::path::{Path, PathBuf};

use taskmoe_data::{
    read_file, DataError, Format, Label, OnInvalid, TaskKind, TaskRegistry, TaskSpec,
};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn registry() -> TaskRegistry {
    TaskRegistry::from_toml_file(&fixture("tasks.toml")).unwrap()
}

fn spec(name: &str) -> TaskSpec {
    registry().get(name).unwrap().clone()
}

/// Asserts that the error's message names the file, `path:line` and `field`.
fn assert_names(err: &DataError, file: &str, line: usize, field: Option<&str>) {
    let msg = err.to_string();
    assert!(msg.contains(&format!("{file}:{line}:")), "{msg}");
    if let Some(f) = field {
        assert!(msg.contains(&format!("`{f}`")), "{msg}");
    }
}

#[test]
fn tsv_reads_pairs_labels_and_ids() {
    let report = read_file(&spec("rte"), &fixture("rte/train.tsv"), None).unwrap();
    assert!(report.skipped.is_empty());
    let ex = &report.examples;
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[0].text_a, "A man plays a guitar.");
    assert_eq!(ex[0].text_b.as_deref(), Some("A person plays music."));
    assert_eq!(ex[0].label, Label::Class(0));
    // Quotes are ordinary characters in GLUE TSV.
    assert_eq!(ex[1].text_b.as_deref(), Some("The \"dog\" barks."));
    assert_eq!(ex[1].label, Label::Class(1));
    assert_eq!(ex[2].source_id.as_deref(), Some("2"));
    assert_eq!(ex[2].line, 4);
}

#[test]
fn tsv_malformed_line_names_file_and_line() {
    let err = read_file(&spec("rte"), &fixture("rte/malformed.tsv"), None).unwrap_err();
    match &err {
        DataError::Malformed {
            path,
            line,
            message,
        } => {
            assert!(path.ends_with("rte/malformed.tsv"));
            assert_eq!(*line, 3);
            assert!(
                message.contains("3 tab-separated columns, the header has 4"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_names(&err, "malformed.tsv", 3, None);
}

#[test]
fn tsv_unknown_label_names_field_and_value() {
    let err = read_file(&spec("rte"), &fixture("rte/unknown_label.tsv"), None).unwrap_err();
    match &err {
        DataError::UnknownLabel {
            line, field, label, ..
        } => {
            assert_eq!(
                (*line, field.as_str(), label.as_str()),
                (4, "label", "maybe")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_names(&err, "unknown_label.tsv", 4, Some("label"));
}

#[test]
fn tsv_header_missing_a_field_is_an_error_at_line_1() {
    let err = read_file(&spec("rte"), &fixture("rte/missing_field.tsv"), None).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingField { line: 1, field, .. } if field == "sentence2"),
        "{err:?}"
    );
    assert_names(&err, "missing_field.tsv", 1, Some("sentence2"));
}

#[test]
fn empty_and_header_only_files_are_errors() {
    for (task, file) in [
        ("rte", "rte/empty.tsv"),
        ("rte", "rte/header_only.tsv"),
        ("sst2", "sst/empty.jsonl"),
        ("stsb", "stsb/empty.csv"),
    ] {
        let err = read_file(&spec(task), &fixture(file), None).unwrap_err();
        assert!(
            matches!(&err, DataError::Empty { path } if path.ends_with(file)),
            "{file}: {err:?}"
        );
    }
}

#[test]
fn skip_mode_skips_bad_rows_and_reports_them() {
    let mut s = spec("rte");
    s.on_invalid = OnInvalid::Skip;
    let report = read_file(&s, &fixture("rte/unknown_label.tsv"), None).unwrap();
    assert_eq!(report.examples.len(), 2);
    assert_eq!(report.skipped.len(), 1);
    assert!(matches!(
        report.skipped[0],
        DataError::UnknownLabel { line: 4, .. }
    ));

    let report = read_file(&s, &fixture("rte/malformed.tsv"), None).unwrap();
    assert_eq!(report.examples.len(), 2);
    assert!(matches!(
        report.skipped[0],
        DataError::Malformed { line: 3, .. }
    ));

    // A header without the field is a file-level error even in skip mode.
    assert!(read_file(&s, &fixture("rte/missing_field.tsv"), None).is_err());
}

#[test]
fn jsonl_reads_integer_and_named_labels() {
    let report = read_file(&spec("sst2"), &fixture("sst/train.jsonl"), None).unwrap();
    let labels: Vec<Label> = report.examples.iter().map(|e| e.label).collect();
    assert_eq!(labels, [Label::Class(1), Label::Class(0), Label::Class(1)]);
    assert_eq!(report.examples[0].text_a, "a gripping, well-acted film");
    assert_eq!(report.examples[0].text_b, None);
    assert_eq!(report.examples[1].source_id.as_deref(), Some("1"));
}

#[test]
fn jsonl_broken_files() {
    let s = spec("sst2");
    let err = read_file(&s, &fixture("sst/malformed.jsonl"), None).unwrap_err();
    assert!(
        matches!(err, DataError::Malformed { line: 2, .. }),
        "{err:?}"
    );
    assert_names(&err, "malformed.jsonl", 2, None);

    let err = read_file(&s, &fixture("sst/missing_field.jsonl"), None).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingField { line: 3, field, .. } if field == "label"),
        "{err:?}"
    );
    assert_names(&err, "missing_field.jsonl", 3, Some("label"));

    // Index 2 is outside a two-label set.
    let err = read_file(&s, &fixture("sst/unknown_label.jsonl"), None).unwrap_err();
    assert!(
        matches!(&err, DataError::UnknownLabel { line: 2, label, .. } if label == "2"),
        "{err:?}"
    );

    let err = read_file(&s, &fixture("sst/not_object.jsonl"), None).unwrap_err();
    assert!(
        matches!(&err, DataError::Malformed { line: 2, message, .. } if message.contains("an array")),
        "{err:?}"
    );
}

#[test]
fn csv_reads_quoted_fields_and_regression_targets() {
    let report = read_file(&spec("stsb"), &fixture("stsb/train.csv"), None).unwrap();
    let ex = &report.examples;
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[0].text_b.as_deref(), Some("An air plane, taking off."));
    assert_eq!(ex[1].text_a, "A man plays a \"large\" flute.");
    assert_eq!(ex[2].text_a, "Two lines\nin one field.");
    let targets: Vec<Label> = ex.iter().map(|e| e.label).collect();
    assert_eq!(
        targets,
        [Label::Value(5.0), Label::Value(3.8), Label::Value(0.25)]
    );
    // The line of a record is where it starts.
    assert_eq!((ex[0].line, ex[1].line, ex[2].line), (2, 3, 4));
}

#[test]
fn csv_broken_files() {
    let s = spec("stsb");
    let err = read_file(&s, &fixture("stsb/malformed.csv"), None).unwrap_err();
    assert!(
        matches!(err, DataError::Malformed { line: 3, .. }),
        "{err:?}"
    );
    assert_names(&err, "malformed.csv", 3, None);

    let err = read_file(&s, &fixture("stsb/bad_value.csv"), None).unwrap_err();
    assert!(
        matches!(&err, DataError::BadValue { line: 3, field, .. } if field == "score"),
        "{err:?}"
    );
    assert_names(&err, "bad_value.csv", 3, Some("score"));

    let mut skipping = s.clone();
    skipping.on_invalid = OnInvalid::Skip;
    let report = read_file(&skipping, &fixture("stsb/bad_value.csv"), None).unwrap();
    assert_eq!((report.examples.len(), report.skipped.len()), (2, 1));
}

#[test]
fn format_comes_from_argument_spec_or_extension() {
    // A TSV file read as CSV has one column per line: the header lacks the fields.
    let err = read_file(&spec("rte"), &fixture("rte/train.tsv"), Some(Format::Csv)).unwrap_err();
    assert!(
        matches!(err, DataError::MissingField { line: 1, .. }),
        "{err:?}"
    );
    let mut s = spec("rte");
    s.splits.clear();
    let err = read_file(&s, &fixture("tasks.toml"), None).unwrap_err();
    assert!(err.to_string().contains("cannot tell the format"), "{err}");
}

#[test]
fn a_header_naming_a_field_twice_is_malformed() {
    let dir = std::env::temp_dir().join(format!("taskmoe-data-dup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dup.csv");
    std::fs::write(&path, "id,score,sentence1,sentence2,score\na,1,x,y,2\n").unwrap();
    let err = read_file(&spec("stsb"), &path, None).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        matches!(&err, DataError::Malformed { line: 1, message, .. } if message.contains("`score` twice")),
        "{err:?}"
    );
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = read_file(&spec("rte"), &fixture("rte/nope.tsv"), None).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("nope.tsv"));
}

#[test]
fn registry_loads_specs_ids_families_and_splits() {
    let reg = registry();
    assert_eq!(reg.len(), 3);
    assert_eq!(reg.id("sst2").unwrap(), 1);
    assert_eq!(reg.families(), ["nli", "sentiment", "similarity"]);
    assert_eq!(reg.get("stsb").unwrap().kind, TaskKind::Regression);
    assert_eq!(reg.get("stsb").unwrap().num_outputs(), 1);
    assert_eq!(reg.held_out().len(), 1);
    assert_eq!(reg.seen().len(), 2);
    assert!(reg.get("rte").unwrap().is_pair());
    assert!(matches!(reg.id("cola"), Err(DataError::UnknownTask(_))));

    // Split paths are resolved against the registry file's folder.
    assert_eq!(reg.read_split("sst2", "train").unwrap().examples.len(), 3);
    assert!(reg.read_split("rte", "broken").is_err());
    assert!(reg.read_split("rte", "validation").is_err());

    // The TOML round trip keeps every spec.
    let again = TaskRegistry::from_toml_str(&reg.to_toml()).unwrap();
    assert_eq!(again, reg);
}

#[test]
fn invalid_specs_are_refused() {
    let base = spec("sst2");
    let mut one_label = base.clone();
    one_label.labels = vec!["positive".into()];
    let mut three_fields = base.clone();
    three_fields.text_fields = vec!["a".into(), "b".into(), "c".into()];
    let mut wrong_metric = base.clone();
    wrong_metric.metrics = vec![taskmoe_data::Metric::Pearson];
    for bad in [one_label, three_fields, wrong_metric] {
        assert!(TaskRegistry::new(vec![bad]).is_err());
    }
    assert!(TaskRegistry::new(vec![base.clone(), base]).is_err());

    let unknown_key = "[[tasks]]\nname = \"x\"\nfamily = \"f\"\nkind = \"regression\"\n\
                       text_fields = [\"s\"]\nmetrics = [\"mse\"]\nlable_field = \"y\"\n";
    let err = TaskRegistry::from_toml_str(unknown_key).unwrap_err();
    assert!(err.to_string().contains("lable_field"), "{err}");
}

#[test]
fn an_unlabeled_split_reads_with_labels_if_present_and_fails_when_required() {
    use taskmoe_data::{read_file_with, LabelMode, ReadOptions};
    let options = |labels| ReadOptions {
        format: None,
        labels,
    };
    // TSV: the header lacks the label column.
    let path = fixture("rte/unlabeled.tsv");
    let report = read_file_with(&spec("rte"), &path, options(LabelMode::IfPresent)).unwrap();
    assert_eq!(report.examples.len(), 2);
    assert!(!report.is_labeled());
    assert!(report.examples.iter().all(|e| e.label == Label::Missing));
    assert_eq!(report.examples[1].source_id.as_deref(), Some("1"));
    let err = read_file(&spec("rte"), &path, None).unwrap_err();
    assert_names(&err, "rte/unlabeled.tsv", 1, Some("label"));
    // JSONL: decided by the first record (a later label is not read).
    let path = fixture("sst/unlabeled.jsonl");
    let report = read_file_with(&spec("sst2"), &path, options(LabelMode::IfPresent)).unwrap();
    assert!(report.examples.iter().all(|e| e.label == Label::Missing));
    // A labeled file reads as before under IfPresent.
    let report = read_file_with(
        &spec("sst2"),
        &fixture("sst/train.jsonl"),
        options(LabelMode::IfPresent),
    )
    .unwrap();
    assert!(report.is_labeled());
    assert_eq!(report.examples[2].label, Label::Class(1));
}

#[test]
fn inputs_read_by_a_task_field_name_line_and_field_on_errors() {
    use taskmoe_data::{read_inputs, InputTask};
    let specs = registry().tasks().to_vec();
    let path = fixture("inputs_mixed.tsv");
    // Rows 2-4 are fine; row 5 (rte with empty text) reads as empty strings, so cut the file
    // at the unknown task to see it named.
    let err = read_inputs(&specs, &path, None, InputTask::Field("task")).unwrap_err();
    assert_names(&err, "inputs_mixed.tsv", 6, Some("task"));
    assert!(err.to_string().contains("unknown task `nope`"), "{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    let good: String = text.lines().take(5).map(|l| format!("{l}\n")).collect();
    let dir = std::env::temp_dir().join(format!("taskmoe-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("inputs.tsv");
    std::fs::write(&cut, good).unwrap();
    let report = read_inputs(&specs, &cut, None, InputTask::Field("task")).unwrap();
    assert_eq!(report.tasks, vec![1, 1, 0, 0]);
    assert_eq!(report.examples[2].text_a, "A cat.");
    assert_eq!(report.examples[2].text_b.as_deref(), Some("An animal."));
    assert!(report.examples.iter().all(|e| e.label == Label::Missing));
    assert!(report.examples[0].source_id.is_none(), "no id column: none");
    // A fixed task: its text fields are checked against the header at line 1.
    let err = read_inputs(
        &specs,
        &fixture("sst/train.jsonl"),
        None,
        InputTask::Fixed(0),
    )
    .unwrap_err();
    assert_names(&err, "sst/train.jsonl", 1, Some("sentence1"));
    let report = read_inputs(
        &specs,
        &fixture("sst/unlabeled.jsonl"),
        None,
        InputTask::Fixed(1),
    )
    .unwrap();
    assert_eq!(report.examples[0].source_id.as_deref(), Some("10"));
    // The task field missing from the header.
    let err = read_inputs(&specs, &cut, None, InputTask::Field("kind")).unwrap_err();
    assert_names(&err, "inputs.tsv", 1, Some("kind"));
    std::fs::remove_dir_all(dir).unwrap();
}
