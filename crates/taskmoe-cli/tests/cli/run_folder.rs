//! A run folder that cannot be corrupted, through the `taskmoe` binary: two runs started at
//! once in one folder end in one clear refusal and one intact history; Ctrl-C finishes the
//! step, writes a checkpoint and prints a shell-quoted command that resumes it; a moved run
//! folder resumes with `--run`, and evaluates, predicts and exports where it now is; a resume with nothing to resume from, or a changed
//! configuration, is an error that changes no file.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{on_run, scratch, stderr_of, taskmoe, train_tiny};

/// `taskmoe train` on the tiny configuration into the run `OUT/shared`, then `extra`.
fn train(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = train_tiny(out, &["--set", "output.name=shared"]);
    cmd.args(extra);
    cmd
}

/// Starts `cmd` in the background, its output dropped and its error stream to `stderr`.
fn spawn(mut cmd: Command, stderr: Stdio) -> Child {
    cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap()
}

/// Waits until `path` holds at least `lines` lines.
fn wait_for_lines(path: &Path, lines: usize, child: &mut Child) {
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
    let steps = ["--set", "train.steps=60", "--set", "checkpoint.every=20"];
    let mut first = spawn(train(&out, &steps), Stdio::null());
    let run = out.join("shared");
    wait_for_lines(&run.join("metrics.jsonl"), 1, &mut first);
    let second = train(&out, &steps).output().unwrap();
    let err = stderr_of(&second);
    assert!(!second.status.success(), "the second run is refused");
    assert!(
        err.contains("is in use by another process")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    assert!(first.wait().unwrap().success(), "the first run is unharmed");
    assert_eq!(
        logged_steps(&run),
        (1..=60).collect::<Vec<_>>(),
        "one history"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn ctrl_c_checkpoints_the_step_and_says_how_to_resume() {
    let out = scratch("sigint");
    // A run name with a space: the printed resume command must quote it.
    let steps = [
        "--set",
        "train.steps=40",
        "--set",
        "checkpoint.every=100",
        "--set",
        "output.name=my run",
    ];
    let mut child = spawn(train(&out, &steps), Stdio::piped());
    let run = out.join("my run");
    wait_for_lines(&run.join("metrics.jsonl"), 3, &mut child);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let err = stderr_of(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted after step") && err.contains("Resume with"),
        "{err}"
    );
    assert!(err.contains("'output.name=my run'"), "{err}");
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
    // The printed command, run by a shell as a user would paste it, completes the run.
    let printed = err
        .split("Resume with:\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("a resume command")
        .trim()
        .to_string();
    let resumed = Command::new("sh").args(["-c", &printed]).output().unwrap();
    assert!(
        resumed.status.success(),
        "{printed}: {}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(run.join("checkpoint-40").exists());
    std::fs::remove_dir_all(out).unwrap();
}

/// The steps `run`'s `metrics.jsonl` logged, in order.
fn logged_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_moved_run_folder_resumes_evaluates_predicts_and_exports_where_it_now_is() {
    let out = scratch("moved");
    let half = ["--set", "train.steps=6", "--set", "schedule.total_steps=12"];
    let first = train(&out, &half).output().unwrap();
    assert!(first.status.success(), "{}", stderr_of(&first));
    std::fs::create_dir_all(out.join("elsewhere")).unwrap();
    let moved = out.join("elsewhere/moved run");
    std::fs::rename(out.join("shared"), &moved).unwrap();
    let moved_str = moved.to_str().unwrap();

    // Its saved config names the old place: resuming through it is refused, pointing at --run.
    let config = moved.join("config.toml");
    let old = taskmoe(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--set",
        "train.steps=12",
        "--resume",
    ]);
    assert!(!old.status.success());
    assert!(
        stderr_of(&old).contains("was moved") && stderr_of(&old).contains("--run"),
        "{}",
        stderr_of(&old)
    );
    assert!(
        !out.join("shared").exists(),
        "nothing written at the old place"
    );

    // A changed configuration is refused, naming every key that differs with both values.
    let changed = on_run(
        "train",
        moved_str,
        &[
            "--resume",
            "--set",
            "train.steps=12",
            "--set",
            "train.seed=5",
            "--set",
            "data.batch_size=4",
        ],
    );
    let err = stderr_of(&changed);
    assert!(!changed.status.success());
    assert!(
        err.contains("`train.seed` was 0, is now 5")
            && err.contains("`data.batch_size` was 8, is now 4"),
        "{err}"
    );

    let resumed = on_run("train", moved_str, &["--resume", "--set", "train.steps=12"]);
    assert!(resumed.status.success(), "{}", stderr_of(&resumed));
    assert_eq!(logged_steps(&moved), (1..=12).collect::<Vec<_>>());
    assert!(moved.join("checkpoint-12").is_dir());

    // Where it now is, the run also evaluates, predicts and exports.
    let eval = on_run("eval", moved_str, &["--split", "test"]);
    assert!(eval.status.success(), "{}", stderr_of(&eval));
    assert!(moved.join("eval-test-step12.json").is_file());
    let input = out.join("in.tsv");
    std::fs::write(&input, "sentence\nw1 w7 w3\n").unwrap();
    let predict = taskmoe(&[
        "predict",
        "--run",
        moved_str,
        "--input",
        input.to_str().unwrap(),
        "--task",
        "lexicon_hi0",
    ]);
    assert!(predict.status.success(), "{}", stderr_of(&predict));
    assert_eq!(String::from_utf8_lossy(&predict.stdout).lines().count(), 1);
    let export = on_run("export", moved_str, &["--format", "hf"]);
    assert!(export.status.success(), "{}", stderr_of(&export));
    assert!(moved.join("export-hf-step12/config.json").is_file());
    assert!(
        !out.join("shared").exists(),
        "nothing written at the old place"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_resume_with_nothing_to_resume_from_changes_no_file() {
    let out = scratch("nothing");
    let run = out.join("shared");
    // No folder: an error, and no folder made.
    let none = train(&out, &["--resume"]).output().unwrap();
    assert!(!none.status.success());
    assert!(
        stderr_of(&none).contains("nothing to resume")
            && stderr_of(&none).contains("does not exist"),
        "{}",
        stderr_of(&none)
    );
    assert!(!run.exists(), "the resume made no folder");

    // Logs of a run killed before its first checkpoint, and a checkpoint cut short.
    std::fs::create_dir_all(run.join("checkpoint-3")).unwrap();
    std::fs::write(run.join("checkpoint-3/model.safetensors"), b"cut").unwrap();
    let log = "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n";
    std::fs::write(run.join("metrics.jsonl"), log).unwrap();
    std::fs::write(run.join("eval.jsonl"), "{\"step\":2}\n").unwrap();
    let listing = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(&run);
    let rejected = train(&out, &["--resume"]).output().unwrap();
    let err = stderr_of(&rejected);
    assert!(!rejected.status.success());
    assert!(
        err.contains("nothing to resume")
            && err.contains("checkpoint-3:")
            && err.contains("no file was changed"),
        "{err}"
    );
    // A fresh start is refused too: it would overwrite the logs.
    let fresh = train(&out, &[]).output().unwrap();
    assert!(!fresh.status.success());
    assert!(
        stderr_of(&fresh).contains("already holds checkpoints"),
        "{}",
        stderr_of(&fresh)
    );
    std::fs::remove_dir_all(run.join("checkpoint-3")).unwrap();
    let fresh = train(&out, &[]).output().unwrap();
    assert!(!fresh.status.success());
    assert!(
        stderr_of(&fresh).contains("logs of an earlier run (metrics.jsonl, eval.jsonl)"),
        "{}",
        stderr_of(&fresh)
    );
    let no_checkpoint = train(&out, &["--resume"]).output().unwrap();
    assert!(
        stderr_of(&no_checkpoint).contains("metrics.jsonl logs 3 steps"),
        "{}",
        stderr_of(&no_checkpoint)
    );
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(),
        log
    );
    assert_eq!(
        std::fs::read_to_string(run.join("eval.jsonl")).unwrap(),
        "{\"step\":2}\n"
    );
    let mut after = listing(&run);
    after.retain(|n| n != ".lock");
    let mut expected = before;
    expected.retain(|n| n != "checkpoint-3" && n != ".lock");
    assert_eq!(after, expected, "no file added");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_bad_set_key_is_named_as_the_set_not_the_file() {
    let out = scratch("badset");
    let output = train(&out, &["--set", "train.stepz=3"]).output().unwrap();
    let err = stderr_of(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("--set train.stepz=3: unknown key `train.stepz`")
            && !err.contains("tiny.toml"),
        "{err}"
    );
    let output = train(&out, &["--set", "train.steps=many"])
        .output()
        .unwrap();
    assert!(
        stderr_of(&output).contains("--set train.steps=many: key `train.steps`"),
        "{}",
        stderr_of(&output)
    );
    std::fs::remove_dir_all(out).unwrap();
}
