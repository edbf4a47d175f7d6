//! Device selection, loading libtorch's CUDA library on demand.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use tch::Device;

use crate::error::{DeviceError, Result};

/// libtorch's CUDA kernels and hooks, loaded by [`load_cuda`].
pub const CUDA_LIBRARY: &str = "libtorch_cuda.so";

/// A libtorch symbol whose address tells which `libtorch_cpu.so` this process uses.
const CPU_SYMBOL: &str = "_ZN2at8autocast11clear_cacheEv";

/// The device a run asks for (`runtime.device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The CPU.
    Cpu,
    /// The first CUDA device; an error when there is none.
    Cuda,
    /// The first CUDA device when one is usable, else the CPU (with a note).
    Auto,
}

impl FromStr for DeviceRequest {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda),
            "auto" => Ok(DeviceRequest::Auto),
            other => Err(DeviceError::UnknownDevice(other.to_string())),
        }
    }
}

/// The outcome of [`select_device`].
#[derive(Clone, Debug, PartialEq)]
pub struct Selected {
    /// The device to put tensors on.
    pub device: Device,
    /// Why `auto` fell back to the CPU, for the user to see; `None` otherwise.
    pub note: Option<String>,
}

/// Resolves a request to a device. `cuda` and `auto` call [`load_cuda`] first, so call this
/// before anything else asks libtorch about CUDA (libtorch decides once per process whether
/// its CUDA hooks are present).
pub fn select_device(request: DeviceRequest) -> Result<Selected> {
    let cuda = || -> Result<Device> {
        let path = load_cuda()?;
        if !tch::Cuda::is_available() {
            return Err(DeviceError::NoCudaDevice(format!(
                "{} is loaded and libtorch sees no CUDA device: is the NVIDIA driver \
                 (libcuda.so.1) installed and a GPU visible (CUDA_VISIBLE_DEVICES)?",
                path.display()
            )));
        }
        Ok(Device::Cuda(0))
    };
    match request {
        DeviceRequest::Cpu => Ok(Selected {
            device: Device::Cpu,
            note: None,
        }),
        DeviceRequest::Cuda => Ok(Selected {
            device: cuda()?,
            note: None,
        }),
        DeviceRequest::Auto => Ok(match cuda() {
            Ok(device) => Selected { device, note: None },
            Err(e) => Selected {
                device: Device::Cpu,
                note: Some(format!("device auto: {e}; using the CPU")),
            },
        }),
    }
}

/// Loads `libtorch_cuda.so` into the process (once; later calls return the first outcome) and
/// returns the path it was loaded from.
///
/// The folder of the `libtorch_cpu.so` in use is tried first, so the CUDA half always matches
/// the CPU half; then the plain name, found through `LD_LIBRARY_PATH` and the binary's
/// RUNPATH. The error names the library and the loader's reason (a missing file, or a missing
/// dependency such as `libcudart.so.13`).
pub fn load_cuda() -> Result<PathBuf> {
    static LOADED: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    LOADED
        .get_or_init(load_once)
        .clone()
        .map_err(DeviceError::CudaLibrary)
}

fn load_once() -> std::result::Result<PathBuf, String> {
    let lib_dir = libtorch_lib_dir();
    let mut candidates = Vec::new();
    if let Some(dir) = &lib_dir {
        let sibling = dir.join(CUDA_LIBRARY);
        if sibling.exists() {
            candidates.push(sibling);
        }
    }
    candidates.push(PathBuf::from(CUDA_LIBRARY));
    let mut reasons = Vec::new();
    for path in candidates {
        match dlopen_global(&path) {
            Ok(()) => return Ok(path),
            Err(reason) => reasons.push(reason),
        }
    }
    let location = match &lib_dir {
        Some(dir) => format!("the libtorch in use ({}) has no CUDA half", dir.display()),
        None => "the libtorch in use could not be located".to_string(),
    };
    Err(format!(
        "{CUDA_LIBRARY} cannot be loaded ({}): {location}. Run with a CUDA build of PyTorch / \
         libtorch 2.11.0 on the library path, e.g. LD_LIBRARY_PATH=\"$(python -c 'import torch, \
         os; print(os.path.dirname(torch.__file__))')/lib\", or use device cpu",
        reasons.join("; ")
    ))
}

/// `dlopen(path, RTLD_NOW | RTLD_GLOBAL)`; the handle is kept for the life of the process.
fn dlopen_global(path: &Path) -> std::result::Result<(), String> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: a valid NUL-terminated path; dlerror's string is copied before any other dl call.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if handle.is_null() {
            let err = libc::dlerror();
            return Err(if err.is_null() {
                format!("{}: unknown dlopen error", path.display())
            } else {
                CStr::from_ptr(err).to_string_lossy().into_owned()
            });
        }
    }
    Ok(())
}

/// The folder holding the `libtorch_cpu.so` this process uses (`None` if it cannot be told).
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    let name = CString::new(CPU_SYMBOL).expect("no NUL in the symbol name");
    // SAFETY: dlsym / dladdr on the global scope with valid arguments; Dl_info is plain data.
    unsafe {
        let addr = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        if addr.is_null() {
            return None;
        }
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(addr, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let file = PathBuf::from(
            CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        );
        let file = file.canonicalize().unwrap_or(file);
        file.parent().map(Path::to_path_buf)
    }
}
