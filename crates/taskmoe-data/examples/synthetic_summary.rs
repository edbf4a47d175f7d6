//! Prints the tasks of the synthetic benchmark and how long generating it took.
//!
//! `cargo run --release -p taskmoe-data --example synthetic_summary [config.toml]`

use std::time::Instant;

use taskmoe_data::synthetic::{SyntheticBenchmark, SyntheticConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = match std::env::args().nth(1) {
        Some(path) => SyntheticConfig::from_toml_str(&std::fs::read_to_string(path)?)?,
        None => SyntheticConfig::default(),
    };
    let start = Instant::now();
    let bench = SyntheticBenchmark::generate(&config)?;
    let elapsed = start.elapsed();
    println!(
        "{:<20} {:<8} {:<13} {:>6} {:>6} {:>6} {:>9} {:>8}",
        "task", "skill", "role", "train", "valid", "test", "positive", "flipped"
    );
    let mut total = 0;
    for t in bench.tasks() {
        let all: Vec<_> = t.splits.iter().flatten().collect();
        let positive = all.iter().filter(|e| e.label == 1).count() as f64 / all.len() as f64;
        let flipped =
            all.iter().filter(|e| e.label != e.clean_label).count() as f64 / all.len() as f64;
        total += all.len();
        println!(
            "{:<20} {:<8} {:<13} {:>6} {:>6} {:>6} {:>9.3} {:>8.3}",
            t.spec.name,
            t.skill.name(),
            format!("{:?}", t.role),
            t.splits[0].len(),
            t.splits[1].len(),
            t.splits[2].len(),
            positive,
            flipped
        );
    }
    println!(
        "{} tasks, {total} examples, vocabulary {} tokens, max_seq_len {}, generated in {:.1} ms",
        bench.tasks().len(),
        bench.vocab().len(),
        bench.max_seq_len(),
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
