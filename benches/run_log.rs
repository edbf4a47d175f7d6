//! Criterion benches of what a training step costs the run's logs, per step: the
//! `metrics.jsonl` line, handing the step to the TensorBoard writer thread (all the training
//! loop waits for), and the thread's whole work for one step (encode, checksum, write, flush,
//! measured as a hand-off plus a flush round trip).
//!
//! Run with `cargo xtask bench logs` (or `cargo bench -p taskmoe-train --bench run_log`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use taskmoe_train::{StepLog, TensorBoardLog};

/// A step of the default run's shape: 6 tasks, 2 MoE blocks of 8 experts.
fn default_step(step: u64) -> StepLog {
    let tasks = [
        "lexicon_hi0",
        "lexicon_lo0",
        "order_hi0",
        "order_lo0",
        "count_hi0",
        "count_lo0",
    ];
    let task_losses: BTreeMap<String, f64> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), 0.5 + i as f64 / 10.0))
        .collect();
    let aux = ["load_balance", "z_loss", "mutual_information"]
        .iter()
        .map(|n| (n.to_string(), 0.01))
        .collect();
    StepLog {
        step,
        time: 1.8e9,
        elapsed_s: 12.5,
        loss: 0.7,
        task_loss: 0.69,
        task_losses,
        aux,
        lr: 3e-4,
        grad_norm: 1.3,
        tokens: 1900,
        tokens_per_s: 3500.0,
        expert_load: vec![vec![0.125; 8]; 2],
        dropped: vec![0.0; 2],
        top1_prob: vec![0.2; 2],
        gate_entropy: vec![1.9; 2],
        skipped: false,
        skip_reason: None,
    }
}

fn bench_logs(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut g = c.benchmark_group("run_log");
    g.sample_size(50).warm_up_time(Duration::from_millis(500));
    let log = default_step(1);
    g.bench_function("metrics_jsonl_line", |b| {
        b.iter(|| serde_json::to_string(black_box(&log)).expect("logs serialize"))
    });
    let tb = TensorBoardLog::create(dir.path(), 0).expect("an event file");
    g.bench_function("tensorboard_hand_off", |b| {
        b.iter(|| tb.step(black_box(&log)))
    });
    tb.flush().expect("events written");
    g.bench_function("tensorboard_written_and_flushed", |b| {
        b.iter(|| {
            tb.step(black_box(&log));
            tb.flush().expect("events written")
        })
    });
    g.finish();
    tb.close().expect("events written");
}

criterion_group!(benches, bench_logs);
criterion_main!(benches);
