//! Criterion benches of the routing kernels at 2k, 8k and 32k tokens.
//!
//! Run with `cargo xtask bench -- kernels` (or `cargo bench --bench kernels`). Threads: 2 unless
//! `TASKMOE_BENCH_THREADS` says otherwise. Numbers are recorded in `docs/benchmarks.md`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use taskmoe_kernels::{
    combine, grouped_matmul, padded_bmm, permute, top_k, Capacity, DispatchPlan,
};
use tch::{Device, Kind, Tensor};

const TOKENS: [i64; 3] = [2048, 8192, 32768];
const EXPERTS: i64 = 8;
const K: usize = 2;
const D_MODEL: i64 = 512;
const D_FF: i64 = 1024;

fn setup_threads() {
    let threads = std::env::var("TASKMOE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    tch::set_num_threads(threads);
    tch::manual_seed(0);
}

fn routed(tokens: i64, capacity: Capacity) -> (Tensor, DispatchPlan) {
    let logits = Tensor::randn([tokens, EXPERTS], (Kind::Float, Device::Cpu));
    let r = top_k(&logits, K, true).unwrap();
    let plan = DispatchPlan::new(&r.experts, EXPERTS as usize, capacity).unwrap();
    (r.weights, plan)
}

fn bench_kernels(c: &mut Criterion) {
    setup_threads();
    let mut g = c.benchmark_group("routing");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &t in &TOKENS {
        g.throughput(Throughput::Elements(t as u64));
        let logits = Tensor::randn([t, EXPERTS], (Kind::Float, Device::Cpu));
        g.bench_with_input(BenchmarkId::new("top_k", t), &t, |b, _| {
            b.iter(|| top_k(black_box(&logits), K, true).unwrap())
        });
        let experts = top_k(&logits, K, true).unwrap().experts;
        for (name, cap) in [
            ("dropless", Capacity::Dropless),
            ("cap1.25", Capacity::Factor(1.25)),
        ] {
            g.bench_with_input(
                BenchmarkId::new(format!("dispatch_plan/{name}"), t),
                &t,
                |b, _| {
                    b.iter(|| {
                        DispatchPlan::new(black_box(&experts), EXPERTS as usize, cap).unwrap()
                    })
                },
            );
        }
        let (weights, plan) = routed(t, Capacity::Dropless);
        let x = Tensor::randn([t, D_MODEL], (Kind::Float, Device::Cpu));
        g.bench_with_input(BenchmarkId::new("permute", t), &t, |b, _| {
            b.iter(|| permute(black_box(&x), &plan).unwrap())
        });
        let rows = permute(&x, &plan).unwrap();
        g.bench_with_input(BenchmarkId::new("combine", t), &t, |b, _| {
            b.iter(|| combine(black_box(&rows), &weights, &plan).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("expert_matmul");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let w = Tensor::randn([EXPERTS, D_MODEL, D_FF], (Kind::Float, Device::Cpu)) * 0.02;
    let bias = Tensor::zeros([EXPERTS, D_FF], (Kind::Float, Device::Cpu));
    for &t in &TOKENS {
        let (_, plan) = routed(t, Capacity::Dropless);
        let rows = Tensor::randn(
            [plan.num_rows() as i64, D_MODEL],
            (Kind::Float, Device::Cpu),
        );
        g.throughput(Throughput::Elements(plan.num_rows() as u64));
        g.bench_with_input(BenchmarkId::new("grouped", t), &t, |b, _| {
            b.iter(|| grouped_matmul(black_box(&rows), &w, Some(&bias), &plan.counts).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("padded_bmm", t), &t, |b, _| {
            b.iter(|| padded_bmm(black_box(&rows), &w, Some(&bias), &plan.counts).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_kernels);
criterion_main!(benches);
