//! `cargo xtask setup`: provisions the pinned libtorch (see DESIGN.md section 5).
//!
//! tch's own `download-libtorch` feature cannot reach its servers from the machines this project
//! runs on, but PyPI is reachable, and the PyTorch wheel carries a complete libtorch. So:
//!
//! 1. `pip download` the pinned `torch` wheel and the two CUDA runtime wheels that
//!    `libtorch_cpu.so` links against even on CPU, into a per-user cache (outside the work tree,
//!    so a second clone downloads nothing). Downloads land in a private temporary folder and are
//!    renamed into the cache only once pip has verified them.
//! 2. Unpack `torch/include`, the CPU libraries of `torch/lib` and `libcudart`/`libcupti` into
//!    `.libtorch.tmp-<pid>/` in the workspace, check the version and that every library
//!    resolves, write a stamp, then rename the folder to `.libtorch/`. An interrupted setup
//!    leaves only a temporary folder, which the next run deletes: `.libtorch/` exists only
//!    when it is complete.
//!
//! A `LIBTORCH` set in the environment (a user's own CPU or CUDA libtorch 2.11) is used as it is.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::project::{self, prepend_path_var};
use crate::pypi::{self, remove_leftovers, Wheel};
use crate::Result;

/// The PyTorch release tch 0.24.0 binds. Moves only together with `tch` in the root
/// `Cargo.toml` and with the PyTorch image of the GPU machines.
pub const TORCH_VERSION: &str = "2.11.0";

const WHEELS: [Wheel; 3] = [
    Wheel {
        requirement: "torch==2.11.0",
        file_prefix: "torch-2.11.0-",
    },
    Wheel {
        requirement: "nvidia-cuda-runtime==13.0.96",
        file_prefix: "nvidia_cuda_runtime-13.0.96-",
    },
    Wheel {
        requirement: "nvidia-cuda-cupti==13.0.85",
        file_prefix: "nvidia_cuda_cupti-13.0.85-",
    },
];

/// Folder name of the provisioned libtorch in the workspace root (git-ignored).
const INSTALL_DIR: &str = ".libtorch";
/// Written last into a complete install; names what it holds.
const STAMP_FILE: &str = "taskmoe-libtorch.stamp";
/// Libraries that must be present and must resolve all their dependencies.
const REQUIRED_LIBS: [&str; 5] = [
    "libtorch_cpu.so",
    "libtorch.so",
    "libc10.so",
    "libcudart.so.13",
    "libcupti.so.13",
];

/// Unpacks what libtorch needs on CPU from the wheels. Arguments: destination `torch` folder,
/// then the torch wheel, then the CUDA wheels. Python's zipfile checks each member's CRC.
const UNPACK_PY: &str = r#"
import os, shutil, sys, zipfile
dest, torch_whl, cuda_whls = sys.argv[1], sys.argv[2], sys.argv[3:]
skip = ("cuda", "nvrtc", "nvshmem", "_python")
def copy(z, member, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with z.open(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
with zipfile.ZipFile(torch_whl) as z:
    for info in z.infolist():
        name = info.filename
        if info.is_dir():
            continue
        if name.startswith("torch/include/") or name == "torch/version.py":
            copy(z, name, os.path.join(dest, name[len("torch/"):]))
        elif name.startswith("torch/lib/") and name.count("/") == 2 and ".so" in name:
            base = os.path.basename(name)
            if not any(s in base for s in skip):
                copy(z, name, os.path.join(dest, "lib", base))
for whl in cuda_whls:
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            base = os.path.basename(name)
            if "/lib/" in name and (base.startswith("libcudart.so.") or base.startswith("libcupti.so.")):
                copy(z, name, os.path.join(dest, "lib", base))
"#;

/// A usable libtorch: its root (the folder `LIBTORCH` names) and where it came from.
pub struct Libtorch {
    /// The folder holding `include/` and `lib/`.
    pub root: PathBuf,
    /// True when `LIBTORCH` came from the user's environment.
    pub from_user: bool,
}

impl Libtorch {
    /// The shared-library folder.
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("lib")
    }

    /// Points a command (cargo, or a built binary) at this libtorch for building and running.
    pub fn apply_env(&self, cmd: &mut Command) {
        cmd.env("LIBTORCH", &self.root);
        cmd.env(
            "LD_LIBRARY_PATH",
            prepend_path_var("LD_LIBRARY_PATH", &self.lib_dir()),
        );
    }
}

/// Returns the libtorch to use, provisioning the pinned one first if it is not there yet.
pub fn ensure() -> Result<Libtorch> {
    let install = project::root().join(INSTALL_DIR);
    if let Some(user) = user_setting(&install) {
        return user_libtorch(user);
    }
    if is_complete(&install) {
        return Ok(Libtorch {
            root: install.join("torch"),
            from_user: false,
        });
    }
    provision(&install)
}

/// `cargo xtask setup [--force]`. `--force` unpacks the wheels again; the old install stays
/// in place until the new one is complete.
pub fn setup(args: &[String]) -> Result<()> {
    let force = match args {
        [] => false,
        [flag] if flag == "--force" => true,
        _ => return Err("usage: cargo xtask setup [--force]".into()),
    };
    let install = project::root().join(INSTALL_DIR);
    let lt = if force && user_setting(&install).is_none() {
        provision(&install)?
    } else {
        ensure()?
    };
    let origin = if lt.from_user {
        "from LIBTORCH"
    } else {
        "provisioned"
    };
    eprintln!(
        "libtorch {TORCH_VERSION} ready ({origin}): {}",
        lt.root.display()
    );
    Ok(())
}

/// A `LIBTORCH` from the user's environment. `.cargo/config.toml` sets `LIBTORCH` to our own
/// install folder for plain cargo commands (xtask runs under `cargo run` too): that one is ours.
fn user_setting(install: &Path) -> Option<PathBuf> {
    let value = PathBuf::from(env::var_os("LIBTORCH").filter(|v| !v.is_empty())?);
    (value != install.join("torch")).then_some(value)
}

fn user_libtorch(root: PathBuf) -> Result<Libtorch> {
    let lib = root.join("lib");
    let has_lib = lib.join("libtorch_cpu.so").exists() || lib.join("libtorch.so").exists();
    if !has_lib || !root.join("include").is_dir() {
        return Err(format!(
            "LIBTORCH={} holds no libtorch (expected lib/libtorch_cpu.so and include/); \
             unset it to let `cargo xtask setup` provision libtorch {TORCH_VERSION}",
            root.display()
        )
        .into());
    }
    if let Some(version) = read_version(&root) {
        if !version_matches(&version) {
            return Err(format!(
                "LIBTORCH={} is libtorch {version}, but tch needs {TORCH_VERSION}",
                root.display()
            )
            .into());
        }
    }
    Ok(Libtorch {
        root,
        from_user: true,
    })
}

fn stamp_text() -> String {
    let mut s = String::new();
    for w in &WHEELS {
        s.push_str(w.requirement);
        s.push('\n');
    }
    s
}

fn is_complete(install: &Path) -> bool {
    fs::read_to_string(install.join(STAMP_FILE)).is_ok_and(|s| s == stamp_text())
}

fn provision(install: &Path) -> Result<Libtorch> {
    let root = install
        .parent()
        .expect("the install folder has a parent")
        .to_path_buf();
    remove_leftovers(
        &root,
        &[
            &format!("{INSTALL_DIR}.tmp-"),
            &format!("{INSTALL_DIR}.old-"),
        ],
    );
    let python = pypi::find_python(&format!(
        "setup (or a LIBTORCH pointing at libtorch {TORCH_VERSION})"
    ))?;
    let wheels = pypi::cached_wheels(&python, &WHEELS, "about 540 MB")?;

    let tmp = root.join(format!("{INSTALL_DIR}.tmp-{}", std::process::id()));
    let torch_dir = tmp.join("torch");
    fs::create_dir_all(&torch_dir).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    eprintln!(
        "setup: unpacking libtorch {TORCH_VERSION} into {}",
        install.display()
    );
    let mut cmd = Command::new(&python);
    cmd.arg("-c").arg(UNPACK_PY).arg(&torch_dir).args(&wheels);
    pypi::run_quiet(&mut cmd, "unpacking the libtorch wheels")?;
    verify(&torch_dir)?;
    fs::write(tmp.join(STAMP_FILE), stamp_text())
        .map_err(|e| format!("cannot write the setup stamp: {e}"))?;

    // Move any old or foreign install aside first, so the rename below cannot fail on it.
    if install.exists() {
        let old = root.join(format!("{INSTALL_DIR}.old-{}", std::process::id()));
        fs::rename(install, &old).map_err(|e| format!("cannot move old install aside: {e}"))?;
        let _ = fs::remove_dir_all(&old);
    }
    fs::rename(&tmp, install)
        .map_err(|e| format!("cannot move {} into place: {e}", tmp.display()))?;
    Ok(Libtorch {
        root: install.join("torch"),
        from_user: false,
    })
}

fn read_version(torch_dir: &Path) -> Option<String> {
    if let Ok(v) = fs::read_to_string(torch_dir.join("build-version")) {
        return Some(v.trim().to_string());
    }
    let py = fs::read_to_string(torch_dir.join("version.py")).ok()?;
    let line = py.lines().find(|l| l.starts_with("__version__"))?;
    Some(line.split('\'').nth(1)?.to_string())
}

fn version_matches(version: &str) -> bool {
    version.split('+').next() == Some(TORCH_VERSION)
}

/// Checks an unpacked libtorch before it is moved into place, and records its version where
/// torch-sys looks for it (`build-version`).
fn verify(torch_dir: &Path) -> Result<()> {
    let version = read_version(torch_dir)
        .ok_or("setup: the torch wheel has no torch/version.py: not a PyTorch wheel")?;
    if !version_matches(&version) {
        return Err(
            format!("setup: the wheel is torch {version}, expected {TORCH_VERSION}").into(),
        );
    }
    if !torch_dir
        .join("include/torch/csrc/api/include/torch/torch.h")
        .exists()
    {
        return Err("setup: the torch wheel has no C++ headers (include/torch)".into());
    }
    let lib = torch_dir.join("lib");
    for name in REQUIRED_LIBS {
        if !lib.join(name).exists() {
            return Err(format!("setup: {name} is missing from the unpacked wheels").into());
        }
    }
    unresolved_libraries(&lib)?;
    fs::write(torch_dir.join("build-version"), format!("{version}\n"))
        .map_err(|e| format!("cannot write build-version: {e}"))?;
    Ok(())
}

/// With `ldd` available, every dependency of the CPU libraries must resolve from `lib` or the
/// system.
fn unresolved_libraries(lib: &Path) -> Result<()> {
    for name in ["libtorch_cpu.so", "libc10.so"] {
        let out = Command::new("ldd")
            .arg(lib.join(name))
            .env("LD_LIBRARY_PATH", prepend_path_var("LD_LIBRARY_PATH", lib))
            .output();
        let Ok(out) = out else {
            return Ok(()); // no ldd here: the first build will tell
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let missing: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("not found"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "setup: {name} needs libraries the wheels do not provide: {}",
                missing.join(", ")
            )
            .into());
        }
    }
    Ok(())
}
