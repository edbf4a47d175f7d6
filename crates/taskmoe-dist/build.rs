//! Compiles `csrc/shim.cpp` against the libtorch tch uses (`$LIBTORCH`, as torch-sys reads it,
//! or `$LIBTORCH_INCLUDE` / `$LIBTORCH_LIB`), with the vendored Gloo headers, and links it
//! before `libtorch_cpu` and `libc10`, which carry the c10d and Gloo code.
//!
//! With a CUDA libtorch (`libtorch_cuda.so` beside `libtorch_cpu.so`) and the CUDA and NCCL
//! headers at hand (`TASKMOE_CUDA_INCLUDE`, a `:`-separated list of folders, then
//! `$CUDA_HOME/include`, `$CUDA_PATH/include`, `$NCCL_INCLUDE_DIR`, `/usr/local/cuda/include`,
//! `/usr/include`), it also builds `csrc/nccl.cpp` into `libtaskmoe_dist_nccl.so` in `OUT_DIR`
//! and records its path for the crate (`TASKMOE_DIST_NCCL_BUILT`), which loads it on demand.
//! Without them there is no NCCL backend, and a job that asks for it gets an error naming why.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

include!("../../build-support/libtorch.rs");

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=vendor");
    println!("cargo:rerun-if-changed=../../build-support/libtorch.rs");
    let (include, lib, abi) = libtorch_paths("taskmoe-dist");
    // Vendored Gloo headers first, so a system `libgloo-dev` of another version is not
    // mixed in.
    libtorch_cpp(&["vendor"], &include, &abi)
        .define("USE_C10D_GLOO", None)
        .file("csrc/shim.cpp")
        .compile("taskmoe_dist_shim");
    link_libtorch(&lib);
    nccl_library(&include, &lib, &abi);
}

/// Folders that may hold the CUDA and NCCL headers, in the order searched.
fn cuda_include_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    println!("cargo:rerun-if-env-changed=TASKMOE_CUDA_INCLUDE");
    if let Some(list) = env::var_os("TASKMOE_CUDA_INCLUDE") {
        dirs.extend(env::split_paths(&list));
    }
    for name in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = var(name) {
            dirs.push(root.join("include"));
        }
    }
    if let Some(nccl) = var("NCCL_INCLUDE_DIR") {
        dirs.push(nccl);
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs.push(PathBuf::from("/usr/include"));
    dirs
}

/// Builds `libtaskmoe_dist_nccl.so` when a CUDA libtorch and the headers are there (see the
/// file's docs); warns and goes on without it when the compiler fails.
fn nccl_library(include: &Path, lib: &Path, abi: &str) {
    println!("cargo:rerun-if-changed=csrc/nccl.cpp");
    if !lib.join("libtorch_cuda.so").is_file() {
        return; // a CPU libtorch: Gloo only
    }
    let dirs = cuda_include_dirs();
    let missing: Vec<&str> = ["cuda_runtime_api.h", "nccl.h"]
        .into_iter()
        .filter(|h| !dirs.iter().any(|d| d.join(h).is_file()))
        .collect();
    if !missing.is_empty() {
        println!(
            "cargo:warning=taskmoe-dist: {} has libtorch_cuda.so but {} was not found (set \
             TASKMOE_CUDA_INCLUDE); building without the NCCL backend",
            lib.display(),
            missing.join(" and ")
        );
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("libtaskmoe_dist_nccl.so");
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let mut cmd: Command = compiler.to_command();
    cmd.args(["-std=c++17", "-shared", "-fPIC", "-O2", "-w"])
        .arg(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .args(["-DUSE_C10D_NCCL", "-DUSE_CUDA", "-DGLOG_USE_GLOG_EXPORT"])
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(include.join("torch/csrc/api/include"));
    for d in dirs.iter().filter(|d| d.is_dir()) {
        cmd.arg("-I").arg(d);
    }
    cmd.arg("csrc/nccl.cpp")
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10"]);
    match cmd.output() {
        Ok(o) if o.status.success() => {
            println!("cargo:rustc-env=TASKMOE_DIST_NCCL_BUILT={}", out.display());
        }
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr);
            let first = text.lines().find(|l| l.contains("error")).unwrap_or("");
            println!(
                "cargo:warning=taskmoe-dist: compiling csrc/nccl.cpp failed ({first}); \
                 building without the NCCL backend"
            );
        }
        Err(e) => println!(
            "cargo:warning=taskmoe-dist: cannot run the C++ compiler for csrc/nccl.cpp ({e}); \
             building without the NCCL backend"
        ),
    }
}
