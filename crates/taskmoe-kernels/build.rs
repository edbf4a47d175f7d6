//! Compiles `csrc/weight_grads.cpp` (the in-place weight gradients of grouped linears, a
//! libtorch autograd function) against the libtorch tch uses (`$LIBTORCH`, as torch-sys reads
//! it, or `$LIBTORCH_INCLUDE` / `$LIBTORCH_LIB`) and links it before `libtorch_cpu` and
//! `libc10`.

include!("../../build-support/libtorch.rs");

fn main() {
    println!("cargo:rerun-if-changed=csrc/weight_grads.cpp");
    println!("cargo:rerun-if-changed=../../build-support/libtorch.rs");
    let (include, lib, abi) = libtorch_paths("taskmoe-kernels");
    libtorch_cpp(&[], &include, &abi)
        .file("csrc/weight_grads.cpp")
        .compile("taskmoe_kernels_weight_grads");
    link_libtorch(&lib);
}
