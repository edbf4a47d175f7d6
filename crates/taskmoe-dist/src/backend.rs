//! Which c10d backend a process group runs on, and loading the NCCL one on demand.
//!
//! - **Gloo** (`libtorch_cpu.so`): CPU tensors; a CUDA tensor is staged through host memory.
//! - **NCCL** (`libtorch_cuda.so`): CUDA tensors in place, on this rank's GPU; a CPU tensor (a
//!   count, a logged number) is staged through that GPU.
//!
//! The NCCL backend lives in a library of its own, `libtaskmoe_dist_nccl.so` (`csrc/nccl.cpp`),
//! which the build script compiles only against a CUDA libtorch with the CUDA and NCCL headers
//! at hand (see `build.rs`). [`Backend::Nccl`] `dlopen`s it when a group is created, after
//! `libtorch_cuda.so` has been loaded (`taskmoe_device::load_cuda` does that when a run selects
//! CUDA), so a CPU-only build and a CPU run never touch CUDA.

use std::ffi::{c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use tch::Device;

use crate::error::{DistError, Result};

/// Environment variable naming the backend, `gloo` or `nccl`, over [`Backend::for_device`]'s
/// choice.
pub const BACKEND_ENV: &str = "TASKMOE_DIST_BACKEND";
/// Environment variable with the path of `libtaskmoe_dist_nccl.so`, over the one this crate's
/// build made ([`nccl_library`]).
pub const NCCL_LIBRARY_ENV: &str = "TASKMOE_DIST_NCCL_LIBRARY";
/// The NCCL library's factory symbol (`csrc/nccl.cpp`).
const NCCL_FACTORY: &str = "tmd_nccl_backend_new";

/// A c10d backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Gloo, on the CPU.
    Gloo,
    /// NCCL on CUDA device `device` (this rank's GPU, `cuda:LOCAL_RANK`).
    Nccl {
        /// The CUDA device index.
        device: usize,
    },
}

impl Backend {
    /// The backend for a rank whose tensors live on `device`: NCCL on a CUDA device, Gloo
    /// otherwise, unless [`BACKEND_ENV`] names one (`gloo` keeps a CUDA job on Gloo, staging
    /// through host memory; `nccl` needs a CUDA device).
    pub fn for_device(device: Device) -> Result<Backend> {
        let chosen = std::env::var(BACKEND_ENV).ok();
        Self::choose(device, chosen.as_deref())
    }

    /// [`Backend::for_device`] with the variable's value given (`None`: unset).
    pub fn choose(device: Device, chosen: Option<&str>) -> Result<Backend> {
        let env_err = |reason: String| DistError::Env {
            var: BACKEND_ENV,
            reason,
        };
        match (chosen.map(str::trim).filter(|v| !v.is_empty()), device) {
            (None, Device::Cuda(d)) | (Some("nccl"), Device::Cuda(d)) => {
                Ok(Backend::Nccl { device: d })
            }
            (None, _) | (Some("gloo"), _) => Ok(Backend::Gloo),
            (Some("nccl"), other) => Err(env_err(format!(
                "`nccl` needs a CUDA device, and this rank runs on {other:?} (set \
                 runtime.device = \"cuda\", or use `gloo`)"
            ))),
            (Some(other), _) => Err(env_err(format!(
                "`{other}` is not a backend: `gloo` or `nccl`"
            ))),
        }
    }

    /// `gloo` or `nccl`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl { .. } => "nccl",
        }
    }

    /// Where the backend wants a collective's tensors.
    pub fn device(&self) -> Device {
        match self {
            Backend::Gloo => Device::Cpu,
            Backend::Nccl { device } => Device::Cuda(*device),
        }
    }

    /// The CUDA device index the shim gets (-1 for Gloo).
    pub(crate) fn device_index(&self) -> i32 {
        match self {
            Backend::Gloo => -1,
            Backend::Nccl { device } => *device as i32,
        }
    }

    /// The NCCL factory to hand to the shim (NULL for Gloo), loading the library on first use.
    pub(crate) fn factory(&self, rank: usize) -> Result<*mut c_void> {
        match self {
            Backend::Gloo => Ok(std::ptr::null_mut()),
            Backend::Nccl { .. } => load_nccl().map_err(|reason| DistError::Input {
                rank,
                op: "process group creation",
                reason,
            }),
        }
    }
}

/// The NCCL library this crate's build made, or the one [`NCCL_LIBRARY_ENV`] names; `None`
/// when the build found no CUDA libtorch or no CUDA and NCCL headers.
pub fn nccl_library() -> Option<PathBuf> {
    std::env::var_os(NCCL_LIBRARY_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            option_env!("TASKMOE_DIST_NCCL_BUILT")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
}

/// The factory's address (as an integer, to live in a static), loaded once per process.
fn load_nccl() -> std::result::Result<*mut c_void, String> {
    static FACTORY: OnceLock<std::result::Result<usize, String>> = OnceLock::new();
    FACTORY
        .get_or_init(|| {
            let Some(path) = nccl_library() else {
                return Err(format!(
                    "this build of taskmoe-dist has no NCCL backend: its build found no \
                     libtorch_cuda.so in LIBTORCH or no CUDA and NCCL headers (set \
                     TASKMOE_CUDA_INCLUDE and rebuild, see docs/architecture.md), and {} is \
                     not set; `{}=gloo` runs the job on Gloo, staging CUDA tensors through \
                     host memory",
                    NCCL_LIBRARY_ENV, BACKEND_ENV
                ));
            };
            let c_path = CString::new(path.to_string_lossy().as_bytes())
                .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
            // SAFETY: a NUL-terminated path; the handle is kept for the life of the process.
            let handle =
                unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                return Err(format!(
                    "cannot load the NCCL backend {}: {} (it needs libtorch_cuda.so, which a \
                     CUDA run loads first, and NCCL's libnccl.so.2)",
                    path.display(),
                    dl_error()
                ));
            }
            let symbol = CString::new(NCCL_FACTORY).expect("no NUL");
            // SAFETY: a live handle and a NUL-terminated name.
            let f = unsafe { libc::dlsym(handle, symbol.as_ptr()) };
            if f.is_null() {
                return Err(format!(
                    "{} has no `{NCCL_FACTORY}`: {}",
                    path.display(),
                    dl_error()
                ));
            }
            Ok(f as usize)
        })
        .clone()
        .map(|f| f as *mut c_void)
}

/// The last `dlerror` message.
fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message.
    let e = unsafe { libc::dlerror() };
    match e.is_null() {
        true => "unknown error".to_string(),
        // SAFETY: non-NULL, NUL-terminated.
        false => unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_device_unless_the_variable_says_otherwise() {
        assert_eq!(Backend::choose(Device::Cpu, None).unwrap(), Backend::Gloo);
        assert_eq!(
            Backend::choose(Device::Cuda(1), None).unwrap(),
            Backend::Nccl { device: 1 }
        );
        assert_eq!(
            Backend::choose(Device::Cuda(0), Some("gloo")).unwrap(),
            Backend::Gloo
        );
        assert_eq!(
            Backend::choose(Device::Cpu, Some(" ")).unwrap(),
            Backend::Gloo
        );
        let e = Backend::choose(Device::Cpu, Some("nccl"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(BACKEND_ENV) && e.contains("needs a CUDA device"),
            "{e}"
        );
        let e = Backend::choose(Device::Cpu, Some("mpi"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`mpi` is not a backend"), "{e}");
        assert_eq!(Backend::Nccl { device: 2 }.device(), Device::Cuda(2));
        assert_eq!(Backend::Gloo.device(), Device::Cpu);
    }

    #[test]
    fn nccl_without_its_library_is_a_clear_error() {
        if let Some(library) = nccl_library() {
            // A CUDA build: the library must exist (loading it needs libtorch_cuda.so and a
            // GPU machine: tests/nccl.rs).
            assert!(library.is_file(), "{} is missing", library.display());
            return;
        }
        let e = Backend::Nccl { device: 0 }
            .factory(3)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "rank 3: process group creation: this build of taskmoe-dist has no \
                           NCCL backend"
            ) && e.contains("TASKMOE_DIST_BACKEND=gloo"),
            "{e}"
        );
    }
}
