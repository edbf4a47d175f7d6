//! One c10d process group (TCPStore rendezvous + Gloo or NCCL backend) and its collectives.

use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;

use crate::backend::Backend;
use crate::env::DistEnv;
use crate::error::{DistError, Result};
use crate::ffi;

/// Calls, bytes this rank sent and wall time of one kind of collective since the group was
/// created (the autograd collectives' backward passes included).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CollectiveStats {
    /// Collectives run.
    pub calls: u64,
    /// Bytes this rank contributed (for all-to-all: sent to other ranks).
    pub bytes: u64,
    /// Seconds spent waiting for them.
    pub seconds: f64,
}

/// A group of processes that run collectives together, on PyTorch's Gloo or NCCL backend
/// ([`Backend`]).
///
/// Every collective is synchronous (the call returns when it has completed on this rank), is
/// bounded by the group's timeout, and fails with an error naming the rank, the group and the
/// collective: a rank that died makes the others fail instead of hang. A tensor on another
/// device than the backend's ([`Backend::device`]: the CPU for Gloo, this rank's GPU for NCCL)
/// is staged through it, and results come back on the tensor's own device.
///
/// All ranks of the group must call the same collectives in the same order.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: NonNull<c_void>,
    rank: usize,
    size: usize,
    name: String,
    timeout: Duration,
    /// Address Gloo binds this rank's sockets to (empty: the host name's address).
    bind: String,
    backend: Backend,
}

// SAFETY: the shim's group is a c10d Backend, whose methods are thread-safe (Gloo and NCCL
// enqueue work under a mutex); the counters are atomics.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from tmd_group_new and is freed once.
        unsafe { ffi::tmd_group_free(self.raw.as_ptr()) }
    }
}

fn c_string(rank: usize, op: &'static str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| DistError::Input {
        rank,
        op,
        reason: format!("`{s}` contains a NUL byte"),
    })
}

fn check(e: *mut std::ffi::c_char) -> Result<()> {
    // SAFETY: `e` is what a shim function just returned.
    match unsafe { ffi::take_error(e) } {
        None => Ok(()),
        Some(message) => Err(DistError::Collective(message)),
    }
}

/// Where Gloo binds: loopback when the whole job is on this host (`MASTER_ADDR` is loopback),
/// else the address of this host's name (or the interface `GLOO_SOCKET_IFNAME` names, as in
/// PyTorch).
fn bind_address(master: &str) -> String {
    let loopback = master == "localhost"
        || master
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        "127.0.0.1".to_string()
    } else {
        String::new()
    }
}

impl ProcessGroup {
    /// Joins the job described by `env` on Gloo: rank 0 serves the TCPStore at
    /// `MASTER_ADDR:MASTER_PORT`, every rank connects to it, and all of them form the world
    /// group (named `world`). Fails when the others do not arrive within the timeout.
    pub fn connect(env: &DistEnv) -> Result<Self> {
        Self::connect_with(env, Backend::Gloo)
    }

    /// [`ProcessGroup::connect`] on `backend` (NCCL loads its library first: see
    /// [`Backend`]); subgroups use the same backend.
    pub fn connect_with(env: &DistEnv, backend: Backend) -> Result<Self> {
        env.check()?;
        let op = "process group creation";
        let factory = backend.factory(env.rank)?;
        let host = c_string(env.rank, op, &env.master_addr)?;
        let bind = bind_address(&env.master_addr);
        let bind_c = c_string(env.rank, op, &bind)?;
        let prefix = c_string(env.rank, op, "world")?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C strings, `raw` receives the group.
        check(unsafe {
            ffi::tmd_group_new(
                host.as_ptr(),
                bind_c.as_ptr(),
                env.master_port as i32,
                env.rank as i32,
                env.world_size as i32,
                env.timeout.as_millis() as i64,
                prefix.as_ptr(),
                std::ptr::null_mut(),
                env.rank as i32,
                env.world_size as i32,
                factory,
                backend.device_index(),
                &mut raw,
            )
        })?;
        Ok(ProcessGroup {
            raw: NonNull::new(raw).expect("the shim returns a group on success"),
            rank: env.rank,
            size: env.world_size,
            name: "world".to_string(),
            timeout: env.timeout,
            bind,
            backend,
        })
    }

    /// A subgroup of the ranks `ranks` (global ranks of this group, in the order that gives the
    /// subgroup ranks), over the same store, with the keys namespaced by `name`. Only the
    /// members call it (every one of them, with the same `name` and `ranks`); the result is
    /// `None` when this rank is not a member.
    pub fn subgroup(&self, name: &str, ranks: &[usize]) -> Result<Option<ProcessGroup>> {
        let op = "subgroup creation";
        let Some(me) = ranks.iter().position(|&r| r == self.rank) else {
            return Ok(None);
        };
        if ranks.iter().any(|&r| r >= self.size) {
            return Err(DistError::Input {
                rank: self.rank,
                op,
                reason: format!("ranks {ranks:?} do not all lie below {}", self.size),
            });
        }
        let host = c_string(self.rank, op, "")?;
        let bind = c_string(self.rank, op, &self.bind)?;
        let prefix = c_string(self.rank, op, &format!("{}/{name}", self.name))?;
        let factory = self.backend.factory(self.rank)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `self.raw` is a live group whose store is reused.
        check(unsafe {
            ffi::tmd_group_new(
                host.as_ptr(),
                bind.as_ptr(),
                0,
                me as i32,
                ranks.len() as i32,
                self.timeout.as_millis() as i64,
                prefix.as_ptr(),
                self.raw.as_ptr(),
                self.rank as i32,
                self.size as i32,
                factory,
                self.backend.device_index(),
                &mut raw,
            )
        })?;
        Ok(Some(ProcessGroup {
            raw: NonNull::new(raw).expect("the shim returns a group on success"),
            rank: me,
            size: ranks.len(),
            name: format!("{}/{name}", self.name),
            timeout: self.timeout,
            bind: self.bind.clone(),
            backend: self.backend,
        }))
    }

    /// This process's rank in the group.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The group's name (`world`, `world/ep0`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bound on every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The backend the group runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A contiguous copy of `t` on the backend's device to hand to c10d (`t` itself when it
    /// already is one), and whether it is a copy.
    fn host(&self, op: &'static str, t: &Tensor) -> Result<(Tensor, bool)> {
        let torch = |source| DistError::Torch {
            rank: self.rank,
            op,
            source,
        };
        let device = self.backend.device();
        if t.device() == device && t.is_contiguous() {
            return Ok((t.shallow_clone(), false));
        }
        let staged = t.f_to_device(device).map_err(torch)?;
        Ok((staged.f_contiguous().map_err(torch)?, true))
    }

    /// `t` on the backend's device, autograd-connected (the collectives' gradients flow back
    /// through the copy), for the autograd-aware collectives.
    fn staged(&self, t: &Tensor) -> Tensor {
        match t.device() == self.backend.device() {
            true => t.shallow_clone(),
            false => t.to_device(self.backend.device()),
        }
    }

    /// Sums `t` over the group, in place.
    pub fn all_reduce_sum(&self, t: &mut Tensor) -> Result<()> {
        let (mut host, copied) = self.host("all_reduce", t)?;
        // SAFETY: `host` is a live tensor; the shim reads and writes it in place.
        check(unsafe { ffi::tmd_allreduce_sum(self.raw.as_ptr(), host.as_mut_ptr().cast()) })?;
        if copied {
            tch::no_grad(|| t.copy_(&host));
        }
        Ok(())
    }

    /// Averages `t` over the group, in place (Gloo has no average: a sum, then a division).
    pub fn all_reduce_mean(&self, t: &mut Tensor) -> Result<()> {
        self.all_reduce_sum(t)?;
        tch::no_grad(|| {
            let _ = t.g_div_scalar_(self.size as f64);
        });
        Ok(())
    }

    /// Sums `values` (host numbers, say a step's losses) over the group.
    pub fn all_reduce_f64(&self, values: &[f64]) -> Result<Vec<f64>> {
        let mut t = Tensor::from_slice(values);
        self.all_reduce_sum(&mut t)?;
        Vec::<f64>::try_from(&t).map_err(|source| DistError::Torch {
            rank: self.rank,
            op: "all_reduce",
            source,
        })
    }

    /// Copies rank `root`'s `t` into every rank's `t`.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<()> {
        if root >= self.size {
            return Err(DistError::Input {
                rank: self.rank,
                op: "broadcast",
                reason: format!("root {root} is not a rank of a group of {}", self.size),
            });
        }
        let (mut host, copied) = self.host("broadcast", t)?;
        // SAFETY: as in all_reduce_sum.
        check(unsafe {
            ffi::tmd_broadcast(self.raw.as_ptr(), host.as_mut_ptr().cast(), root as i32)
        })?;
        if copied {
            tch::no_grad(|| t.copy_(&host));
        }
        Ok(())
    }

    /// Every rank's `t` (same shape and dtype on all ranks), stacked in rank order.
    ///
    /// # Shapes
    /// `t: [...]` -> `[size, ...]`, on `t`'s device.
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        let (mut host, _) = self.host("all_gather", t)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: the shim returns a new torch::Tensor* that we own.
        check(unsafe {
            ffi::tmd_allgather(self.raw.as_ptr(), host.as_mut_ptr().cast(), &mut out)
        })?;
        // SAFETY: `out` is a fresh torch::Tensor* (tch's C_tensor).
        let gathered = unsafe { Tensor::from_ptr(out.cast()) };
        Ok(gathered.to_device(t.device()))
    }

    /// Every rank's rows of `t` (any number of rows per rank; the same trailing shape and
    /// dtype on all ranks), concatenated in rank order on rank `root` (`Some`), `None` on the
    /// others. Unlike [`ProcessGroup::all_gather`], only the root ever holds the whole: an
    /// all-gather of the row counts, then an all-to-all in which every rank sends all its rows
    /// to the root and nothing elsewhere.
    ///
    /// # Shapes
    /// `t: [n_rank, ...]` -> on the root `[sum of n, ...]`, on `t`'s device.
    pub fn gather_rows(&self, t: &Tensor, root: usize) -> Result<Option<Tensor>> {
        let op = "gather_rows";
        if root >= self.size {
            return Err(DistError::Input {
                rank: self.rank,
                op,
                reason: format!("root {root} is not a rank of a group of {}", self.size),
            });
        }
        if t.dim() == 0 {
            return Err(DistError::Input {
                rank: self.rank,
                op,
                reason: "a scalar has no rows".to_string(),
            });
        }
        let n = t.size()[0];
        let counts = self.all_gather(&Tensor::from_slice(&[n]))?;
        let counts =
            Vec::<i64>::try_from(counts.reshape([-1])).map_err(|source| DistError::Torch {
                rank: self.rank,
                op,
                source,
            })?;
        let mut send = vec![0; self.size];
        send[root] = n;
        let receive = match self.rank == root {
            true => counts,
            false => vec![0; self.size],
        };
        let gathered = tch::no_grad(|| self.all_to_all(t, &receive, &send))?;
        Ok((self.rank == root).then_some(gathered))
    }

    /// Exchanges rows: the first `in_splits[0]` rows of `t` go to rank 0, the next
    /// `in_splits[1]` to rank 1, ...; the result holds `out_splits[j]` rows from rank `j`, in
    /// rank order. Each rank's `in_splits[j]` must equal rank `j`'s `out_splits[me]`.
    /// Autograd-aware: the gradient of the result flows back by the reverse exchange.
    ///
    /// # Shapes
    /// `t: [sum(in_splits), ...]` -> `[sum(out_splits), ...]`.
    pub fn all_to_all(&self, t: &Tensor, out_splits: &[i64], in_splits: &[i64]) -> Result<Tensor> {
        let op = "all_to_all";
        if out_splits.len() != self.size || in_splits.len() != self.size {
            return Err(DistError::Input {
                rank: self.rank,
                op,
                reason: format!(
                    "{} output and {} input split sizes for a group of {}",
                    out_splits.len(),
                    in_splits.len(),
                    self.size
                ),
            });
        }
        if out_splits.iter().chain(in_splits).any(|&n| n < 0) {
            return Err(DistError::Input {
                rank: self.rank,
                op,
                reason: "negative split size".to_string(),
            });
        }
        let device = t.device();
        let mut host = self.staged(t);
        let mut out = std::ptr::null_mut();
        // SAFETY: split arrays hold `size` entries each; the shim returns a new tensor.
        check(unsafe {
            ffi::tmd_alltoall(
                self.raw.as_ptr(),
                host.as_mut_ptr().cast(),
                out_splits.as_ptr(),
                in_splits.as_ptr(),
                &mut out,
            )
        })?;
        // SAFETY: `out` is a fresh torch::Tensor*.
        let exchanged = unsafe { Tensor::from_ptr(out.cast()) };
        Ok(match device == self.backend.device() {
            true => exchanged,
            false => exchanged.to_device(device),
        })
    }

    /// The sum of `t` over the group, out of place, differentiable: the backward pass sums the
    /// output gradients over the group (each rank's loss depends on the global sum).
    pub fn all_reduce_sum_autograd(&self, t: &Tensor) -> Result<Tensor> {
        let device = t.device();
        let mut host = self.staged(t);
        let mut out = std::ptr::null_mut();
        // SAFETY: as in all_to_all.
        check(unsafe {
            ffi::tmd_allreduce_sum_autograd(self.raw.as_ptr(), host.as_mut_ptr().cast(), &mut out)
        })?;
        // SAFETY: `out` is a fresh torch::Tensor*.
        let summed = unsafe { Tensor::from_ptr(out.cast()) };
        Ok(summed.to_device(device))
    }

    /// Returns when every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        // SAFETY: a live group.
        check(unsafe { ffi::tmd_barrier(self.raw.as_ptr()) })
    }

    /// All-reduce, all-to-all and other collectives run so far, in that order.
    pub fn stats(&self) -> [CollectiveStats; 3] {
        let mut raw = [0f64; 9];
        // SAFETY: the shim writes 9 numbers.
        unsafe { ffi::tmd_group_stats(self.raw.as_ptr(), raw.as_mut_ptr()) };
        std::array::from_fn(|k| CollectiveStats {
            calls: raw[3 * k] as u64,
            bytes: raw[3 * k + 1] as u64,
            seconds: raw[3 * k + 2],
        })
    }
}
