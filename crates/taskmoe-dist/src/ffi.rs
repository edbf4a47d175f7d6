//! The C ABI of `csrc/shim.cpp`. Tensors are `torch::Tensor*`, i.e. tch's `C_tensor`; every
//! function returns NULL or an error message to free with [`tmd_free_error`].

use std::ffi::{c_char, c_int, c_void, CStr};

extern "C" {
    pub fn tmd_free_error(e: *mut c_char);
    #[allow(clippy::too_many_arguments)]
    pub fn tmd_group_new(
        host: *const c_char,
        bind: *const c_char,
        port: c_int,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        prefix: *const c_char,
        store_of: *mut c_void,
        store_rank: c_int,
        store_size: c_int,
        nccl_factory: *mut c_void,
        device: c_int,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub fn tmd_group_free(g: *mut c_void);
    pub fn tmd_allreduce_sum(g: *mut c_void, t: *mut c_void) -> *mut c_char;
    pub fn tmd_broadcast(g: *mut c_void, t: *mut c_void, root: c_int) -> *mut c_char;
    pub fn tmd_allgather(g: *mut c_void, t: *mut c_void, out: *mut *mut c_void) -> *mut c_char;
    pub fn tmd_alltoall(
        g: *mut c_void,
        t: *mut c_void,
        out_splits: *const i64,
        in_splits: *const i64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub fn tmd_allreduce_sum_autograd(
        g: *mut c_void,
        t: *mut c_void,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    pub fn tmd_barrier(g: *mut c_void) -> *mut c_char;
    pub fn tmd_group_stats(g: *mut c_void, out: *mut f64);
}

/// Takes the shim's error message (if any) and frees it.
///
/// # Safety
/// `e` is NULL or a message returned by the shim and not yet freed.
pub unsafe fn take_error(e: *mut c_char) -> Option<String> {
    if e.is_null() {
        return None;
    }
    let text = CStr::from_ptr(e).to_string_lossy().into_owned();
    tmd_free_error(e);
    Some(text)
}
