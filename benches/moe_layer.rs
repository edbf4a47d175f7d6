//! MoE layer against the dense FFN of equal active parameters, forward + backward, d = 512,
//! expert width 2048 (dense width `k * 2048`), token router.
//!
//! Three ways to run it:
//! - `cargo bench --bench moe_layer`: a criterion group (E = 8, k in {1, 2}, 2k and 8k tokens,
//!   dropless and capacity 1.25, and the dense FFNs);
//! - `cargo xtask bench moe [--quick]`: the full grid (E in {8, 32}, k in {1, 2}, tokens in
//!   {2k, 8k, 32k}, dropless and 1.25) as a markdown table with MoE / dense time ratios and the
//!   peak RSS of each point, each point measured in its own process so its memory is its own;
//! - `--point SPEC`: one point (used by the summary).
//!
//! Threads: 2 unless `TASKMOE_BENCH_THREADS` says otherwise.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use taskmoe_experts::{DenseFfn, MoeConfig, MoeLayer};
use taskmoe_router::{RouterConfig, RouterKind};
use tch::{nn, Device, Kind, Tensor};

#[path = "common.rs"]
mod common;
use common::{load_average, peak_rss_mib, threads};

const D_MODEL: usize = 512;
const D_EXPERT: usize = 2048;
const TASKS: usize = 4;

/// One measured configuration.
#[derive(Clone, Copy, Debug)]
enum Point {
    Moe {
        experts: usize,
        k: usize,
        tokens: i64,
        capacity: f64,
    },
    Dense {
        width: usize,
        tokens: i64,
    },
}

impl Point {
    fn spec(&self) -> String {
        match *self {
            Point::Moe {
                experts,
                k,
                tokens,
                capacity,
            } => format!("moe:{experts}:{k}:{tokens}:{capacity}"),
            Point::Dense { width, tokens } => format!("dense:{width}:{tokens}"),
        }
    }

    fn parse(spec: &str) -> Point {
        let f: Vec<&str> = spec.split(':').collect();
        match f.as_slice() {
            ["moe", e, k, t, c] => Point::Moe {
                experts: e.parse().unwrap(),
                k: k.parse().unwrap(),
                tokens: t.parse().unwrap(),
                capacity: c.parse().unwrap(),
            },
            ["dense", w, t] => Point::Dense {
                width: w.parse().unwrap(),
                tokens: t.parse().unwrap(),
            },
            _ => panic!("bad point spec {spec}"),
        }
    }
}

/// A forward + backward closure for a point, with its parameters kept alive.
struct Workload {
    vs: nn::VarStore,
    step: Box<dyn Fn()>,
}

fn workload(point: Point) -> Workload {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let tokens = match point {
        Point::Moe { tokens, .. } | Point::Dense { tokens, .. } => tokens,
    };
    let x =
        Tensor::randn([tokens, D_MODEL as i64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let step: Box<dyn Fn()> = match point {
        Point::Moe {
            experts,
            k,
            capacity,
            ..
        } => {
            let cfg = MoeConfig {
                router: RouterConfig {
                    kind: RouterKind::Token,
                    num_experts: experts,
                    k,
                    capacity_factor_train: capacity,
                    renormalize: k > 1,
                    ..RouterConfig::default()
                },
                d_ff: D_EXPERT,
                ..MoeConfig::default()
            };
            let layer = MoeLayer::new(vs.root(), &cfg, D_MODEL, TASKS).unwrap();
            let tasks = Tensor::randint(TASKS as i64, [tokens], (Kind::Int64, Device::Cpu));
            Box::new(move || {
                let out = layer.forward(&x, &tasks, true).unwrap();
                (out.y.sum(Kind::Float) + out.aux.weighted(&cfg.router)).backward();
            })
        }
        Point::Dense { width, .. } => {
            let ffn = DenseFfn::new(vs.root(), D_MODEL, width, 0.0).unwrap();
            Box::new(move || ffn.forward(&x, true).sum(Kind::Float).backward())
        }
    };
    Workload { vs, step }
}

impl Workload {
    fn run(&self) {
        for (_, mut v) in self.vs.variables() {
            v.zero_grad();
        }
        (self.step)();
    }
}

/// Measures one point: one warm-up step, then the median of `runs` steps.
fn run_point(spec: &str, runs: usize) {
    tch::set_num_threads(threads());
    let w = workload(Point::parse(spec));
    w.run();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            w.run();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("POINT {spec} {:.2} {:.0}", times[runs / 2], peak_rss_mib());
}

fn measure(point: Point, runs: usize) -> (f64, f64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--point", &point.spec(), "--runs", &runs.to_string()])
        .output()
        .expect("re-running the bench binary");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("POINT"))
        .unwrap_or_else(|| panic!("{}: {}", point.spec(), String::from_utf8_lossy(&out.stderr)));
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn summary(quick: bool) {
    let load_before = load_average();
    let tokens: &[i64] = if quick {
        &[2048, 8192]
    } else {
        &[2048, 8192, 32768]
    };
    let experts: &[usize] = if quick { &[8] } else { &[8, 32] };
    let runs = if quick { 3 } else { 5 };
    println!(
        "MoE layer vs dense FFN of equal active parameters, forward + backward, d = {D_MODEL}, \
         expert width {D_EXPERT}, {} threads, median of {runs} steps\n",
        threads()
    );
    println!("| tokens | E | k | capacity | MoE ms | dense ms (width k*{D_EXPERT}) | MoE / dense | MoE peak RSS MiB | dense peak RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &t in tokens {
        for k in [1usize, 2] {
            let (dense_ms, dense_rss) = measure(
                Point::Dense {
                    width: k * D_EXPERT,
                    tokens: t,
                },
                runs,
            );
            for &e in experts {
                for capacity in [0.0, 1.25] {
                    let point = Point::Moe {
                        experts: e,
                        k,
                        tokens: t,
                        capacity,
                    };
                    let (ms, rss) = measure(point, runs);
                    let cap = if capacity == 0.0 {
                        "dropless".to_string()
                    } else {
                        capacity.to_string()
                    };
                    println!(
                        "| {t} | {e} | {k} | {cap} | {ms:.1} | {dense_ms:.1} | {:.2} | {rss:.0} | {dense_rss:.0} |",
                        ms / dense_ms
                    );
                }
            }
        }
    }
    println!(
        "\nLoad average (1 / 5 / 15 min) before: {load_before}; after: {}.",
        load_average()
    );
}

fn criterion_benches() {
    tch::set_num_threads(threads());
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("moe_layer_fwd_bwd");
    for tokens in [2048i64, 8192] {
        for k in [1usize, 2] {
            let dense = workload(Point::Dense {
                width: k * D_EXPERT,
                tokens,
            });
            g.bench_with_input(
                BenchmarkId::new(format!("dense_width{}", k * D_EXPERT), tokens),
                &tokens,
                |b, _| b.iter(|| black_box(&dense).run()),
            );
            for capacity in [0.0, 1.25] {
                let moe = workload(Point::Moe {
                    experts: 8,
                    k,
                    tokens,
                    capacity,
                });
                g.bench_with_input(
                    BenchmarkId::new(format!("moe_e8_k{k}_cap{capacity}"), tokens),
                    &tokens,
                    |b, _| b.iter(|| black_box(&moe).run()),
                );
            }
        }
    }
    g.finish();
    c.final_summary();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(spec) = value("--point") {
        let runs = value("--runs").and_then(|r| r.parse().ok()).unwrap_or(5);
        run_point(&spec, runs);
    } else if args.iter().any(|a| a == "--summary") {
        summary(args.iter().any(|a| a == "--quick"));
    } else {
        criterion_benches();
    }
}
