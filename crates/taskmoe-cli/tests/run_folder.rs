//! A run folder that cannot be corrupted, through the `taskmoe` binary: two runs started at
//! once in one folder end in one clear refusal and one intact history; Ctrl-C finishes the
//! step, writes a checkpoint and says how to resume, and resuming completes the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskmoe-runfolder-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn train(out: &Path, extra: &[&str]) -> Command {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskmoe"));
    cmd.args(["train", "--config", tiny.to_str().unwrap()])
        .args(["--set", &format!("output.dir={}", out.display())])
        .args(["--set", "output.name=shared"])
        .args(extra);
    cmd
}

/// Waits until `path` holds at least `lines` lines.
fn wait_for_lines(path: &Path, lines: usize, child: &mut std::process::Child) {
    let started = Instant::now();
    loop {
        let n = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= lines {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {lines} steps"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_runs_in_one_folder_end_in_one_refusal() {
    let out = scratch("twice");
    let steps = [
        "--set",
        "train.steps=60",
        "--set",
        "train.checkpoint_every=20",
    ];
    let mut first = train(&out, &steps)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = out.join("shared");
    wait_for_lines(&run.join("metrics.jsonl"), 1, &mut first);
    let second = train(&out, &steps).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(!second.status.success(), "the second run is refused");
    assert!(
        err.contains("is in use by another process")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    assert!(first.wait().unwrap().success(), "the first run is unharmed");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=60).collect::<Vec<_>>(), "one history");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn ctrl_c_checkpoints_the_step_and_says_how_to_resume() {
    let out = scratch("sigint");
    let steps = [
        "--set",
        "train.steps=40",
        "--set",
        "train.checkpoint_every=100",
    ];
    let mut child = train(&out, &steps)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = out.join("shared");
    wait_for_lines(&run.join("metrics.jsonl"), 3, &mut child);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted after step") && err.contains("Resume with"),
        "{err}"
    );
    assert!(err.contains("--resume"), "{err}");
    let logged = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert!(logged < 40, "stopped early");
    assert!(
        run.join(format!("checkpoint-{logged}"))
            .join("COMPLETE.json")
            .exists(),
        "the last step taken is checkpointed: {err}"
    );
    let resumed = train(&out, &[&steps[..], &["--resume"]].concat())
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(run.join("checkpoint-40").exists());
    std::fs::remove_dir_all(out).unwrap();
}
