//! Tokenizers against the ids the Python `tokenizers` package produced for the same vocabulary
//! (`fixtures/tokenizer/make_fixture.py`), truncation, padding, and the synthetic vocabulary.

use std::path::{Path, PathBuf};

use taskmoe_data::synthetic::SyntheticBenchmark;
use taskmoe_data::{Label, TextExample, TextTokenizer};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizer")
        .join(rel)
}

struct Case {
    a: String,
    b: Option<String>,
    ids: Vec<i64>,
    type_ids: Vec<i64>,
}

fn expected() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let ints = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect()
    };
    cases
        .iter()
        .map(|c| Case {
            a: c["a"].as_str().unwrap().to_string(),
            b: c["b"].as_str().map(str::to_string),
            ids: ints(&c["ids"]),
            type_ids: ints(&c["type_ids"]),
        })
        .collect()
}

fn check_against_python(tok: &TextTokenizer) {
    let cases = expected();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let (ids, types) = tok.encode(&case.a, case.b.as_deref()).unwrap();
        assert_eq!(ids, case.ids, "{:?} / {:?}", case.a, case.b);
        assert_eq!(types, case.type_ids, "{:?} / {:?}", case.a, case.b);
    }
}

#[test]
fn tokenizer_json_matches_python_tokenizers() {
    let tok = TextTokenizer::from_file(&fixture("tokenizer.json"), 64).unwrap();
    check_against_python(&tok);
    assert_eq!(tok.pad_id(), 0);
    assert_eq!(tok.vocab_size(), 25);
}

#[test]
fn wordpiece_vocab_matches_python_tokenizers() {
    let tok = TextTokenizer::from_wordpiece_vocab(&fixture("vocab.txt"), true, 64).unwrap();
    check_against_python(&tok);
}

#[test]
fn pairs_are_truncated_longest_first_to_max_len() {
    let tok = TextTokenizer::from_wordpiece_vocab(&fixture("vocab.txt"), true, 8).unwrap();
    // a: the man plays guitar . (5 tokens), b: it rains (3 tokens): 8 + 3 specials = 11 > 8.
    let (ids, types) = tok
        .encode("the man plays guitar.", Some("it rains"))
        .unwrap();
    assert_eq!(ids.len(), 8);
    // Longest first trims the longer sentence until the two are level, then both in turn:
    // 5 + 3 word pieces become 3 + 2 or 2 + 3, never one side alone.
    assert_eq!(ids[0], 2);
    assert_eq!(ids[ids.len() - 1], 3);
    let seps = ids.iter().filter(|&&i| i == 3).count();
    assert_eq!(seps, 2);
    let a_len = types.iter().filter(|&&t| t == 0).count() - 2; // minus [CLS] and first [SEP]
    let b_len = types.iter().filter(|&&t| t == 1).count() - 1; // minus last [SEP]
    assert_eq!(a_len + b_len, 5);
    assert!(a_len.abs_diff(b_len) <= 1, "a {a_len}, b {b_len}");
}

#[test]
fn encode_checked_says_when_tokens_were_cut_off() {
    let tok = TextTokenizer::from_wordpiece_vocab(&fixture("vocab.txt"), true, 8).unwrap();
    let (ids, _, cut) = tok
        .encode_checked("the man plays guitar.", Some("it rains"))
        .unwrap();
    assert!(cut, "11 tokens do not fit in 8");
    assert_eq!(ids.len(), 8);
    let (ids, _, cut) = tok.encode_checked("it rains", None).unwrap();
    assert!(!cut, "{ids:?} fits");
    let (_, _, cut) = tok.encode_checked("the man plays guitar", None).unwrap();
    assert!(!cut, "6 tokens fit in 8");
}

#[test]
fn the_length_counter_counts_what_truncation_cuts() {
    let tok = TextTokenizer::from_wordpiece_vocab(&fixture("vocab.txt"), true, 8).unwrap();
    let counter = tok.length_counter().unwrap();
    let wide = TextTokenizer::from_wordpiece_vocab(&fixture("vocab.txt"), true, 64).unwrap();
    for (a, b) in [
        ("the man plays guitar.", Some("it rains")),
        ("it rains", None),
        ("the man plays guitar", None),
        ("the cat sleeps", Some("the dog is playing music")),
    ] {
        let n = counter.count(a, b).unwrap();
        // The full length is the encoding of a tokenizer too wide to cut anything...
        assert_eq!(n, wide.encode(a, b).unwrap().0.len(), "{a} / {b:?}");
        // ...and the narrow tokenizer cuts exactly the inputs counted over its length.
        let (_, _, cut) = tok.encode_checked(a, b).unwrap();
        assert_eq!(cut, n > tok.max_len(), "{a} / {b:?}: {n} tokens");
    }
    assert_eq!(
        counter
            .count("the man plays guitar.", Some("it rains"))
            .unwrap(),
        11
    );
}

#[test]
fn padded_encoding_has_mask_and_fixed_length() {
    let tok = TextTokenizer::from_wordpiece_vocab(&fixture("vocab.txt"), true, 10).unwrap();
    let p = tok.encode_padded("the cat sleeps", None).unwrap();
    assert_eq!(p.input_ids, [2, 5, 10, 12, 13, 3, 0, 0, 0, 0]);
    assert_eq!(p.attention_mask, [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
    assert_eq!(p.token_type_ids, [0; 10]);
}

#[test]
fn vocabulary_without_specials_is_refused() {
    let dir = std::env::temp_dir().join(format!("taskmoe-data-vocab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vocab.txt");
    std::fs::write(&path, "[UNK]\nthe\ncat\n").unwrap();
    let err = TextTokenizer::from_wordpiece_vocab(&path, true, 16).unwrap_err();
    assert!(err.to_string().contains("[CLS]"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(TextTokenizer::from_file(&fixture("missing.json"), 16).is_err());
}

#[test]
fn synthetic_text_through_wordpiece_gives_the_generator_ids() {
    let bench = SyntheticBenchmark::default_benchmark();
    let dir = std::env::temp_dir().join(format!("taskmoe-data-synth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vocab.txt");
    bench.vocab().write_vocab_txt(&path).unwrap();
    let tok = TextTokenizer::from_wordpiece_vocab(&path, true, bench.max_seq_len()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(tok.vocab_size(), bench.vocab().len());
    for task in bench.tasks() {
        let examples = &task.split("validation").unwrap()[..20];
        let texts: Vec<TextExample> = examples.iter().map(|e| e.render(bench.vocab())).collect();
        let encoded = tok.encode_examples(&texts).unwrap();
        for (i, (e, enc)) in examples.iter().zip(&encoded).enumerate() {
            assert_eq!(
                *enc,
                e.encode(bench.vocab(), i as u64),
                "{}",
                task.spec.name
            );
            assert_eq!(enc.label, Label::Class(e.label));
        }
    }
}
