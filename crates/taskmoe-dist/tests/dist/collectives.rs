//! Two ranks over loopback (Gloo): every collective against its single-process result (the
//! uneven gather to one rank included), the autograd collectives' gradients, subgroups, and a
//! rank that dies.
//!
//! Each test starts this test binary twice as the worker `worker` (selected by
//! `TMD_TEST_CASE`), with torchrun's variables set by `run_local`.

use std::time::{Duration, Instant};

use taskmoe_dist::{expect_all_ok, run_local, worker_test, DistEnv, ProcessGroup, RankOutput};
use tch::{Kind, Tensor};

const CASE: &str = "TMD_TEST_CASE";

fn launch(case: &str, collective_timeout: Duration) -> Vec<RankOutput> {
    run_local(2, collective_timeout, Duration::from_secs(60), |_| {
        let mut c = worker_test(module_path!(), "worker");
        c.env(CASE, case);
        c
    })
    .expect("spawn ranks")
}

fn close(a: &Tensor, b: &Tensor) {
    assert_eq!(a.size(), b.size());
    let d = (a - b).abs().max().double_value(&[]);
    assert!(d <= 1e-6, "max difference {d}:\n{a}\n{b}");
}

/// Rows of rank `r`: row `i` is `[100 r + i; 3]`.
fn rows(rank: usize, n: i64) -> Tensor {
    (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) + 100.0 * rank as f64)
        .unsqueeze(1)
        .expand([n, 3], false)
        .contiguous()
}

fn collectives(pg: &ProcessGroup) {
    let r = pg.rank();
    let base = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
    // all_reduce: the single-process result is the sum of both ranks' tensors.
    let mut t = &base * (r as f64 + 1.0);
    pg.all_reduce_sum(&mut t).unwrap();
    close(&t, &(&base * 3.0));
    let mut m = &base * (r as f64 + 1.0);
    pg.all_reduce_mean(&mut m).unwrap();
    close(&m, &(&base * 1.5));
    // all_gather: both ranks' tensors stacked in rank order.
    let g = pg.all_gather(&(&base + r as f64)).unwrap();
    close(&g, &Tensor::stack(&[&base + 0.0, &base + 1.0], 0));
    // broadcast from rank 1.
    let mut b = &base * (r as f64 + 1.0);
    pg.broadcast(&mut b, 1).unwrap();
    close(&b, &(&base * 2.0));
    assert!(pg.broadcast(&mut b, 2).is_err());
    pg.barrier().unwrap();
    let h = pg.all_reduce_f64(&[r as f64, 1.0]).unwrap();
    assert_eq!(h, vec![1.0, 2.0]);
    // gather_rows: rank 0 holds 2 rows, rank 1 none, then 3; only the root gets them.
    for (root, n) in [(0, [2, 0]), (1, [2, 3])] {
        let gathered = pg.gather_rows(&rows(r, n[r]), root).unwrap();
        match r == root {
            true => close(
                &gathered.expect("the root's rows"),
                &Tensor::cat(&[rows(0, n[0]), rows(1, n[1])], 0),
            ),
            false => assert!(gathered.is_none()),
        }
    }
    assert!(pg.gather_rows(&rows(r, 1), 2).is_err());
}

/// Rank 0 sends 1 row to itself and 3 to rank 1; rank 1 sends 0 rows to rank 0 and 2 to
/// itself. The result is what a single process would get by concatenating the pieces, and
/// the gradient of `sum(out * (rank + 1))` reaches each input row with the factor of the rank
/// it was sent to.
fn all_to_all(pg: &ProcessGroup) {
    let r = pg.rank();
    let (send, recv): (Vec<i64>, Vec<i64>) = if r == 0 {
        (vec![1, 3], vec![1, 0])
    } else {
        (vec![0, 2], vec![3, 2])
    };
    let x = rows(r, send.iter().sum()).set_requires_grad(true);
    let out = pg.all_to_all(&x, &recv, &send).unwrap();
    let expected = if r == 0 {
        rows(0, 1)
    } else {
        Tensor::cat(&[rows(0, 4).narrow(0, 1, 3), rows(1, 2)], 0)
    };
    close(&out.detach(), &expected);
    (&out * (r as f64 + 1.0)).sum(Kind::Float).backward();
    let grad = x.grad();
    let factors: Vec<f32> = send
        .iter()
        .enumerate()
        .flat_map(|(to, &n)| std::iter::repeat_n(to as f32 + 1.0, n as usize))
        .collect();
    let want = Tensor::from_slice(&factors)
        .unsqueeze(1)
        .expand([factors.len() as i64, 3], false);
    close(&grad, &want);
    assert!(pg.all_to_all(&x, &[1], &send).is_err());
    let stats = pg.stats();
    assert_eq!(stats[1].calls, 2, "forward and backward exchange");
    // Rank 0 sent 3 rows of 3 fp32 forward; backward it sends back the 0 rows it got.
    if r == 0 {
        assert_eq!(stats[1].bytes, 3 * 3 * 4);
    }

    // Differentiable sum of (r + 1) x_r with loss_r = (r + 1) * sum(y): the gradient at y summed
    // over ranks is 1 + 2 = 3, times rank r's own factor (r + 1).
    let x = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
    let y = pg
        .all_reduce_sum_autograd(&(&x * (r as f64 + 1.0)))
        .unwrap();
    close(&y.detach(), &Tensor::from_slice(&[3.0f32, -6.0]));
    (y.sum(Kind::Float) * (r as f64 + 1.0)).backward();
    let g = 3.0 * (r as f32 + 1.0);
    close(&x.grad(), &Tensor::from_slice(&[g, g]));
}

fn subgroups(pg: &ProcessGroup) {
    // The ranks in reverse: global rank 1 is rank 0 of the subgroup.
    let sub = pg.subgroup("reversed", &[1, 0]).unwrap().expect("a member");
    assert_eq!(sub.rank(), 1 - pg.rank());
    assert_eq!(sub.name(), "world/reversed");
    let g = sub
        .all_gather(&Tensor::from_slice(&[pg.rank() as i64]))
        .unwrap();
    assert_eq!(Vec::<i64>::try_from(g.reshape([-1])).unwrap(), vec![1, 0]);
    let alone = pg
        .subgroup(&format!("single{}", pg.rank()), &[pg.rank()])
        .unwrap();
    let mut t = Tensor::from_slice(&[5.0f32]);
    alone.expect("member").all_reduce_sum(&mut t).unwrap();
    close(&t, &Tensor::from_slice(&[5.0f32]));
}

/// Rank 1 exits right after the rendezvous; rank 0's all-reduce must fail, naming the rank and
/// the collective, well within the timeout.
fn dead_rank(pg: &ProcessGroup) {
    if pg.rank() == 1 {
        std::process::exit(3);
    }
    let started = Instant::now();
    let mut t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
    let err = pg
        .all_reduce_sum(&mut t)
        .and_then(|_| pg.all_reduce_sum(&mut t))
        .expect_err("the peer is gone");
    println!("ERROR AFTER {:.2}s: {err}", started.elapsed().as_secs_f64());
}

#[test]
fn worker() {
    let Ok(case) = std::env::var(CASE) else {
        return; // run as a plain test: nothing to do
    };
    let env = DistEnv::from_env().unwrap().expect("torchrun variables");
    let pg = ProcessGroup::connect(&env).unwrap();
    assert_eq!((pg.rank(), pg.size()), (env.rank, 2));
    match case.as_str() {
        "collectives" => collectives(&pg),
        "all_to_all" => all_to_all(&pg),
        "subgroups" => subgroups(&pg),
        "dead_rank" => dead_rank(&pg),
        other => panic!("unknown case {other}"),
    }
    println!("WORKER OK");
}

#[test]
fn collectives_match_single_process_results() {
    expect_all_ok(&launch("collectives", Duration::from_secs(20)), "WORKER OK");
}

#[test]
fn all_to_all_routes_rows_and_gradients_back() {
    expect_all_ok(&launch("all_to_all", Duration::from_secs(20)), "WORKER OK");
}

#[test]
fn subgroups_renumber_their_ranks() {
    expect_all_ok(&launch("subgroups", Duration::from_secs(20)), "WORKER OK");
}

#[test]
fn a_dead_rank_fails_the_others_within_the_timeout() {
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    let outs = launch("dead_rank", timeout);
    assert!(started.elapsed() < timeout + Duration::from_secs(20));
    assert_eq!(outs[1].status.and_then(|s| s.code()), Some(3));
    let survivor = &outs[0];
    assert!(
        survivor.success() && survivor.stdout.contains("WORKER OK"),
        "{}\n{}",
        survivor.stdout,
        survivor.stderr
    );
    let line = survivor
        .stdout
        .lines()
        .find(|l| l.contains("ERROR AFTER"))
        .unwrap_or_else(|| panic!("no error line:\n{}\n{}", survivor.stdout, survivor.stderr));
    assert!(
        line.contains("rank 0 of 2") && line.contains("all_reduce"),
        "{line}"
    );
}

#[test]
fn torchrun_env_is_read_and_checked() {
    // Only the pure parts: reading the process environment would race with other tests.
    let env = DistEnv {
        rank: 2,
        world_size: 2,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: 1,
        timeout: Duration::from_secs(1),
    };
    let err = env.check().unwrap_err().to_string();
    assert!(
        err.contains("RANK") && err.contains("WORLD_SIZE = 2"),
        "{err}"
    );
    let vars = env.vars_for(1);
    assert!(vars.contains(&("RANK", "1".to_string())));
    assert!(vars.contains(&("MASTER_PORT", "1".to_string())));
}
