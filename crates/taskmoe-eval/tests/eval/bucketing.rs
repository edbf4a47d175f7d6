//! Length-bucketed evaluation (split sorted by length, each batch padded to its longest
//! example) gives the results of evaluation in split order padded to the run's length:
//! the same predictions in the same order, probabilities and metrics to fp32 rounding, and
//! the same routing counts. An evaluation shared by two ranks (Gloo over loopback) gives rank 0
//! the single-process result.

use std::path::Path;
use std::time::Duration;

use taskmoe_dist::{expect_all_ok, run_local, worker_test, DistEnv, ProcessGroup};
use taskmoe_eval::{
    eval_batch_positions, evaluate_sharded, evaluate_with, EvalBatching, EvalData, EvalResult,
};
use taskmoe_train::{RunConfig, RunData, Trainer};

/// Selects the rank worker of the two-process test.
const RANK_DIR: &str = "TASKMOE_SHARDED_EVAL_DIR";

/// A fresh (untrained) per-task MoE over two classification tasks and one regression task
/// with sentence lengths from 2 to 12 words; sentence pairs included.
const RUN: &str = include_str!("../fixtures/bucketing.toml");

fn assert_same(a: &EvalResult, b: &EvalResult, what: &str) {
    assert_eq!(a.routing, b.routing, "{what}: routing counts");
    assert_eq!(a.predictions.len(), b.predictions.len(), "{what}");
    for (p, q) in a.predictions.iter().zip(&b.predictions) {
        assert_eq!((&p.task, p.index), (&q.task, q.index), "{what}: order");
        assert_eq!(p.label, q.label, "{what}: gold");
        assert!(
            (p.predicted - q.predicted).abs() < 1e-5,
            "{what}: {} {}",
            p.task,
            p.index
        );
        for (name, v) in &p.probabilities {
            let w = &q.probabilities[name];
            let d = (v.as_f64().unwrap() - w.as_f64().unwrap()).abs();
            assert!(d < 1e-5, "{what}: probability of {name} differs by {d}");
        }
    }
    for (s, t) in a.tasks.iter().zip(&b.tasks) {
        assert_eq!(s.examples, t.examples);
        for (name, v) in &s.metrics {
            assert!(
                (v - t.metrics[name]).abs() < 1e-6,
                "{what}: {} {name}",
                s.task
            );
        }
    }
}

/// The run of [`RUN`] in `dir` (an untrained model; no process group joined).
fn fresh_run(dir: &Path) -> (RunData, Trainer) {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("run.toml");
    std::fs::write(&file, RUN).unwrap();
    let cfg = RunConfig::load(Some(&file), &[format!("output.dir={}", dir.display())]).unwrap();
    let data = RunData::load(&cfg).unwrap();
    let trainer = Trainer::with_distributed(&cfg, &data, false, None).unwrap();
    (data, trainer)
}

#[test]
fn bucketed_evaluation_equals_split_order_evaluation() {
    crate::threads();
    let dir = std::env::temp_dir().join(format!("taskmoe-bucketing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (data, trainer) = fresh_run(&dir);
    let eval = EvalData {
        specs: &data.specs,
        split: &data.validation,
        seq_len: data.seq_len,
        pad_id: data.pad_id,
    };
    let lengths: Vec<usize> = data.validation[data.train_tasks[0]]
        .examples
        .iter()
        .map(|e| e.input_ids.len())
        .collect();
    assert!(
        lengths.iter().min() < lengths.iter().max(),
        "the split must have varied lengths"
    );
    let run = |batching| {
        evaluate_with(
            trainer.model(),
            &eval,
            &data.train_tasks,
            batching,
            tch::Device::Cpu,
        )
        .unwrap()
    };
    let plain = run(EvalBatching {
        batch_size: 16,
        bucket_by_length: false,
    });
    assert_same(
        &run(EvalBatching::bucketed(16)),
        &plain,
        "bucketed, batch 16",
    );
    assert_same(&run(EvalBatching::bucketed(7)), &plain, "bucketed, batch 7");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One rank of the shared evaluation: the same model on both ranks (rank 0's weights,
/// broadcast), evaluated shared with batches of 7 (13 per task, so both ranks run some of
/// every task) and of 90 (one batch per task, so each rank has tasks it runs nothing of).
/// Rank 0 compares with its own single-process evaluation; each rank checks that it sent
/// exactly the rows of its share.
#[test]
fn sharded_evaluation_rank() {
    let Ok(dir) = std::env::var(RANK_DIR) else {
        return; // run as a plain test: nothing to do
    };
    crate::threads();
    let env = DistEnv::from_env().unwrap().expect("torchrun variables");
    let pg = ProcessGroup::connect(&env).unwrap();
    let (data, trainer) = fresh_run(&Path::new(&dir).join(format!("rank{}", env.rank)));
    let mut vars: Vec<_> = trainer.var_store().variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, mut t) in vars {
        pg.broadcast(&mut t, 0).unwrap();
    }
    let eval = EvalData {
        specs: &data.specs,
        split: &data.validation,
        seq_len: data.seq_len,
        pad_id: data.pad_id,
    };
    let mut rows_sent = 0;
    for batch_size in [7, 90] {
        let batching = EvalBatching::bucketed(batch_size);
        let shared = evaluate_sharded(
            trainer.model(),
            &eval,
            &data.train_tasks,
            batching,
            tch::Device::Cpu,
            &pg,
        )
        .unwrap();
        // This rank's share: every second batch, counted across the tasks.
        let batches: Vec<Vec<usize>> = data
            .train_tasks
            .iter()
            .flat_map(|&t| eval_batch_positions(&data.validation[t], batching))
            .collect();
        let mine: usize = batches.iter().skip(env.rank).step_by(2).map(Vec::len).sum();
        assert!(mine > 0 && mine < batches.iter().map(Vec::len).sum::<usize>());
        if env.rank == 1 {
            rows_sent += mine;
        }
        match env.rank {
            0 => {
                let single = evaluate_with(
                    trainer.model(),
                    &eval,
                    &data.train_tasks,
                    batching,
                    tch::Device::Cpu,
                )
                .unwrap();
                let shared = shared.expect("rank 0 gets the result");
                assert_same(&shared, &single, &format!("shared, batch {batch_size}"));
                assert_eq!(shared.tasks.len(), data.train_tasks.len());
                println!("RANK 0 MEAN {:.6}", shared.mean_primary());
            }
            _ => assert!(shared.is_none()),
        }
    }
    // Only rank 1's rows travel (rank 0 keeps its own): position + logits, fp64.
    let width = trainer.model().logits_width();
    let sent = pg.stats()[1].bytes as usize;
    assert_eq!(
        sent,
        rows_sent * (1 + width) * 8,
        "rows sent by rank {}",
        env.rank
    );
    println!("WORKER OK");
}

#[test]
fn sharded_evaluation_over_two_ranks_gives_rank0_the_single_process_result() {
    let dir = std::env::temp_dir().join(format!("taskmoe-sharded-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let outs = run_local(2, Duration::from_secs(60), Duration::from_secs(240), |_| {
        let mut c = worker_test(module_path!(), "sharded_evaluation_rank");
        c.env(RANK_DIR, &dir);
        c
    })
    .expect("spawn ranks");
    expect_all_ok(&outs, "WORKER OK");
    let _ = std::fs::remove_dir_all(&dir);
}
