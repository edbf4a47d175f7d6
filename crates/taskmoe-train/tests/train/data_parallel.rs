//! Data parallelism on 2 processes over loopback (Gloo): a run's per-step losses equal the
//! single-process run of the same global batch, and a job stopped after a checkpoint resumes
//! on the same losses.
//!
//! Tolerance: the ranks average per-shard mean losses and per-shard gradients, the single
//! process takes one mean over the whole batch, so the two differ by fp32 reduction order only:
//! losses and gradient norms must agree to 1e-4 relative over the run (observed: 7e-6).
//! Dropout and router noise are off (their masks are drawn per rank) and the capacity is large
//! enough that no slot is dropped. The aux losses are on: the MoE layers compute the load
//! balance and mutual information over all ranks' tokens (the statistics group), so they are
//! the global batch's.

use crate::no_eval;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use taskmoe_dist::{expect_all_ok, run_local, worker_test, RankOutput};
use taskmoe_train::{EvalPoint, RunConfig, RunData, Silent, Trainer};

const CASE: &str = "TMT_DP_CASE";
const OUT: &str = "TMT_DP_OUT";
const STOP: &str = "TMT_DP_STOP";
const EP: &str = "TMT_DP_EXPERT_PARALLEL";
const KILL: &str = "TMT_DP_KILL_AFTER";
const AUX: &str = "TMT_DP_AUX";

/// The tiny run of 6 steps; `aux` gives the aux losses weights and turns on the load balance
/// over tasks and bias balancing (all computed over all ranks' tokens, so they match the
/// single process), else the weights are 0.
fn config(out: &Path, expert_parallel: usize, aux: bool) -> RunConfig {
    let mut sets: Vec<String> = [
        format!("runtime.expert_parallel={expert_parallel}"),
        format!("output.dir={}", out.display()),
        "output.name=run".to_string(),
        "train.steps=6".to_string(),
        "eval.every=0".to_string(),
        "checkpoint.every=3".to_string(),
        "model.dropout=0.0".to_string(),
        "model.attention_dropout=0.0".to_string(),
        "model.moe.expert_dropout=0.0".to_string(),
        "model.moe.router.noise_std=0.0".to_string(),
        "model.moe.router.capacity_factor_train=8.0".to_string(),
    ]
    .into();
    let weights = if aux {
        ["0.01", "0.001", "0.01"]
    } else {
        ["0.0", "0.0", "0.0"]
    };
    for (key, w) in [
        "load_balance_coef",
        "z_loss_coef",
        "mutual_information_coef",
    ]
    .iter()
    .zip(weights)
    {
        sets.push(format!("model.moe.router.{key}={w}"));
    }
    if aux {
        // The load balance over tasks and the selection bias of bias balancing, both from
        // every rank's routing (per-task sums and slot counts reduced over the group).
        sets.push("model.moe.router.balance_over=tasks".into());
        sets.push("model.moe.router.bias_update_rate=0.01".into());
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    RunConfig::load(Some(&path), &sets).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("taskmoe-dp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    out
}

/// (loss, grad_norm) per logged step of `run_dir/metrics.jsonl`.
fn losses(run_dir: &Path) -> Vec<(u64, f64, f64)> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// This test binary's `worker` test as a command, running case `case` into `out`.
fn worker_command(case: &str, out: &Path) -> Command {
    let mut c = worker_test(module_path!(), "worker");
    c.env(CASE, case).env(OUT, out);
    c
}

/// The training worker, with `expert_parallel` ranks per expert group and the aux losses on
/// or off (see [`config`]).
fn train_worker(out: &Path, expert_parallel: usize, aux: bool) -> Command {
    let mut c = worker_command("train", out);
    c.env(EP, expert_parallel.to_string())
        .env(AUX, (aux as u8).to_string());
    c
}

/// `world` ranks of `command` over loopback, each collective given 30 s and the job 120 s.
fn ranks(world: usize, command: impl Fn() -> Command) -> Vec<RankOutput> {
    run_local(
        world,
        Duration::from_secs(30),
        Duration::from_secs(120),
        |_| command(),
    )
    .unwrap()
}

fn dp_job(out: &Path, stop_after: Option<u64>, expert_parallel: usize, aux: bool) {
    job(2, out, stop_after, expert_parallel, aux);
}

/// Two ranks that train `steps` steps and then `kill -9` themselves (no unwinding, no
/// flushing, no cleanup of any kind).
fn killed_job(out: &Path, steps: u64, expert_parallel: usize, aux: bool) {
    use std::os::unix::process::ExitStatusExt;
    let outs = ranks(2, || {
        let mut c = train_worker(out, expert_parallel, aux);
        c.env(KILL, steps.to_string());
        c
    });
    for o in &outs {
        assert_eq!(
            o.status.and_then(|s| s.signal()),
            Some(9),
            "rank {}: {}\n{}",
            o.rank,
            o.stdout,
            o.stderr
        );
    }
}

/// Runs `world` ranks of the worker; a world of 1 is a plain single-process run (torchrun's
/// `WORLD_SIZE=1`).
fn job(world: usize, out: &Path, stop_after: Option<u64>, expert_parallel: usize, aux: bool) {
    let outs = ranks(world, || {
        let mut c = train_worker(out, expert_parallel, aux);
        if let Some(n) = stop_after {
            c.env(STOP, n.to_string());
        }
        c
    });
    expect_all_ok(&outs, "WORKER OK");
}

fn assert_same(single: &[(u64, f64, f64)], dp: &[(u64, f64, f64)]) {
    assert_eq!(single.len(), dp.len());
    let mut worst = 0f64;
    for (a, b) in single.iter().zip(dp) {
        worst = worst.max((a.1 - b.1).abs() / a.1.abs().max(1.0));
        assert_eq!(a.0, b.0);
        for (x, y) in [(a.1, b.1), (a.2, b.2)] {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1.0),
                "step {}: single {x} vs data-parallel {y}",
                a.0
            );
        }
    }
    eprintln!("largest relative loss difference: {worst:.2e}");
}

#[test]
fn worker() {
    let Ok(case) = std::env::var(CASE) else {
        return; // run as a plain test: nothing to do
    };
    if case == "best" {
        return best_worker();
    }
    let out = PathBuf::from(std::env::var(OUT).unwrap());
    let ep = std::env::var(EP).unwrap().parse().unwrap();
    let aux = std::env::var(AUX).unwrap() == "1";
    let cfg = config(&out, ep, aux);
    let data = RunData::load(&cfg).unwrap();
    let stop = std::env::var(STOP).ok().map(|s| s.parse().unwrap());
    // Resume when an earlier worker left a checkpoint (a resume with none is an error).
    let resume = !taskmoe_train::list_checkpoints(cfg.run_dir())
        .unwrap()
        .is_empty();
    let mut trainer = Trainer::new(&cfg, &data, resume).unwrap();
    let resumed_at = trainer.state().step;
    if ep > 1 {
        // Each rank stores its half of every MoE block's experts, and the optimizer its moments.
        let blocks = trainer.model().moe_layers();
        assert_eq!(blocks.len(), 2);
        for (_, layer) in blocks {
            assert!(layer.experts_sharded());
            assert_eq!(layer.experts().num_experts(), 4 / ep);
        }
    }
    if let Ok(steps) = std::env::var(KILL) {
        trainer
            .train(&mut no_eval, &mut Silent, Some(steps.parse().unwrap()))
            .unwrap();
        // SAFETY: kill(2) on this process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    trainer.train(&mut no_eval, &mut Silent, stop).unwrap();
    let world: usize = std::env::var("WORLD_SIZE").unwrap().parse().unwrap();
    match trainer.distributed() {
        None => assert_eq!(world, 1),
        Some(d) => {
            assert_eq!(d.world_size(), world);
            let stats = d.stats();
            let steps = trainer.state().step - resumed_at;
            if ep > 1 {
                // Two MoE blocks; per block and step two exchanges forward, two backward; per
                // checkpoint (every 3 steps) one gather to rank 0 of each sharded moment (2
                // blocks x 4 expert tensors x 2 moments).
                let checkpoints = (resumed_at + 1..=trainer.state().step)
                    .filter(|s| s % 3 == 0)
                    .count() as u64;
                assert_eq!(
                    stats[1].1[1].calls,
                    steps * 2 * 4 + checkpoints * 16,
                    "{stats:?}"
                );
            }
            // The statistics group: one all-reduce per block and step, forward and backward.
            let statistics = stats
                .iter()
                .find(|(name, _)| name == "world/statistics")
                .unwrap();
            assert_eq!(statistics.1[0].calls, steps * 2 * 2, "{stats:?}");
        }
    }
    println!("WORKER OK");
}

/// A rank of the best-checkpoint job: evaluations at steps 2, 4 and 6 whose score only rank 0
/// computes (0.5, 0.9, 0.1; the other ranks name it with NaN, as a shared evaluation does).
/// Every rank must record rank 0's best, step 4, and restore that checkpoint's weights.
fn best_worker() {
    let out = PathBuf::from(std::env::var(OUT).unwrap());
    let mut cfg = config(&out, 2, false);
    cfg.eval.every = 2;
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    let rank0 = trainer.is_rank0();
    let mut scripted = |_: &taskmoe_model::MultiTaskModel, step: u64| {
        let value = match (rank0, step) {
            (false, _) => f64::NAN,
            (true, 2) => 0.5,
            (true, 4) => 0.9,
            (true, _) => 0.1,
        };
        Ok(EvalPoint {
            record: serde_json::json!({}),
            score: Some(("validation/mean".into(), value, true)),
        })
    };
    trainer.train(&mut scripted, &mut Silent, None).unwrap();
    let best = trainer.state().best.clone().expect("a best on every rank");
    assert_eq!((best.step, best.value), (4, 0.9));
    assert_eq!(trainer.restore_best().unwrap(), Some(4));
    let saved = tch::Tensor::read_safetensors(
        out.join("run")
            .join("checkpoint-4")
            .join("model.safetensors"),
    )
    .unwrap();
    let vars = trainer.var_store().variables();
    assert_eq!(saved.len(), vars.len());
    for (name, t) in saved {
        assert!(vars[&name].equal(&t), "{name} differs from checkpoint-4");
    }
    println!("WORKER OK");
}

#[test]
fn every_rank_records_rank0s_best_and_restores_it() {
    let out = scratch("best");
    let outs = ranks(2, || worker_command("best", &out));
    expect_all_ok(&outs, "WORKER OK");
    let _ = std::fs::remove_dir_all(out);
}

/// The single-process run's log, in a folder of its own.
///
/// It runs in a child process, as the ranks do: the tests of this file run in parallel, and
/// two trainers in one process would interleave draws from libtorch's global generator.
fn reference(name: &str, aux: bool) -> (Vec<(u64, f64, f64)>, PathBuf) {
    let out = scratch(name);
    job(1, &out, None, 1, aux);
    let log = losses(&out.join("run"));
    assert_eq!(log.len(), 6);
    (log, out)
}

#[test]
fn two_ranks_match_the_single_process_run_and_resume_on_the_same_losses() {
    let (reference, single_out) = reference("single", true);
    let dp_out = scratch("dp");
    dp_job(&dp_out, None, 1, true);
    let dp_dir = dp_out.join("run");
    assert_same(&reference, &losses(&dp_dir));
    // Rank 0 wrote the checkpoints, in the single-process layout.
    assert!(dp_dir
        .join("checkpoint-6")
        .join("model.safetensors")
        .is_file());

    // Stopped after the step-3 checkpoint, then resumed by a new job: the same losses.
    let resumed_out = scratch("resumed");
    dp_job(&resumed_out, Some(3), 1, true);
    assert_eq!(losses(&resumed_out.join("run")).len(), 3);
    dp_job(&resumed_out, None, 1, true);
    assert_same(&reference, &losses(&resumed_out.join("run")));

    for d in [single_out, dp_out, resumed_out] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `runtime.expert_parallel = 2`: the 4 experts of each MoE block split over the 2 ranks, aux
/// losses on (load balance, z-loss, mutual information, computed over both ranks' tokens). Both
/// ranks are killed with SIGKILL after step 4 (one step past the step-3 checkpoint); a new job
/// resumes from the checkpoint and the whole log equals the single-process run's. Each rank
/// stores only its 2 experts; the final checkpoint's weights and optimizer state have the
/// single-process layout (moments within 1e-3 of the largest plus 1e-9: they integrate the
/// fp32 reduction-order differences of every step).
#[test]
fn expert_parallel_run_resumes_after_kill_9_on_the_single_process_losses() {
    let (reference, single_out) = reference("single-ep", true);
    let ep_out = scratch("ep");
    killed_job(&ep_out, 4, 2, true);
    assert_eq!(losses(&ep_out.join("run")).len(), 4);
    dp_job(&ep_out, None, 2, true);
    assert_same(&reference, &losses(&ep_out.join("run")));
    let ckpt = ep_out
        .join("run")
        .join("checkpoint-6")
        .join("model.safetensors");
    let single = single_out
        .join("run")
        .join("checkpoint-6")
        .join("model.safetensors");
    let a = tch::Tensor::read_safetensors(&ckpt).unwrap();
    let b = tch::Tensor::read_safetensors(&single).unwrap();
    let names = |v: &[(String, tch::Tensor)]| {
        let mut n: Vec<(String, Vec<i64>)> = v.iter().map(|(k, t)| (k.clone(), t.size())).collect();
        n.sort();
        n
    };
    assert_eq!(names(&a), names(&b));
    // The optimizer state too: the experts' moments gathered from their shards.
    let state = |dir: &Path| {
        let file = dir
            .join("run")
            .join("checkpoint-6")
            .join("optimizer.safetensors");
        let mut v = tch::Tensor::read_safetensors(file).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (a, b) = (state(&ep_out), state(&single_out));
    assert_eq!(names(&a), names(&b));
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if x.is_floating_point() {
            let d = (x - y).abs().max().double_value(&[]);
            let scale = y.abs().max().double_value(&[]);
            // Absolute floor: an attention key bias has no gradient but round-off.
            assert!(
                d <= 1e-3 * scale + 1e-9,
                "{name}: difference {d} (largest {scale})"
            );
        } else {
            assert!(x.equal(y), "{name}");
        }
    }
    for d in [single_out, ep_out] {
        let _ = std::fs::remove_dir_all(d);
    }
}
