//! `cargo xtask bench`: runs the benchmarks against the provisioned libtorch, optimised.
//!
//! - `bench [--quick] [--torch] [--no-write]`: the suite, as markdown tables: routing kernels,
//!   the MoE layer against the dense FFN, and the end-to-end training step and evaluation
//!   forward of every variant of both presets with scaling in tokens, experts and tasks
//!   (`benches/train_step.rs`). `--torch` adds the PyTorch eager reference
//!   (`benches/torch_step.py`) side by side, run by `$TASKMOE_PYTHON` or `python3` when
//!   `import torch` works there (otherwise the column is skipped with a note). The full suite
//!   replaces the generated part of `docs/benchmarks.md` (machine, threads, command, date,
//!   tables) unless `--no-write`; `--quick` (a subset, under 10 minutes on 2 cores) only prints.
//! - `bench kernels`: the routing kernels (criterion);
//! - `bench predict [--torch] [--rows N]`: `taskmoe predict`'s throughput on a dense MiniLM
//!   run against a transformers pipeline on its export (`bench_predict.rs`);
//! - `bench logs`: what a step costs the run's logs, `metrics.jsonl` and TensorBoard
//!   (criterion, `benches/run_log.rs`);
//! - `bench moe [--quick]`: the MoE layer against the dense FFN as a markdown table;
//! - `bench step [--quick] [--torch]`: the training-step tables only;
//! - `bench real [--quick] [--torch]`: the real workload (`benches/real_step.rs`): MiniLM
//!   upcycled into a task-MoE against dense MiniLM, training step and evaluation on a fixed
//!   batch of real texts, every router kind at 8, 16 and 64 experts; `--torch` adds the
//!   PyTorch eager reference (`benches/torch_real.py`, HF `BertModel`) when the Python
//!   imports torch and transformers. Needs MiniLM (`cargo xtask fetch-model minilm`).
//!
//! Arguments after `--` go to the bench binary (criterion filters, for instance).

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::libtorch::{self, Libtorch};
use crate::project::{cargo, check_status, describe, root, run_cmd};
use crate::Result;

/// Start and end markers of the generated part of `docs/benchmarks.md`.
const BEGIN: &str = "<!-- BEGIN cargo xtask bench: generated, do not edit by hand -->";
const END: &str = "<!-- END cargo xtask bench -->";

/// Runs the selected benches.
pub fn run(args: &[String]) -> Result<()> {
    let (ours, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let flag = |name: &str| ours.iter().any(|a| a == name);
    let quick = flag("--quick");
    let lt = libtorch::ensure()?;
    match ours
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
    {
        None if passthrough.is_empty() => suite(&lt, quick, flag("--torch"), !flag("--no-write")),
        None => {
            let mut cmd = cargo();
            cmd.args(["bench", "--workspace", "--"]).args(passthrough);
            lt.apply_env(&mut cmd);
            run_cmd(&mut cmd)
        }
        Some("kernels") => {
            let mut cmd = bench_cmd(&lt, "taskmoe-kernels", "kernels");
            cmd.args(passthrough);
            run_cmd(&mut cmd)
        }
        Some("predict") => crate::bench_predict::run(ours),
        Some("logs") => {
            let mut cmd = bench_cmd(&lt, "taskmoe-train", "run_log");
            cmd.args(passthrough);
            run_cmd(&mut cmd)
        }
        Some("moe") => {
            let mut cmd = bench_cmd(&lt, "taskmoe-experts", "moe_layer");
            cmd.arg("--summary").args(passthrough);
            if quick {
                cmd.arg("--quick");
            }
            run_cmd(&mut cmd)
        }
        Some("step") => {
            let mut cmd = step_cmd(&lt, quick, flag("--torch"))?;
            cmd.args(passthrough);
            run_cmd(&mut cmd)
        }
        Some("real") => {
            let mut cmd = real_cmd(&lt, quick, flag("--torch"))?;
            cmd.args(passthrough);
            run_cmd(&mut cmd)
        }
        Some(other) => Err(format!(
            "unknown bench `{other}`: expected kernels, moe, step, real, logs or predict"
        )
        .into()),
    }
}

/// `cargo bench -p <package> --bench <bench> --`, with libtorch in the environment.
fn bench_cmd(lt: &Libtorch, package: &str, bench: &str) -> Command {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", package, "--bench", bench, "--"]);
    lt.apply_env(&mut cmd);
    cmd
}

/// The training-step summary, with the PyTorch reference when asked for and available.
fn step_cmd(lt: &Libtorch, quick: bool, torch: bool) -> Result<Command> {
    let mut cmd = bench_cmd(lt, "taskmoe-train", "train_step");
    cmd.arg("--summary");
    if quick {
        cmd.arg("--quick");
    }
    if torch {
        match find_torch() {
            Ok((python, version)) => {
                eprintln!("PyTorch reference: {python} (torch {version})");
                cmd.args(["--torch", &python]);
            }
            Err(why) => eprintln!("PyTorch reference skipped: {why}"),
        }
    }
    Ok(cmd)
}

/// The real-workload summary (MiniLM must be fetched), with the PyTorch reference when asked
/// for and a Python imports torch and transformers.
fn real_cmd(lt: &Libtorch, quick: bool, torch: bool) -> Result<Command> {
    let dir = crate::models::ensure("minilm")?;
    let mut cmd = bench_cmd(lt, "taskmoe-train", "real_step");
    cmd.env("TASKMOE_MINILM_DIR", &dir).arg("--summary");
    if quick {
        cmd.arg("--quick");
    }
    if torch {
        match find_torch_with("import torch, transformers; print(torch.__version__)") {
            Ok((python, version)) => {
                eprintln!("PyTorch reference: {python} (torch {version}, transformers)");
                cmd.args(["--torch", &python]);
            }
            Err(why) => eprintln!("PyTorch reference skipped: {why} (and transformers)"),
        }
    }
    Ok(cmd)
}

/// A Python that can `import torch`: `$TASKMOE_PYTHON`, else `python3`; with torch's version.
fn find_torch() -> std::result::Result<(String, String), String> {
    find_torch_with("import torch; print(torch.__version__)")
}

/// A Python (`$TASKMOE_PYTHON`, else `python3`) that runs `probe`, with what it printed.
fn find_torch_with(probe: &str) -> std::result::Result<(String, String), String> {
    let python = std::env::var("TASKMOE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_string());
    let out = Command::new(&python)
        .args(["-c", probe])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .map_err(|e| format!("cannot run `{python}` ({e}); set TASKMOE_PYTHON"))?;
    if !out.status.success() {
        return Err(format!(
            "`{python}` cannot run `{probe}`; set TASKMOE_PYTHON to a Python with torch 2.11"
        ));
    }
    Ok((
        python,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// Runs `cmd`, echoing its standard output as it comes, and returns that output.
fn run_tee(cmd: &mut Command) -> Result<String> {
    eprintln!("$ {}", describe(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    let mut text = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            text.push_str(&line);
            text.push('\n');
        }
    }
    check_status(cmd, child.wait()?)?;
    Ok(text)
}

/// The whole suite; the full one is written into `docs/benchmarks.md`.
fn suite(lt: &Libtorch, quick: bool, torch: bool, write: bool) -> Result<()> {
    let started = std::time::Instant::now();
    // Build everything first, so compilation does not overlap any measurement.
    let mut build = cargo();
    build.args([
        "bench",
        "--no-run",
        "-p",
        "taskmoe-kernels",
        "-p",
        "taskmoe-experts",
        "-p",
        "taskmoe-train",
    ]);
    lt.apply_env(&mut build);
    run_cmd(&mut build)?;
    let header = conditions(quick, torch);
    println!("{header}");
    let mut kernels = bench_cmd(lt, "taskmoe-kernels", "kernels");
    kernels.arg("--summary");
    let mut moe = bench_cmd(lt, "taskmoe-experts", "moe_layer");
    moe.arg("--summary");
    if quick {
        kernels.arg("--quick");
        moe.arg("--quick");
    }
    let kernels = run_tee(&mut kernels)?;
    let moe = run_tee(&mut moe)?;
    let step = run_tee(&mut step_cmd(lt, quick, torch)?)?;
    let real = run_tee(&mut real_cmd(lt, quick, torch)?)?;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let end_load = load_average();
    println!("suite took {minutes:.1} minutes; load average {end_load} at the end");
    if quick || !write {
        return Ok(());
    }
    let generated = format!(
        "{BEGIN}\n{header}\nThe suite took {minutes:.0} minutes; load average {end_load} at the end.\n\n### Routing kernels\n\n\
         {kernels}\n### MoE layer against the dense FFN\n\n{moe}\n### Training step and \
         evaluation, end to end\n\n{step}\n### The real workload: MiniLM upcycled\n\n{real}{END}"
    );
    let path = root().join("docs").join("benchmarks.md");
    let old = fs::read_to_string(&path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{generated}{}", &old[..b], &old[e + END.len()..])
        }
        _ => format!("{}\n\n{generated}\n", old.trim_end()),
    };
    fs::write(&path, new)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The 1-minute load average (`/proc/loadavg`).
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// The measurement conditions: machine, threads, command, date, libtorch.
fn conditions(quick: bool, torch: bool) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("?".to_string(), |kb| format!("{:.0}", kb / 1048576.0));
    let load = load_average();
    let omp = match std::env::var("OMP_WAIT_POLICY") {
        Ok(v) => format!("`OMP_WAIT_POLICY={v}` (both sides)"),
        Err(_) => "OpenMP defaults (`OMP_WAIT_POLICY` unset)".to_string(),
    };
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let threads = std::env::var("TASKMOE_BENCH_THREADS").unwrap_or_else(|_| "2".to_string());
    let mut command = "cargo xtask bench".to_string();
    if quick {
        command.push_str(" --quick");
    }
    if torch {
        command.push_str(" --torch");
    }
    format!(
        "- machine: {cpu}, {cores} cores visible, {mem_gib} GiB, load average {load} at the \
         start\n- threads: {threads} intra-op (`TASKMOE_BENCH_THREADS`), PyTorch reference \
         likewise; {omp}\n- command: `{command}`\n- date: {date}\n- libtorch 2.11.0 (CPU), tch \
         0.24.0, release profile\n"
    )
}
