//! Where things live (the workspace root, the download cache) and how xtask runs other programs.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::Result;

/// The workspace root: the parent of this crate's manifest directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The per-user cache shared by every clone: `$TASKMOE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/taskmoe`, else `$HOME/.cache/taskmoe`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = env::var_os("TASKMOE_CACHE_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("taskmoe"));
    }
    match env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("taskmoe")),
        None => Err("cannot place the download cache: set TASKMOE_CACHE_DIR or HOME".into()),
    }
}

/// Prepends `dir` to the `PATH`-like variable `name` as it is in this process.
pub fn prepend_path_var(name: &str, dir: &Path) -> OsString {
    let mut parts = vec![dir.to_path_buf()];
    if let Some(old) = env::var_os(name) {
        parts.extend(env::split_paths(&old).filter(|p| p != dir));
    }
    env::join_paths(parts).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

/// Runs `cmd` with inherited stdio, echoing it first; an unsuccessful exit is an error that
/// names the command.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    check_status(cmd, status)
}

/// Turns a non-zero exit into an error naming the command.
pub fn check_status(cmd: &Command, status: ExitStatus) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(cmd)).into())
    }
}

/// A shell-like rendering of a command for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs a helper program, showing nothing unless it fails; then the error is one line:
/// `what`, the exit status and `reason` of the helper's stderr.
pub fn run_quiet(cmd: &mut Command, what: &str, reason: fn(&str) -> String) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start `{}`: {e}", describe(cmd)))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!("failed {what} ({}): {}", out.status, reason(&stderr)).into())
}

/// `cargo` as invoked by the user (cargo sets `$CARGO` for the programs it runs).
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}
