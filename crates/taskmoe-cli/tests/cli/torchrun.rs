//! `taskmoe train` under torchrun's conventions: two processes with `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` set (what `cargo xtask train --nproc 2` and
//! torchrun do), data + expert parallel on the tiny configuration. Both ranks share every
//! evaluation; rank 0 prints the table and writes the run; rank 1 prints nothing; a
//! single-process `taskmoe eval` of the best validation checkpoint reproduces rank 0's final
//! table (the checkpoint has the single-process layout, every rank restored it, and the
//! shared final test scores as one process does).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn two_ranks_train_and_a_single_process_evaluates_their_checkpoint() {
    let out = std::env::temp_dir().join(format!("taskmoe-cli-{}-torchrun", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let port = TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(env!("CARGO_BIN_EXE_taskmoe"))
                .args(["train", "--config", config.to_str().unwrap()])
                .args(["--set", &format!("output.dir={}", out.display())])
                .args([
                    "--set",
                    "output.name=run",
                    "--set",
                    "runtime.expert_parallel=2",
                    "--set",
                    "eval.every=3",
                    "--set",
                    "eval.test_checkpoint=best",
                ])
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("TASKMOE_DIST_TIMEOUT", "60")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (rank, o) in outputs.iter().enumerate() {
        assert!(
            o.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let table = String::from_utf8_lossy(&outputs[0].stdout).into_owned();
    assert!(
        table.contains("lexicon_hi0") && table.contains("majority"),
        "{table}"
    );
    assert!(outputs[1].stdout.is_empty(), "rank 1 printed to stdout");
    let stderr0 = String::from_utf8_lossy(&outputs[0].stderr);
    assert!(
        stderr0.contains("data-parallel job of 2 ranks on gloo (expert parallel 2)"),
        "{stderr0}"
    );
    assert!(stderr0.contains("group world/ep0: all_reduce"), "{stderr0}");
    // Rank 1 took its share of the four validation evaluations (every 3 steps).
    let stderr1 = String::from_utf8_lossy(&outputs[1].stderr);
    let evaluation = stderr1
        .lines()
        .find(|l| l.starts_with("rank 1 group world/evaluation: all_reduce"))
        .unwrap_or_else(|| panic!("no evaluation group line:\n{stderr1}"));
    assert!(
        !evaluation.contains("all_to_all 0 calls"),
        "rank 1 sent no logits: {evaluation}"
    );

    let run = out.join("run");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 12);
    let evals = std::fs::read_to_string(run.join("eval.jsonl")).unwrap();
    assert_eq!(evals.lines().count(), 4, "{evals}");
    assert!(
        evals.lines().all(|l| l.contains("\"validation\"")),
        "{evals}"
    );
    // The final test scored the best validation checkpoint, on both ranks.
    let best = stderr0
        .lines()
        .find_map(|l| l.strip_prefix("final test: the best validation checkpoint, step "))
        .unwrap_or_else(|| panic!("no best checkpoint named:\n{stderr0}"));
    eprintln!("best validation checkpoint: step {best}");
    let best = run.join(format!("checkpoint-{best}"));
    let eval = Command::new(env!("CARGO_BIN_EXE_taskmoe"))
        .args([
            "eval",
            "--checkpoint",
            best.to_str().unwrap(),
            "--split",
            "test",
        ])
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    // `eval` names the checkpoint on its first line, then prints the same table.
    let evaluated = String::from_utf8_lossy(&eval.stdout).into_owned();
    assert!(evaluated.starts_with("checkpoint "), "{evaluated}");
    assert!(evaluated.ends_with(&table), "{evaluated}\n---\n{table}");
    let _ = std::fs::remove_dir_all(&out);
}
