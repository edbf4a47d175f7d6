//! `DataCheck`: a data set with planted errors has every one of them named (file, line,
//! field) without stopping at the first, while training's reader still stops there; clean
//! data passes; the synthetic benchmark is measured.

use std::path::{Path, PathBuf};

use crate::files::{scratch, write};
use taskmoe_data::check::{LabelStats, Problem, ProblemKind, Severity};
use taskmoe_data::synthetic::{SyntheticBenchmark, SyntheticConfig};
use taskmoe_data::{DataCheck, DataError, TaskRegistry, TextTokenizer};

/// The fixtures' WordPiece vocabulary, cutting at 16 tokens.
fn tokenizer() -> TextTokenizer {
    let vocab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/vocab.txt");
    TextTokenizer::from_wordpiece_vocab(&vocab, true, 16).unwrap()
}

/// The two-task registry the planted data sets are written for (shared with the CLI's
/// `data check` tests).
const REGISTRY: &str = include_str!("../fixtures/check/tasks.toml");

/// The planted data set: `nli/train.tsv` has an unknown label on line 3, an input of 20
/// tokens on line 5 and a short row on line 6; `nli/dev.tsv` does not exist; `nli/test.tsv`
/// line 3 repeats `nli/train.tsv` line 4; `sent/train.jsonl` line 2 lacks its text field.
fn planted(dir: &Path) -> PathBuf {
    write(dir, "tasks.toml", REGISTRY);
    let long = "the man plays guitar ".repeat(4);
    write(
        dir,
        "nli/train.tsv",
        &format!(
            "premise\thypothesis\tlabel\n\
             the cat sleeps\tthe dog sleeps\tyes\n\
             the man plays\tit rains\tmaybe\n\
             the street is wet\tit rains\tyes\n\
             {long}\tmusic\tno\n\
             the dog\tyes\n"
        ),
    );
    write(
        dir,
        "nli/test.tsv",
        "premise\thypothesis\tlabel\nthe cat\ta dog\tno\nthe street is wet\tit rains\tyes\n",
    );
    write(
        dir,
        "sent/train.jsonl",
        "{\"sentence\": \"the cat\", \"label\": \"pos\"}\n\
         {\"label\": \"neg\"}\n\
         {\"sentence\": \"the dog\", \"label\": \"neg\"}\n",
    );
    write(
        dir,
        "sent/dev.jsonl",
        "{\"sentence\": \"a cat\", \"label\": \"pos\"}\n",
    );
    dir.join("tasks.toml")
}

/// The one problem of `kind`, failing when there is not exactly one.
fn only(check: &DataCheck, kind: ProblemKind) -> &Problem {
    let found: Vec<&Problem> = check.problems.iter().filter(|p| p.kind == kind).collect();
    assert_eq!(found.len(), 1, "{kind:?}: {:#?}", check.problems);
    found[0]
}

/// Asserts where `p` is: task, split, file (by its ending), line and field.
fn assert_at(
    p: &Problem,
    (task, split): (&str, &str),
    file: &str,
    line: Option<usize>,
    field: Option<&str>,
) {
    assert_eq!(p.task.as_deref(), Some(task), "{p:?}");
    assert_eq!(p.split.as_deref(), Some(split), "{p:?}");
    assert!(p.path.as_ref().unwrap().ends_with(file), "{p:?}");
    assert_eq!(p.line, line, "{p:?}");
    assert_eq!(p.field.as_deref(), field, "{p:?}");
}

#[test]
fn planted_errors_are_each_named_with_file_line_and_field() {
    let dir = scratch("planted");
    let check = DataCheck::registry(&planted(&dir), &tokenizer(), &[]);

    let p = only(&check, ProblemKind::UnknownLabel);
    assert_at(p, ("nli", "train"), "nli/train.tsv", Some(3), Some("label"));
    assert_eq!(p.severity, Severity::Error);
    assert!(p.message.contains("`maybe`"), "{p}");
    assert!(
        p.to_string()
            .contains("nli/train.tsv:3: field `label`: unknown label"),
        "{p}"
    );

    let p = only(&check, ProblemKind::Malformed);
    assert_at(p, ("nli", "train"), "nli/train.tsv", Some(6), None);
    assert!(
        p.message
            .contains("2 tab-separated columns, the header has 3"),
        "{p}"
    );

    let p = only(&check, ProblemKind::MissingFile);
    assert_at(p, ("nli", "validation"), "nli/dev.tsv", None, None);
    assert_eq!(p.severity, Severity::Error);

    let p = only(&check, ProblemKind::MissingField);
    assert_at(
        p,
        ("sent", "train"),
        "sent/train.jsonl",
        Some(2),
        Some("sentence"),
    );

    let p = only(&check, ProblemKind::Duplicate);
    assert_at(
        p,
        ("nli", "test"),
        "nli/test.tsv",
        Some(3),
        Some("premise, hypothesis"),
    );
    assert_eq!(p.severity, Severity::Warning);
    assert!(
        p.message.contains("`train` split")
            && p.message.contains("the first is line 3, line 4 of `train`"),
        "{p}"
    );

    // 4 x 4 word pieces + "music" + 3 specials = 20 tokens, cut at 16: a warning.
    let p = only(&check, ProblemKind::Truncated);
    assert_at(p, ("nli", "train"), "nli/train.tsv", Some(5), None);
    assert_eq!(p.severity, Severity::Warning);
    assert!(
        p.message.contains("1 of 3 examples (33.3%)") && p.message.contains("has 20 tokens"),
        "{p}"
    );

    assert_eq!(check.problems.len(), 6, "{:#?}", check.problems);
    assert_eq!(
        (check.count(Severity::Error), check.count(Severity::Warning)),
        (4, 2)
    );
    assert!(check.has_errors());

    // The numbers: the good rows of every readable split.
    let nli = &check.tasks[0];
    assert!(nli.trained);
    let names: Vec<&str> = nli.splits.iter().map(|s| s.split.as_str()).collect();
    assert_eq!(names, ["train", "validation", "test"]);
    let train = &nli.splits[0];
    assert_eq!(
        (train.examples, train.bad_rows, train.over_seq_len),
        (3, 2, 1)
    );
    assert_eq!(train.labels, LabelStats::Classes(vec![2, 1]));
    let tokens = train.tokens.unwrap();
    // the street is wet / it rain ##s: 7 + 3 specials.
    assert_eq!((tokens.min, tokens.max), (10, 20));
    assert!(!nli.splits[1].read);
    assert_eq!((nli.splits[2].examples, nli.splits[2].repeated), (2, 1));
    let sent = &check.tasks[1].splits[0];
    assert_eq!((sent.examples, sent.bad_rows), (2, 1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn training_still_stops_at_the_first_bad_line() {
    let dir = scratch("first");
    let registry = TaskRegistry::from_toml_file(&planted(&dir)).unwrap();
    match registry.read_split("nli", "train").unwrap_err() {
        DataError::UnknownLabel { line, field, .. } => {
            assert_eq!((line, field.as_str()), (3, "label"))
        }
        other => panic!("unexpected {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn skipped_rows_are_warnings_unless_nothing_is_left() {
    let dir = scratch("skip");
    let registry = r#"
[[tasks]]
name = "sent"
family = "single"
kind = "classification"
labels = ["neg", "pos"]
text_fields = ["sentence"]
metrics = ["accuracy"]
on_invalid = "skip"
[tasks.splits]
train = "train.jsonl"
validation = "dev.jsonl"
"#;
    write(&dir, "tasks.toml", registry);
    write(
        &dir,
        "train.jsonl",
        "{\"sentence\": \"the cat\", \"label\": \"pos\"}\n{\"sentence\": \"a dog\", \"label\": \"meh\"}\n",
    );
    write(
        &dir,
        "dev.jsonl",
        "{\"sentence\": \"a cat\", \"label\": \"maybe\"}\n",
    );
    let check = DataCheck::registry(&dir.join("tasks.toml"), &tokenizer(), &[]);
    let kinds: Vec<(ProblemKind, Severity, Option<&str>)> = check
        .problems
        .iter()
        .map(|p| (p.kind, p.severity, p.split.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            // A row training skips...
            (ProblemKind::UnknownLabel, Severity::Warning, Some("train")),
            (
                ProblemKind::UnknownLabel,
                Severity::Warning,
                Some("validation")
            ),
            // ...but a split of bad rows only stops training even when they are skipped...
            (ProblemKind::EmptyFile, Severity::Error, Some("validation")),
            // ...and the label no training example is left with is named.
            (ProblemKind::UnusedLabel, Severity::Warning, Some("train")),
        ]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn registry_problems_name_the_registry() {
    let dir = scratch("registry");
    write(&dir, "tasks.toml", "[[tasks]]\nname = \"a\"\nfamily = \n");
    let check = DataCheck::registry(&dir.join("tasks.toml"), &tokenizer(), &[]);
    let p = only(&check, ProblemKind::Registry);
    assert!(p.path.as_ref().unwrap().ends_with("tasks.toml"), "{p:?}");
    assert_eq!(p.line, Some(3), "{p:?}");
    assert!(check.tasks.is_empty());

    // A task the run trains on must be declared, and needs a `train` split; no command reads
    // a split named otherwise.
    let registry = REGISTRY.replace(
        "train = \"sent/train.jsonl\"",
        "extra = \"sent/train.jsonl\"",
    );
    write(&dir, "tasks.toml", &registry);
    let trained = ["sent".to_string(), "nope".to_string()];
    let check = DataCheck::registry(&dir.join("tasks.toml"), &tokenizer(), &trained);
    let p = only(&check, ProblemKind::Registry);
    assert!(p.message.contains("`nope`"), "{p}");
    let p = only(&check, ProblemKind::MissingSplit);
    assert_eq!(
        (p.severity, p.field.as_deref()),
        (Severity::Error, Some("splits.train"))
    );
    assert_eq!(
        only(&check, ProblemKind::UnusedSplit).severity,
        Severity::Warning
    );
    assert!(!check.tasks[0].trained && check.tasks[1].trained);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_glue_example_has_no_errors_and_its_dev_file_is_compared_once() {
    let registry =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/glue-example/tasks.toml");
    let tokenizer = TextTokenizer::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/tokenizer.json"),
        128,
    )
    .unwrap();
    let check = DataCheck::registry(&registry, &tokenizer, &[]);
    assert!(!check.has_errors(), "{}", check.render(20));
    assert_eq!(check.tasks.len(), 3);
    for task in &check.tasks {
        let names: Vec<&str> = task.splits.iter().map(|s| s.split.as_str()).collect();
        assert_eq!(names, ["train", "validation", "test"]);
        // `dev.tsv` is both validation and test: read twice, compared once.
        assert_eq!(task.splits[2].same_file_as.as_deref(), Some("validation"));
        assert!(task
            .splits
            .iter()
            .all(|s| s.read && s.bad_rows == 0 && s.over_seq_len == 0));
    }
    // The example's STS-B dev rows are copies of its first training rows: the check says so.
    let stsb = &check.tasks[2];
    assert_eq!(stsb.splits[1].repeated, stsb.splits[1].examples);
    let warnings: Vec<&Problem> = check.problems.iter().collect();
    assert!(
        warnings
            .iter()
            .all(|p| p.kind == ProblemKind::Duplicate && p.task.as_deref() == Some("stsb")),
        "{warnings:#?}"
    );
    let text = check.render(20);
    assert!(
        text.contains("= validation") && text.contains("0 errors, 1 warning"),
        "{text}"
    );
}

#[test]
fn the_synthetic_benchmark_is_measured_and_too_long_inputs_are_errors() {
    let bench = SyntheticBenchmark::generate(&SyntheticConfig::compact()).unwrap();
    let check = DataCheck::synthetic(&bench, bench.max_seq_len(), &[]);
    assert!(!check.has_errors(), "{}", check.render(5));
    assert_eq!(check.tasks.len(), bench.tasks().len());
    for (task, generated) in check.tasks.iter().zip(bench.tasks()) {
        assert_eq!(task.trained, !generated.spec.held_out);
        for (split, examples) in task.splits.iter().zip(&generated.splits) {
            assert_eq!(split.examples, examples.len());
            if let (LabelStats::Classes(counts), false) = (&split.labels, examples.is_empty()) {
                assert_eq!(counts.iter().sum::<usize>(), examples.len());
            }
            if let Some(t) = split.tokens {
                assert!(t.max <= bench.max_seq_len(), "{t:?}");
            }
        }
    }
    // Generated inputs are never cut: over the batch length they are errors.
    let short = DataCheck::synthetic(&bench, 6, &[]);
    assert!(short.has_errors());
    let too_long: Vec<&Problem> = short
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::TooLong)
        .collect();
    assert_eq!(
        too_long.len(),
        3 * bench.tasks().len(),
        "every split of every task"
    );
    assert!(too_long
        .iter()
        .all(|p| p.path.is_none() && p.message.contains("example ")));
    assert!(short.render(5).contains("the synthetic benchmark"));
}
