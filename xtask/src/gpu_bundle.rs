//! `cargo xtask gpu-bundle`: a folder (and tarball) to carry to a GPU machine for the one-shot
//! check.
//!
//! Builds the release `taskmoe` binary against the pinned libtorch and packs it with
//! `run-gpu-check.sh` and a README into `target/gpu-bundle/taskmoe-gpu-check/` (and
//! `taskmoe-gpu-check.tar.gz` beside it). On a machine with an NVIDIA GPU and PyTorch 2.11.0
//! (CUDA) installed, the script points `LD_LIBRARY_PATH` at that installation's `torch/lib`
//! and runs `taskmoe check --device cuda`, which loads `libtorch_cuda.so` from there and prints
//! one table. The binary carries no libtorch: the PyTorch install provides it (DESIGN.md
//! section 5: the same 2.11.0 build).

use std::fs;
use std::process::Command;

use crate::libtorch::TORCH_VERSION;
use crate::project::run_cmd;
use crate::Result;

/// Name of the bundle folder and tarball under `target/gpu-bundle/`.
const BUNDLE: &str = "taskmoe-gpu-check";

/// The script that runs the check on the GPU machine.
pub fn script() -> String {
    format!(
        r#"#!/usr/bin/env bash
# taskmoe one-shot GPU check. Runs the bundled `taskmoe check --device cuda` against this
# machine's PyTorch {TORCH_VERSION} (CUDA) libraries and prints one table; extra arguments go to
# `taskmoe check` (see `./taskmoe check --help`). PYTHON selects the interpreter with torch.
set -euo pipefail
here="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
python="${{PYTHON:-python3}}"
if ! torch_dir="$("$python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"; then
    echo "error: $python cannot import torch; install torch=={TORCH_VERSION} or set PYTHON" >&2
    exit 1
fi
version="$("$python" -c 'import torch; print(torch.__version__)')"
case "$version" in
    {TORCH_VERSION}|{TORCH_VERSION}+*) ;;
    *) echo "error: torch $version is installed; this binary needs {TORCH_VERSION}" >&2; exit 1 ;;
esac
lib="$torch_dir/lib"
if [ ! -e "$lib/libtorch_cuda.so" ]; then
    echo "error: $lib has no libtorch_cuda.so (a CPU-only PyTorch); install a CUDA build" >&2
    exit 1
fi
# The pip CUDA runtime libraries (nvidia/*/lib) sit beside torch; libtorch finds them through
# its own RUNPATH, listing them here only helps unusual layouts.
extra="$(find "$(dirname "$torch_dir")/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':' || true)"
export LD_LIBRARY_PATH="$lib:$extra${{LD_LIBRARY_PATH:-}}"
echo "torch $version from $torch_dir" >&2
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
fi
out="$here/gpu-check-$(date +%Y%m%d-%H%M%S).txt"
"$here/taskmoe" check --device cuda "$@" 2>&1 | tee "$out"
echo "saved to $out" >&2
"#
    )
}

/// The README of the bundle.
fn readme() -> String {
    format!(
        "# taskmoe GPU check\n\n\
         Needs: Linux x86_64, an NVIDIA GPU with its driver, and PyTorch {TORCH_VERSION} with CUDA\n\
         (`pip install torch=={TORCH_VERSION}`). Nothing else: the `taskmoe` binary uses that\n\
         installation's `torch/lib`.\n\n\
         ```sh\n./run-gpu-check.sh                 # everything, about 5 minutes on an H200\n\
         ./run-gpu-check.sh --skip train    # only logits and MoE-vs-dense\n\
         ./run-gpu-check.sh --checkpoint runs/task-moe-seed0/checkpoint-2000   # your model\n```\n\n\
         It prints one markdown table (and saves it as `gpu-check-<time>.txt`):\n\n\
         - logits of a checkpoint (default: a seeded random GPU-preset model) on the CPU in fp32\n\
           against the GPU in fp32 (target: max relative error <= 1e-4) and bf16 (<= 1e-2);\n\
         - the MoE layer (token router, top-2, dropless) against a dense FFN of equal active\n\
           FLOPs, forward + backward in bf16, at 32k-128k tokens, d = 1024-2048, E = 8-64\n\
           (target: at most 1.15x from 32k tokens);\n\
         - training the GPU preset (d = 1024, 12 blocks, 6 MoE with 8 experts, top-2) in bf16 on\n\
           64 x 512 token batches: tokens/s and model FLOP utilisation (target: >= 35% on an\n\
           H200; `--peak-tflops` for other GPUs).\n\n\
         The command exits non-zero when a target is missed. A missing `libtorch_cuda.so` or\n\
         driver is reported by name.\n"
    )
}

/// `cargo xtask gpu-bundle`.
pub fn run(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        return Err("usage: cargo xtask gpu-bundle".into());
    }
    let (_, target) = crate::run::build_taskmoe()?;
    let base = target.join("gpu-bundle");
    let dir = base.join(BUNDLE);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let binary = dir.join("taskmoe");
    fs::copy(target.join("release").join("taskmoe"), &binary)
        .map_err(|e| format!("cannot copy the taskmoe binary: {e}"))?;
    let script_path = dir.join("run-gpu-check.sh");
    fs::write(&script_path, script()).map_err(|e| format!("cannot write the script: {e}"))?;
    set_executable(&script_path)?;
    fs::write(dir.join("README.md"), readme()).map_err(|e| format!("cannot write README: {e}"))?;
    let tarball = base.join(format!("{BUNDLE}.tar.gz"));
    let mut tar = Command::new("tar");
    tar.arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&base)
        .arg(BUNDLE);
    run_cmd(&mut tar)?;
    eprintln!(
        "gpu-bundle: {} (and {}); on the GPU machine: tar xzf {BUNDLE}.tar.gz && \
         {BUNDLE}/run-gpu-check.sh",
        dir.display(),
        tarball.display()
    );
    Ok(())
}

fn set_executable(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_is_valid_bash_and_uses_the_torch_install() {
        let text = script();
        assert!(text.contains("LD_LIBRARY_PATH=\"$lib:"));
        assert!(text.contains("check --device cuda"));
        assert!(text.contains(TORCH_VERSION));
        let dir = std::env::temp_dir().join(format!("xtask-gpu-bundle-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run-gpu-check.sh");
        fs::write(&path, &text).unwrap();
        // `bash -n` parses without running; skipped where there is no bash.
        if let Ok(out) = Command::new("bash").arg("-n").arg(&path).output() {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn script_refuses_a_machine_without_torch() {
        let dir = std::env::temp_dir().join(format!("xtask-gpu-bundle-nt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run-gpu-check.sh");
        fs::write(&path, script()).unwrap();
        // A "python" that cannot import torch.
        let Ok(out) = Command::new("bash")
            .arg(&path)
            .env("PYTHON", "false")
            .output()
        else {
            return;
        };
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot import torch"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
