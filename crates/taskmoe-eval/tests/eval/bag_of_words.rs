//! The bag-of-words baseline on tiny token-id datasets built here: it learns a label decided
//! by which of two token sets occurs, stays at chance on shuffled labels, gives the same
//! result twice, and skips what it cannot score.

use taskmoe_data::{EncodedExample, Label, Metric, TaskData, TaskKind, TaskSpec};
use taskmoe_eval::{bag_of_words, EvalError};

/// `[CLS]` and `[SEP]` of the BERT-style encodings (the synthetic vocabulary's ids).
const CLS: i64 = 2;
const SEP: i64 = 3;
/// Neutral words: ids `10..90`. The label-0 set and the label-1 set.
const NEUTRAL: std::ops::Range<i64> = 10..90;
const SET_0: [i64; 5] = [100, 101, 102, 103, 104];
const SET_1: [i64; 5] = [105, 106, 107, 108, 109];

/// A small deterministic generator (xorshift64*), so the data needs no `rand`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// `n` examples: `[CLS]`, 5 to 10 neutral words with one or two words of the label's set
/// among them, `[SEP]`; labels alternate 0, 1.
fn token_set_split(task_id: usize, n: usize, rng: &mut Rng) -> TaskData {
    let examples = (0..n)
        .map(|i| {
            let label = (i % 2) as i64;
            let set = if label == 0 { SET_0 } else { SET_1 };
            let mut words: Vec<i64> = (0..5 + rng.below(6))
                .map(|_| NEUTRAL.start + rng.below((NEUTRAL.end - NEUTRAL.start) as u64) as i64)
                .collect();
            for _ in 0..1 + rng.below(2) {
                let at = rng.below(words.len() as u64 + 1) as usize;
                words.insert(at, set[rng.below(set.len() as u64) as usize]);
            }
            let mut input_ids = vec![CLS];
            input_ids.extend(words);
            input_ids.push(SEP);
            EncodedExample {
                id: i as u64,
                token_type_ids: vec![0; input_ids.len()],
                input_ids,
                label: Label::Class(label),
                source_id: None,
            }
        })
        .collect();
    TaskData { task_id, examples }
}

fn spec(name: &str, kind: TaskKind) -> TaskSpec {
    let (labels, metrics) = match kind {
        TaskKind::Classification => (vec!["zero".into(), "one".into()], vec![Metric::Matthews]),
        TaskKind::Regression => (Vec::new(), vec![Metric::Pearson]),
    };
    TaskSpec {
        name: name.into(),
        family: "toy".into(),
        kind,
        labels,
        text_fields: vec!["sentence".into()],
        label_field: "label".into(),
        id_field: None,
        metrics,
        format: None,
        on_invalid: Default::default(),
        held_out: false,
        splits: Default::default(),
    }
}

/// Train 400, validation 200, test 300 examples of the token-set task.
fn token_set_task() -> [TaskData; 3] {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    [400, 200, 300].map(|n| token_set_split(0, n, &mut rng))
}

#[test]
fn learns_which_token_set_occurs() {
    crate::threads();
    let [train, validation, test] = token_set_task();
    let result = bag_of_words(
        &spec("sets", TaskKind::Classification),
        &train,
        &validation,
        &test,
    )
    .unwrap();
    let fit = result
        .fit()
        .expect("a labeled classification task is fitted");
    assert!(fit.test_accuracy >= 0.95, "{fit:#?}");
    assert!(fit.validation_accuracy >= 0.95, "{fit:#?}");
    // The headline metric is the spec's first, Matthews, and is scored too.
    assert_eq!(fit.primary, "matthews");
    assert_eq!(fit.test_primary, fit.test_metrics["matthews"]);
    assert!(fit.test_primary >= 0.9, "{fit:#?}");
    // `[CLS]` and `[SEP]` are not features: the columns are the word ids of the train split.
    assert_eq!(fit.excluded_ids, vec![CLS, SEP]);
    let words: std::collections::BTreeSet<i64> = train
        .examples
        .iter()
        .flat_map(|e| e.input_ids.iter().copied())
        .filter(|&id| id != CLS && id != SEP)
        .collect();
    assert_eq!(fit.vocabulary, words.len());
    assert_eq!(fit.grid.len(), 4);
    assert!(fit.grid.iter().all(|g| g.converged), "{:#?}", fit.grid);
    // Ties on validation accuracy go to the strongest penalty among them.
    let best = fit
        .grid
        .iter()
        .map(|g| g.validation_accuracy)
        .fold(0.0, f64::max);
    let strongest = fit
        .grid
        .iter()
        .filter(|g| g.validation_accuracy == best)
        .map(|g| g.penalty)
        .fold(0.0, f64::max);
    assert_eq!(fit.penalty, strongest, "{:#?}", fit.grid);
}

#[test]
fn shuffled_labels_stay_near_chance() {
    crate::threads();
    let [mut train, mut validation, mut test] = token_set_task();
    // Relabel every example by a coin that ignores its tokens.
    let mut rng = Rng(42);
    for split in [&mut train, &mut validation, &mut test] {
        for e in &mut split.examples {
            e.label = Label::Class(rng.below(2) as i64);
        }
    }
    let result = bag_of_words(
        &spec("noise", TaskKind::Classification),
        &train,
        &validation,
        &test,
    )
    .unwrap();
    let fit = result.fit().unwrap();
    // 300 test examples: chance is 0.5 with standard error 0.029; 0.12 is four of them.
    assert!((fit.test_accuracy - 0.5).abs() < 0.12, "{fit:#?}");
}

#[test]
fn the_result_is_the_same_on_two_calls() {
    crate::threads();
    let [train, validation, test] = token_set_task();
    let spec = spec("sets", TaskKind::Classification);
    let first = bag_of_words(&spec, &train, &validation, &test).unwrap();
    let second = bag_of_words(&spec, &train, &validation, &test).unwrap();
    assert_eq!(first, second);
}

#[test]
fn regression_and_missing_splits_are_skipped_with_a_reason() {
    crate::threads();
    let values = |n: usize| TaskData {
        task_id: 1,
        examples: (0..n)
            .map(|i| EncodedExample {
                id: i as u64,
                input_ids: vec![CLS, 10 + i as i64, SEP],
                token_type_ids: vec![0; 3],
                label: Label::Value(i as f32),
                source_id: None,
            })
            .collect(),
    };
    let result = bag_of_words(
        &spec("sts", TaskKind::Regression),
        &values(8),
        &values(4),
        &values(4),
    )
    .unwrap();
    assert_eq!(result.task, "sts");
    assert!(result.fit().is_none());
    assert!(
        result.skip_reason().unwrap().contains("regression"),
        "{result:?}"
    );

    let [train, validation, _] = token_set_task();
    let classification = spec("sets", TaskKind::Classification);
    let no_test = TaskData {
        task_id: 0,
        examples: Vec::new(),
    };
    let result = bag_of_words(&classification, &train, &validation, &no_test).unwrap();
    assert_eq!(result.skip_reason(), Some("no test split"));

    let mut unlabeled = validation.clone();
    unlabeled.examples[0].label = Label::Missing;
    let result = bag_of_words(&classification, &train, &validation, &unlabeled).unwrap();
    assert_eq!(result.skip_reason(), Some("the test split is unlabeled"));
}

#[test]
fn a_label_outside_the_classes_is_an_error() {
    crate::threads();
    let [mut train, validation, test] = token_set_task();
    train.examples[3].label = Label::Class(2);
    let err = bag_of_words(
        &spec("sets", TaskKind::Classification),
        &train,
        &validation,
        &test,
    )
    .unwrap_err();
    assert!(matches!(&err, EvalError::BagOfWords { task, .. } if task == "sets"));
    assert!(err.to_string().contains("train example 3"), "{err}");
}
