//! Helpers shared by the CLI's integration tests: the built binary, scratch folders, the tiny
//! configuration, and what a finished command printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The MiniLM folder (`cargo xtask test` sets `TASKMOE_MINILM_DIR`).
pub fn minilm() -> PathBuf {
    let dir = std::env::var_os("TASKMOE_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/taskmoe/models/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").exists(),
        "{}: run `cargo xtask fetch-model minilm`",
        dir.display()
    );
    dir
}

/// `configs/tiny.toml`, the run configuration the CLI tests train.
pub fn tiny_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")
}

/// A fresh, empty folder under the temporary directory. The tests of this binary run in one
/// process, so `name` must be unique among them.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskmoe-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes its folder when dropped, also while a failed assertion unwinds (for tests whose
/// folders hold gigabytes).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `dir/rel`, creating the folders on the way.
pub fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The built `taskmoe` binary with `args`, not yet started.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskmoe"));
    cmd.args(args);
    cmd
}

/// Runs `taskmoe` with `args` to its end.
pub fn taskmoe(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

/// Runs `taskmoe <subcommand> --run <run>`, then `rest`, to its end.
pub fn on_run(subcommand: &str, run: impl AsRef<Path>, rest: &[&str]) -> Output {
    let run = run.as_ref().to_str().unwrap();
    command(&[subcommand, "--run", run])
        .args(rest)
        .output()
        .unwrap()
}

/// `taskmoe train` on the tiny configuration with its runs under `out`, then `extra`; not
/// yet started.
pub fn train_tiny(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = command(&["train", "--config", tiny_config().to_str().unwrap()]);
    cmd.args(["--set", &format!("output.dir={}", out.display())])
        .args(extra);
    cmd
}

/// `taskmoe train` on the tiny configuration for `steps` steps, its run `out/name`, to its
/// end.
pub fn train_tiny_steps(out: &Path, name: &str, steps: u64) -> Output {
    let (name, steps) = (
        format!("output.name={name}"),
        format!("train.steps={steps}"),
    );
    train_tiny(out, &["--set", &name, "--set", &steps])
        .output()
        .unwrap()
}

/// The standard output and standard error of a command.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The standard error of a command.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The standard output and standard error of a command that must have succeeded (a failure
/// panics, showing both).
pub fn ok_with_stderr(output: Output) -> (String, String) {
    let (out, err) = text(&output);
    assert!(output.status.success(), "failed: {err}\n{out}");
    (out, err)
}

/// The standard output of a command that must have succeeded.
pub fn ok(output: Output) -> String {
    ok_with_stderr(output).0
}

/// The standard error of a command that must have failed.
pub fn fails(output: Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    stderr_of(&output)
}
