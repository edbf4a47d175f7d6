//! Where taskmoe computes, and in which precision.
//!
//! Pick the device a run asked for, then compute in bf16 with an fp32 island:
//!
//! ```rust
//! use taskmoe_device::{autocast, full_precision, select_device, DeviceRequest, Precision};
//! use tch::{Device, Kind, Tensor};
//!
//! let selected = select_device("cpu".parse::<DeviceRequest>()?)?;
//! assert_eq!(selected.device, Device::Cpu);
//! let x = taskmoe_device::seeded(0, || Tensor::randn([4, 8], (Kind::Float, selected.device)));
//! let w = Tensor::ones([8, 2], (Kind::Float, selected.device));
//! let (low, high) = autocast(selected.device, Precision::Bf16, || {
//!     let low = x.matmul(&w); // runs in bf16 under autocast
//!     let high = full_precision(|| x.matmul(&w)); // stays fp32 (as routers do)
//!     (low, high)
//! });
//! assert_eq!((low.kind(), high.kind()), (Kind::BFloat16, Kind::Float));
//! assert!(high.equal(&x.matmul(&w)));
//! # Ok::<(), taskmoe_device::DeviceError>(())
//! ```
//!
//! - [`select_device`]: `cpu`, `cuda` or `auto` to a `tch::Device`. A binary built against
//!   libtorch with as-needed linking does not record `libtorch_cuda.so` as a dependency (no
//!   symbol of it is referenced directly), so CUDA stays invisible to libtorch even on a GPU
//!   machine (DESIGN.md section 5). When CUDA is requested, [`load_cuda`] therefore `dlopen`s
//!   `libtorch_cuda.so` (`RTLD_NOW | RTLD_GLOBAL`, from the folder of the `libtorch_cpu.so` in
//!   use first, then the loader's search path) before the first CUDA query; its static
//!   initialisers register libtorch's CUDA hooks. A missing library or driver is an error naming
//!   it; `auto` falls back to the CPU with a note saying why.
//! - [`select_named`] and [`rank_device`]: a configured name to a device, and the GPU of a
//!   rank of a multi-process job (`cuda:LOCAL_RANK`).
//! - [`Precision`] and [`autocast`]: bf16 mixed precision through libtorch's own autocast, on
//!   CUDA *and* on CPU (tch's `autocast` only switches CUDA), so CI runs the same code path as a
//!   GPU. Weights stay fp32 (master weights), matmuls run in bf16, and [`full_precision`] turns
//!   autocast off for code that must stay fp32 (the router, softmax, top-k and aux losses).
//!
//! - [`seeded`] and [`lock_global_rng`]: one thread at a time seeds and draws from libtorch's
//!   process-global generator, so seeded draws repeat whatever else runs in the process.
//!   [`keyed_initialisation`] and [`draw_for`]: each module's parameters drawn from a stream
//!   keyed by (seed, module name), so models that share module names share their values.
//!
//! Neither needs a GPU: on a CPU-only libtorch, `cuda` fails with a message naming
//! `libtorch_cuda.so`, and bf16 runs on the CPU.

#![warn(missing_docs)]

mod cuda;
mod error;
mod precision;
mod rank;
mod rng;

pub use cuda::{libtorch_lib_dir, load_cuda, select_device, DeviceRequest, Selected, CUDA_LIBRARY};
pub use error::{DeviceError, Result};
pub use precision::{autocast, check_precision, full_precision, is_autocast_enabled, Precision};
pub use rank::{rank_device, select_named};
pub use rng::{
    draw_for, init_key, keyed_initialisation, lock_global_rng, module_name, seeded, GlobalRngGuard,
};
