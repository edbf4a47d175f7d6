//! Criterion benches of the routing kernels at 2k, 8k and 32k tokens.
//!
//! Run with `cargo xtask bench kernels` (or `cargo bench --bench kernels`); with `--summary
//! [--quick]` it prints one markdown table of median times instead (part of `cargo xtask bench`). Threads: 2 unless
//! `TASKMOE_BENCH_THREADS` says otherwise. Numbers are recorded in `docs/benchmarks.md`.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};
use taskmoe_kernels::{
    combine, dropout, grouped_matmul, grouped_mm, padded_bmm, permute, top_k, Capacity,
    DispatchPlan,
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

/// Median milliseconds of `runs` calls of `f` after one warm-up call.
fn median_ms<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    black_box(f());
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// The kernels as one markdown table (median of a few calls each), for `cargo xtask bench`.
fn summary(quick: bool) {
    setup_threads();
    let tokens: &[i64] = if quick { &TOKENS[..2] } else { &TOKENS };
    let runs = if quick { 5 } else { 11 };
    let mut rows: Vec<(&str, Vec<f64>)> = [
        "`top_k` (fp32 softmax + top-2 + renormalise)",
        "`DispatchPlan::new`, dropless",
        "`DispatchPlan::new`, capacity 1.25",
        "`permute` (`index_select` of `2T` rows of 512)",
        "`combine` (gather into `[T, 2, 512]`, weighted sum)",
        "`grouped_matmul` (8 per-expert matmuls)",
        "`grouped_mm` (one `at::_grouped_mm`, bias by row expert)",
        "`grouped_matmul` forward + backward",
        "`grouped_mm` forward + backward",
        "`padded_bmm` (one batched matmul over padded `[8, max count, 512]`)",
        "libtorch `dropout(0.1)` over `[T, 512]` (serial Bernoulli)",
        "`taskmoe_kernels::dropout(0.1)` over `[T, 512]` (counter hash)",
    ]
    .into_iter()
    .map(|name| (name, Vec::new()))
    .collect();
    let w = Tensor::randn([EXPERTS, D_MODEL, D_FF], (Kind::Float, Device::Cpu)) * 0.02;
    let bias = Tensor::zeros([EXPERTS, D_FF], (Kind::Float, Device::Cpu));
    for &t in tokens {
        let logits = Tensor::randn([t, EXPERTS], (Kind::Float, Device::Cpu));
        let experts = top_k(&logits, K, true).unwrap().experts;
        let (weights, plan) = routed(t, Capacity::Dropless);
        let x = Tensor::randn([t, D_MODEL], (Kind::Float, Device::Cpu));
        let permuted = permute(&x, &plan).unwrap();
        let h = Tensor::randn(
            [plan.num_rows() as i64, D_MODEL],
            (Kind::Float, Device::Cpu),
        );
        // Gradients of rows and weights (accumulating into the same buffers every call).
        let hg = h.detach().set_requires_grad(true);
        let wg = w.detach().set_requires_grad(true);
        let probe = Tensor::randn([plan.num_rows() as i64, D_FF], (Kind::Float, Device::Cpu));
        let times = [
            median_ms(runs, || top_k(&logits, K, true).unwrap()),
            median_ms(runs, || {
                DispatchPlan::new(&experts, EXPERTS as usize, Capacity::Dropless).unwrap()
            }),
            median_ms(runs, || {
                DispatchPlan::new(&experts, EXPERTS as usize, Capacity::Factor(1.25)).unwrap()
            }),
            median_ms(runs, || permute(&x, &plan).unwrap()),
            median_ms(runs, || combine(&permuted, &weights, &plan).unwrap()),
            median_ms(runs, || {
                grouped_matmul(&h, &w, Some(&bias), &plan.counts).unwrap()
            }),
            median_ms(runs, || {
                grouped_mm(&h, &w, Some(&bias), &plan.layout).unwrap()
            }),
            median_ms(runs, || {
                let y = grouped_matmul(&hg, &wg, Some(&bias), &plan.counts).unwrap();
                (y * &probe).sum(Kind::Float).backward();
            }),
            median_ms(runs, || {
                let y = grouped_mm(&hg, &wg, Some(&bias), &plan.layout).unwrap();
                (y * &probe).sum(Kind::Float).backward();
            }),
            median_ms(runs, || {
                padded_bmm(&h, &w, Some(&bias), &plan.counts).unwrap()
            }),
            median_ms(runs, || x.dropout(0.1, true)),
            median_ms(runs, || dropout(&x, 0.1, true)),
        ];
        for (row, ms) in rows.iter_mut().zip(times) {
            row.1.push(ms);
        }
    }
    println!(
        "Routing kernels, `E = {EXPERTS}`, `k = {K}`, `d = {D_MODEL}`, expert layer \
         `[{D_MODEL}, {D_FF}]` with bias over the `2T` dropless rows, median of {runs} calls\n"
    );
    let header: Vec<String> = tokens.iter().map(|t| format!("{t} tokens")).collect();
    println!("| kernel | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(tokens.len()));
    for (name, times) in rows {
        let cells: Vec<String> = times.iter().map(|ms| format!("{ms:.2} ms")).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--summary") {
        summary(args.iter().any(|a| a == "--quick"));
    } else {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
