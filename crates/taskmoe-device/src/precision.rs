//! bf16 mixed precision through libtorch's autocast, on CPU and CUDA alike.
//!
//! libtorch keeps one autocast switch and one compute dtype per device type (thread-local).
//! tch binds only the CUDA switch, so this module calls libtorch's device-generic functions
//! (`at::autocast::set_autocast_enabled(DeviceType, bool)` and friends, exported by
//! `libtorch_cpu.so`) through `dlsym`. Their signatures take and return only integers and
//! booleans, so the C calling convention matches; the pin to libtorch 2.11.0 (and the test
//! `bf16_autocast_runs_matmuls_in_bf16_on_cpu`) keeps the mangled names honest.
//!
//! Why no loss scaling: bf16 has fp32's 8-bit exponent (range about 1e-38 to 3e38), so
//! gradients that fit in fp32 do not underflow in bf16; loss scaling exists for fp16's 5-bit
//! exponent. What bf16 loses is mantissa (8 bits), which is why the master weights, AdamW's
//! moments, the router (logits, softmax, top-k), the aux losses and the task losses stay fp32.

use std::ffi::CString;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::error::{DeviceError, Result};

/// The precision of the encoder's and experts' compute (`runtime.precision`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in fp32.
    #[default]
    Fp32,
    /// bf16 autocast: matmuls (attention, FFNs, experts, heads) in bf16, fp32 master weights,
    /// fp32 routing and losses.
    Bf16,
}

impl Precision {
    /// The config spelling, `fp32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The reduced compute dtype, `None` for fp32.
    pub fn compute_kind(self) -> Option<Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(Kind::BFloat16),
        }
    }
}

impl FromStr for Precision {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(DeviceError::UnknownPrecision(other.to_string())),
        }
    }
}

/// `c10::DeviceType` values (an `int8_t` enum).
const DEVICE_CPU: i8 = 0;
const DEVICE_CUDA: i8 = 1;
/// `c10::ScalarType::BFloat16`.
const SCALAR_BF16: i8 = 15;

/// libtorch's autocast switches, resolved once.
struct Api {
    is_enabled: unsafe extern "C" fn(i8) -> bool,
    set_enabled: unsafe extern "C" fn(i8, bool),
    get_dtype: unsafe extern "C" fn(i8) -> i8,
    set_dtype: unsafe extern "C" fn(i8, i8),
    increment_nesting: unsafe extern "C" fn() -> i32,
    decrement_nesting: unsafe extern "C" fn() -> i32,
    clear_cache: unsafe extern "C" fn(),
}

fn api() -> std::result::Result<&'static Api, &'static str> {
    static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();
    API.get_or_init(resolve)
        .as_ref()
        .map_err(std::string::String::as_str)
}

fn resolve() -> std::result::Result<Api, String> {
    fn sym(name: &str) -> std::result::Result<*mut libc::c_void, String> {
        let c = CString::new(name).expect("no NUL in symbol names");
        // SAFETY: dlsym on the global scope with a valid name.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
        if p.is_null() {
            Err(format!(
                "libtorch does not export {name} (not libtorch 2.11.0?)"
            ))
        } else {
            Ok(p)
        }
    }
    // SAFETY: each symbol is the libtorch 2.11 function of the given (integer-only) signature.
    unsafe {
        Ok(Api {
            is_enabled: std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn(i8) -> bool>(
                sym("_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE")?,
            ),
            set_enabled: std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn(i8, bool)>(
                sym("_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb")?,
            ),
            get_dtype: std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn(i8) -> i8>(
                sym("_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE")?,
            ),
            set_dtype: std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn(i8, i8)>(sym(
                "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE",
            )?),
            increment_nesting: std::mem::transmute::<
                *mut libc::c_void,
                unsafe extern "C" fn() -> i32,
            >(sym("_ZN2at8autocast17increment_nestingEv")?),
            decrement_nesting: std::mem::transmute::<
                *mut libc::c_void,
                unsafe extern "C" fn() -> i32,
            >(sym("_ZN2at8autocast17decrement_nestingEv")?),
            clear_cache: std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn()>(sym(
                "_ZN2at8autocast11clear_cacheEv",
            )?),
        })
    }
}

fn device_type(device: Device) -> i8 {
    match device {
        Device::Cuda(_) => DEVICE_CUDA,
        _ => DEVICE_CPU,
    }
}

/// Checks that `precision` can be used in this process (bf16 needs libtorch's autocast
/// switches); fp32 always can.
pub fn check_precision(precision: Precision) -> Result<()> {
    match precision {
        Precision::Fp32 => Ok(()),
        Precision::Bf16 => api()
            .map(|_| ())
            .map_err(|e| DeviceError::Precision(e.to_string())),
    }
}

/// Whether autocast is on for `device`'s type in this thread.
pub fn is_autocast_enabled(device: Device) -> bool {
    match api() {
        // SAFETY: see `resolve`.
        Ok(api) => unsafe { (api.is_enabled)(device_type(device)) },
        Err(_) => false,
    }
}

/// Restores the autocast state of a device type when dropped (also on panic).
struct Restore {
    api: &'static Api,
    device_type: i8,
    enabled: bool,
    dtype: i8,
    nested: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: see `resolve`.
        unsafe {
            if self.nested && (self.api.decrement_nesting)() == 0 {
                (self.api.clear_cache)();
            }
            (self.api.set_enabled)(self.device_type, self.enabled);
            (self.api.set_dtype)(self.device_type, self.dtype);
        }
    }
}

fn save(api: &'static Api, device_type: i8, nested: bool) -> Restore {
    // SAFETY: see `resolve`.
    unsafe {
        Restore {
            api,
            device_type,
            enabled: (api.is_enabled)(device_type),
            dtype: (api.get_dtype)(device_type),
            nested,
        }
    }
}

/// Runs `f` with autocast on for `device`'s type in `precision`'s compute dtype (bf16), as
/// PyTorch's `torch.autocast(device_type, dtype=torch.bfloat16)` does; with fp32 it just runs
/// `f`. The previous state is restored afterwards. Use it around forward passes only: the
/// backward pass replays the dtypes chosen in the forward.
///
/// Precondition for bf16: [`check_precision`] succeeded (otherwise `f` runs in fp32).
pub fn autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> T {
    if precision.compute_kind().is_none() {
        return f();
    }
    let Ok(api) = api() else {
        return f();
    };
    let dt = device_type(device);
    let _restore = save(api, dt, true);
    // SAFETY: see `resolve`.
    unsafe {
        (api.set_dtype)(dt, SCALAR_BF16);
        (api.set_enabled)(dt, true);
        (api.increment_nesting)();
    }
    f()
}

/// Runs `f` with autocast off on CPU and CUDA (the fp32 islands: router, softmax, top-k, aux
/// losses), restoring the previous state afterwards. Inputs are not cast: code in `f` casts
/// what it needs to fp32 itself.
pub fn full_precision<T>(f: impl FnOnce() -> T) -> T {
    let Ok(api) = api() else {
        return f();
    };
    let _cpu = save(api, DEVICE_CPU, false);
    let _cuda = save(api, DEVICE_CUDA, false);
    // SAFETY: see `resolve`.
    unsafe {
        (api.set_enabled)(DEVICE_CPU, false);
        (api.set_enabled)(DEVICE_CUDA, false);
    }
    f()
}
