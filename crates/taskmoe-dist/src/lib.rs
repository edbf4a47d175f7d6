//! Distributed training on PyTorch's own engine, c10d: a [`TCPStore`] rendezvous and Gloo (or
//! NCCL) process groups reached through a small C++ shim (`csrc/shim.cpp`) compiled against the
//! libtorch tch uses.
//!
//! A job of one process runs every collective for real (Gloo over loopback); a job of `N`
//! runs the same code in `N` processes started by torchrun (or [`run_local`] in tests), each
//! reading its rank from [`DistEnv::from_env`]:
//!
//! ```rust
//! use std::time::Duration;
//! use taskmoe_dist::{free_loopback_port, DistEnv, GradBuckets, ProcessGroup, Topology};
//! use tch::{Device, Kind, Tensor};
//!
//! let env = DistEnv {
//!     rank: 0,
//!     world_size: 1,
//!     local_rank: 0,
//!     master_addr: "127.0.0.1".to_string(),
//!     master_port: free_loopback_port()?,
//!     timeout: Duration::from_secs(30),
//! };
//! let pg = ProcessGroup::connect(&env)?; // rendezvous through a TCPStore, then Gloo
//! let mut t = Tensor::from_slice(&[1.0f32, 2.0]);
//! pg.all_reduce_sum(&mut t)?; // the sum over one rank: unchanged
//! assert_eq!(Vec::<f32>::try_from(&t)?, [1.0, 2.0]);
//! // Data parallelism: average a flat gradient buffer in 16-byte buckets (3 all-reduces).
//! let grads = Tensor::ones([10], (Kind::Float, Device::Cpu));
//! assert_eq!(GradBuckets::new(16).reduce(&pg, &grads, 0, 10, 1.0)?, 3);
//! // 4 ranks with expert-parallel degree 2: rank 3 is member 1 of the group of ranks 2 and 3.
//! assert_eq!(Topology::new(4, 2, 3)?.ep_rank(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`Backend`] picks Gloo (CPU) or NCCL (CUDA; `csrc/nccl.cpp`, a library of its own that
//!   the build makes only against a CUDA libtorch with the CUDA and NCCL headers, loaded on
//!   demand);
//! - [`DistEnv`] reads torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//!   `MASTER_ADDR`, `MASTER_PORT`);
//! - [`ProcessGroup`] holds one group and runs the collectives on tch tensors (all-reduce,
//!   all-gather, an uneven gather of rows to one rank, all-to-all with split sizes, broadcast,
//!   barrier), each bounded by the group's timeout and failing with an error that names the
//!   rank and the collective;
//! - [`all_to_all`](ProcessGroup::all_to_all) and
//!   [`all_reduce_sum_autograd`](ProcessGroup::all_reduce_sum_autograd) are autograd-aware
//!   (custom `torch::autograd::Function`s in the shim): the backward pass runs the mirrored
//!   collective, which is what expert parallelism needs;
//! - [`GradBuckets`] averages gradients with a few flat all-reduces (data parallelism);
//! - [`Topology`] lays ranks out as data-parallel x expert-parallel groups.
//!
//! [`TCPStore`]: https://pytorch.org/docs/stable/distributed.html#torch.distributed.TCPStore

#![warn(missing_docs)]

mod backend;
mod buckets;
mod env;
mod error;
mod ffi;
mod group;
mod launch;
mod topology;

pub use backend::{nccl_library, Backend, BACKEND_ENV, NCCL_LIBRARY_ENV};
pub use buckets::GradBuckets;
pub use env::{free_loopback_port, DistEnv, DEFAULT_TIMEOUT_SECS, TIMEOUT_ENV};
pub use error::{DistError, Result};
pub use group::{CollectiveStats, ProcessGroup};
pub use launch::{expect_all_ok, run_local, worker_test, RankOutput};
pub use topology::Topology;
