//! Criterion benches of the data layer: generating the default synthetic benchmark, drawing a
//! mixed batch, and converting it to tensors.
//!
//! Run with `cargo xtask bench -- data` (or `cargo bench --bench data`).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use taskmoe_data::synthetic::{SyntheticBenchmark, SyntheticConfig};
use taskmoe_data::MixtureSpec;
use tch::Device;

fn bench_data(c: &mut Criterion) {
    let mut g = c.benchmark_group("data");
    g.sample_size(20).warm_up_time(Duration::from_millis(500));
    g.bench_function("generate_default_synthetic", |b| {
        b.iter(|| SyntheticBenchmark::generate(black_box(&SyntheticConfig::default())).unwrap())
    });

    let bench = SyntheticBenchmark::default_benchmark();
    let spec = MixtureSpec::ExamplesProportional {
        cap: Some(2000.0),
        temperature: 2.0,
        scale: 1.0,
    };
    let sampler = bench.train_sampler(&spec, 64, 0).unwrap();
    let mut step = 0u64;
    g.bench_function("sampler_batch_64", |b| {
        b.iter(|| {
            step += 1;
            sampler.batch(black_box(step))
        })
    });
    let batch = sampler.batch(0);
    g.bench_function("batch_to_tensors_64", |b| {
        b.iter(|| batch.to_tensors(Device::Cpu).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_data);
criterion_main!(benches);
