//! Pinned Debian packages for the real-text benchmarks (`fetch-data wordnet`, `fetch-data
//! pydocs`): `apt-get download PACKAGE=VERSION` into the cache once (apt checks the package
//! against the signed archive index), its SHA-256 checked on every use, `dpkg-deb -x` to
//! unpack it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::project;
use crate::pypi::remove_leftovers;
use crate::Result;

/// One pinned package.
pub struct Deb {
    /// The package name (`wordnet-base`).
    pub package: &'static str,
    /// Its version in Debian bookworm (`1:3.0-37`).
    pub version: &'static str,
    /// The file name the cached package gets (the archive's: `wordnet-base_3.0-37_all.deb`).
    pub file: &'static str,
    /// SHA-256 of that file.
    pub sha256: &'static str,
    /// Its size, for the download message (`6.5 MB`).
    pub size: &'static str,
}

/// Whether `apt-get` and `dpkg-deb` are on the `PATH` (a Debian-like machine).
pub fn tools_available() -> bool {
    ["apt-get", "dpkg-deb"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The package in `debs`, downloaded with apt when missing; its SHA-256 is checked.
pub fn ensure_deb(debs: &Path, deb: &Deb) -> Result<PathBuf> {
    let path = debs.join(deb.file);
    if path.exists() {
        check_sha256(&path, deb)?;
        return Ok(path);
    }
    fs::create_dir_all(debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    remove_leftovers(debs, &[".partial-"]);
    let partial = debs.join(format!(".partial-{}", std::process::id()));
    fs::create_dir_all(&partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let (package, version) = (deb.package, deb.version);
    eprintln!(
        "downloading {package} {version} (Debian, about {}) into {}",
        deb.size,
        debs.display()
    );
    let mut cmd = Command::new("apt-get");
    cmd.args(["download", "-q", &format!("{package}={version}")])
        .current_dir(&partial);
    quiet(&mut cmd, &format!("downloading {package} {version}")).map_err(|e| {
        format!(
            "{e}\n(the benchmark is pinned to Debian bookworm's {package} {version}; without \
             apt access, put that package at {})",
            path.display()
        )
    })?;
    let got: Vec<PathBuf> = fs::read_dir(&partial)
        .map_err(|e| format!("cannot list {}: {e}", partial.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    let [file] = got.as_slice() else {
        return Err(format!(
            "apt-get download left {} .deb files in {}",
            got.len(),
            partial.display()
        )
        .into());
    };
    check_sha256(file, deb)?;
    fs::rename(file, &path)
        .map_err(|e| format!("cannot move {} into place: {e}", file.display()))?;
    let _ = fs::remove_dir_all(&partial);
    Ok(path)
}

/// `dpkg-deb -x PACKAGE INTO`.
pub fn unpack(deb: &Path, into: &Path) -> Result<()> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(into);
    quiet(&mut cmd, &format!("unpacking {}", deb.display()))
}

fn check_sha256(path: &Path, deb: &Deb) -> Result<()> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let sum = text.split_whitespace().next().unwrap_or("");
    if !out.status.success() || sum != deb.sha256 {
        return Err(format!(
            "{} has SHA-256 {sum:?}, expected {} ({} {}); delete it to download it again",
            path.display(),
            deb.sha256,
            deb.package,
            deb.version
        )
        .into());
    }
    Ok(())
}

/// Runs a helper, showing its error lines (`E: ...` for apt) only when it fails.
fn quiet(cmd: &mut Command, what: &str) -> Result<()> {
    project::run_quiet(cmd, what, apt_reason)
}

/// apt's `E:` lines, else the last line of `stderr`.
fn apt_reason(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("E:")).collect();
    if errors.is_empty() {
        stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .to_string()
    } else {
        errors.join("; ")
    }
}
