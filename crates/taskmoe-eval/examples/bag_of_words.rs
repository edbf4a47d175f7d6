//! Prints the bag-of-words baseline ([`taskmoe_eval::bag_of_words`]: TF-IDF over word pieces
//! and a softmax regression whose L2 penalty is chosen on validation) of every classification
//! task of a registry, on each task's own full splits, with the majority baseline beside it.
//!
//! `cargo run -p taskmoe-eval --example bag_of_words -- REGISTRY TOKENIZER [SEQ_LEN]`
//!
//! REGISTRY is a task registry (`configs/pydocs/tasks.toml`, `configs/wordnet/tasks.toml`),
//! TOKENIZER a `tokenizer.json` (MiniLM's: `$HOME/.cache/taskmoe/models/all-MiniLM-L6-v2/
//! tokenizer.json`), SEQ_LEN the length inputs are cut to (default 64; the run
//! configuration's `data.seq_len`). The numbers of docs/pydocs.md come from this.

use std::path::PathBuf;

use taskmoe_data::{TaskData, TaskKind, TaskRegistry, TextTokenizer};
use taskmoe_eval::bag_of_words;

const USAGE: &str = "usage: bag_of_words REGISTRY TOKENIZER [SEQ_LEN]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (registry, tokenizer, seq_len) = match args.as_slice() {
        [r, t] => (r, t, 64),
        [r, t, n] => (r, t, n.parse().map_err(|_| USAGE)?),
        _ => return Err(USAGE.into()),
    };
    let registry = TaskRegistry::from_toml_file(&PathBuf::from(registry))?;
    let tokenizer = TextTokenizer::from_file(&PathBuf::from(tokenizer), seq_len)?;
    println!(
        "{:<14} {:>5} {:>4} {:>5}  {:>8}  {:>7}  {:>8}  {:>7}",
        "task", "train", "dev", "test", "majority", "penalty", "dev acc", "test acc"
    );
    for (id, spec) in registry.tasks().iter().enumerate() {
        if !matches!(spec.kind, TaskKind::Classification) {
            continue;
        }
        let mut data = Vec::new();
        for split in ["train", "validation", "test"] {
            let text = registry.read_split(&spec.name, split)?.examples;
            let examples = tokenizer.encode_examples(&text)?;
            data.push(TaskData {
                task_id: id,
                examples,
            });
        }
        let result = bag_of_words(spec, &data[0], &data[1], &data[2])?;
        let Some(fit) = result.fit() else {
            println!(
                "{:<14} skipped: {}",
                spec.name,
                result.skip_reason().unwrap_or("")
            );
            continue;
        };
        println!(
            "{:<14} {:>5} {:>4} {:>5}  {:>8.3}  {:>7.0e}  {:>8.3}  {:>7.3}",
            spec.name,
            fit.examples[0],
            fit.examples[1],
            fit.examples[2],
            1.0 / spec.labels.len() as f64,
            fit.penalty,
            fit.validation_accuracy,
            fit.test_accuracy
        );
    }
    Ok(())
}
