// Shared by the build scripts that compile C++ against libtorch (taskmoe-kernels,
// taskmoe-dist), through `include!`: where libtorch's headers and libraries are, as torch-sys
// reads them, and the C++ ABI flag they need.

/// An environment variable as a path, with cargo told to rerun the script when it changes.
fn var(name: &str) -> Option<std::path::PathBuf> {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var_os(name).map(std::path::PathBuf::from)
}

/// libtorch's include and library folders (`$LIBTORCH/include` and `$LIBTORCH/lib`, or
/// `$LIBTORCH_INCLUDE` / `$LIBTORCH_LIB`) and `LIBTORCH_CXX11_ABI` (default `1`); panics
/// naming the crate and the fix when neither is set.
fn libtorch_paths(krate: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let root = var("LIBTORCH");
    let include = var("LIBTORCH_INCLUDE")
        .or_else(|| root.clone())
        .map(|p| p.join("include"));
    let lib = var("LIBTORCH_LIB")
        .or_else(|| root.clone())
        .map(|p| p.join("lib"));
    let (Some(include), Some(lib)) = (include, lib) else {
        panic!(
            "{krate}: set LIBTORCH to the libtorch 2.11 folder tch builds against \
             (`cargo xtask setup` provisions one; `cargo xtask env` prints the exports)"
        );
    };
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    (include, lib, abi)
}

/// A C++17 build against libtorch's headers in `include` with its ABI flag; the folders in
/// `first` are searched before libtorch's.
fn libtorch_cpp(first: &[&str], include: &std::path::Path, abi: &str) -> cc::Build {
    let mut build = cc::Build::new();
    build.cpp(true).pic(true).warnings(false);
    for dir in first {
        build.include(dir);
    }
    build
        .include(include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .define("GLOG_USE_GLOG_EXPORT", None);
    build
}

/// Links the compiled library before libtorch's CPU libraries in `lib`.
fn link_libtorch(lib: &std::path::Path) {
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
