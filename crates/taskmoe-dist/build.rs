//! Compiles `csrc/shim.cpp` against the libtorch tch uses (`$LIBTORCH`, as torch-sys reads it,
//! or `$LIBTORCH_INCLUDE` / `$LIBTORCH_LIB`), with the vendored Gloo headers, and links it
//! before `libtorch_cpu` and `libc10`, which carry the c10d and Gloo code.

use std::env;
use std::path::PathBuf;

fn var(name: &str) -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed={name}");
    env::var_os(name).map(PathBuf::from)
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=vendor");
    let root = var("LIBTORCH");
    let include = var("LIBTORCH_INCLUDE")
        .or_else(|| root.clone())
        .map(|p| p.join("include"));
    let lib = var("LIBTORCH_LIB")
        .or_else(|| root.clone())
        .map(|p| p.join("lib"));
    let (Some(include), Some(lib)) = (include, lib) else {
        panic!(
            "taskmoe-dist: set LIBTORCH to the libtorch 2.11 folder tch builds against \
             (`cargo xtask setup` provisions one; `cargo xtask env` prints the exports)"
        );
    };
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        // Vendored Gloo headers first, so a system `libgloo-dev` of another version is not
        // mixed in.
        .include("vendor")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .file("csrc/shim.cpp")
        .compile("taskmoe_dist_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
