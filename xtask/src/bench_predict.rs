//! `cargo xtask bench predict [--torch] [--rows N]`: the inference throughput a user sees.
//!
//! A dense all-MiniLM-L6-v2 run on `configs/glue-example` (one training step: the weights do
//! not change the cost), its HF export, and a TSV of `N` single sentences (every sentence of
//! the glue-example files, cycled; default 4096 rows). Then, three times each, best of three:
//!
//! - `taskmoe predict --run RUN --input rows.tsv --task sst2` (release build), whose last
//!   line says rows, tokens, the whole command's seconds and the loading part;
//! - with `--torch`, a `transformers` text-classification `pipeline` on the run's export
//!   (`benches/torch_predict.py`, run by `$TASKMOE_PYTHON` or `python3` when it imports torch
//!   and transformers), the same rows, batch size and threads.
//!
//! Prints a markdown table with the load average before and after, and the resolved
//! configuration's path. Needs MiniLM (`cargo xtask fetch-model minilm`).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::project::{check_status, describe, root};
use crate::run::build_taskmoe;
use crate::Result;

/// Rows per forward pass, on both sides.
const BATCH: usize = 64;
/// Threads, on both sides.
const THREADS: usize = 2;
/// Repetitions of each side; the best is reported.
const REPS: usize = 3;

/// One side's measurement: rows, real tokens, seconds of the whole command (or pipeline
/// call), seconds of loading.
#[derive(Clone, Copy, Debug)]
struct Measured {
    rows: usize,
    tokens: usize,
    total_s: f64,
    load_s: f64,
}

/// Runs the predict bench.
pub fn run(args: &[String]) -> Result<()> {
    let torch = args.iter().any(|a| a == "--torch");
    let rows = match args.iter().position(|a| a == "--rows") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or("--rows takes a number of rows")?,
        None => 4096,
    };
    let minilm = crate::models::ensure("minilm")?;
    let (lt, target) = build_taskmoe()?;
    let bin = target.join("release").join("taskmoe");
    let dir = target.join("bench-predict");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let input = dir.join("rows.tsv");
    write_rows(&input, rows)?;
    let load_before = load_average();

    let taskmoe = |args: &[&str]| -> Command {
        let mut cmd = Command::new(&bin);
        cmd.args(args).env("OMP_NUM_THREADS", THREADS.to_string());
        lt.apply_env(&mut cmd);
        cmd
    };
    let config = root().join("configs/glue-minilm.toml");
    let sets = [
        "model.variant=dense".to_string(),
        format!("init.from={}", minilm.display()),
        "train.steps=1".into(),
        "schedule.warmup_steps=0".into(),
        "eval.every=0".into(),
        format!("runtime.threads={THREADS}"),
        format!("output.dir={}", dir.display()),
        "output.name=dense-minilm".into(),
    ];
    let mut train = taskmoe(&["train", "--config", &config.to_string_lossy()]);
    for s in &sets {
        train.args(["--set", s]);
    }
    quiet(&mut train)?;
    let run_dir = dir.join("dense-minilm");
    quiet(&mut taskmoe(&[
        "export",
        "--run",
        &run_dir.to_string_lossy(),
        "--format",
        "hf",
    ]))?;
    let export = run_dir.join("export-hf-step1");

    let mut ours = Vec::new();
    for _ in 0..REPS {
        let output = dir.join("predictions.jsonl");
        let mut cmd = taskmoe(&[
            "predict",
            "--run",
            &run_dir.to_string_lossy(),
            "--input",
            &input.to_string_lossy(),
            "--task",
            "sst2",
            "--batch-size",
            &BATCH.to_string(),
            "--output",
            &output.to_string_lossy(),
        ]);
        ours.push(parse_predict(&captured_stderr(&mut cmd)?)?);
    }
    let theirs = match torch {
        false => None,
        true => torch_side(&export, &input)?,
    };
    let load_after = load_average();
    print_table(
        &ours,
        theirs.as_deref(),
        rows,
        &run_dir,
        (&load_before, &load_after),
    );
    Ok(())
}

/// The rows: every sentence of the glue-example files, cycled to `n`, under a `sentence`
/// header.
fn write_rows(path: &Path, n: usize) -> Result<()> {
    let mut sentences = Vec::new();
    for file in [
        "SST-2/dev.tsv",
        "SST-2/train.tsv",
        "RTE/dev.tsv",
        "STS-B/dev.tsv",
    ] {
        let text = fs::read_to_string(root().join("configs/glue-example").join(file))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        let columns: Vec<usize> = (header.iter().enumerate())
            .filter(|(_, h)| matches!(**h, "sentence" | "sentence1" | "sentence2"))
            .map(|(i, _)| i)
            .collect();
        for line in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            sentences.extend(
                columns
                    .iter()
                    .filter_map(|&c| fields.get(c))
                    .map(|s| s.to_string()),
            );
        }
    }
    if sentences.is_empty() {
        return Err("configs/glue-example holds no sentence".into());
    }
    let mut tsv = String::from("sentence\n");
    for i in 0..n {
        tsv.push_str(&sentences[i % sentences.len()]);
        tsv.push('\n');
    }
    fs::write(path, tsv)?;
    Ok(())
}

/// Runs `cmd` with its output captured, failing with its standard error.
fn quiet(cmd: &mut Command) -> Result<()> {
    captured_stderr(cmd).map(drop)
}

/// Runs `cmd` and returns its standard error (printed when it fails).
fn captured_stderr(cmd: &mut Command) -> Result<String> {
    eprintln!("$ {}", describe(cmd));
    let out = cmd.output()?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        eprintln!("{err}");
    }
    check_status(cmd, out.status)?;
    Ok(err)
}

/// `predicted N rows (T tokens) in S s: ... (of which loading ... L s; ...)`.
fn parse_predict(stderr: &str) -> Result<Measured> {
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("predicted "))
        .ok_or("taskmoe predict printed no summary line")?;
    let number_after = |key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let parsed = (|| {
        Some(Measured {
            rows: number_after("predicted ")? as usize,
            tokens: number_after("rows (")? as usize,
            total_s: number_after("tokens) in ")?,
            load_s: number_after("reading the input ")?,
        })
    })();
    parsed.ok_or_else(|| format!("cannot read `{line}`").into())
}

/// The pipeline's measurements, or `None` (said why) without a Python that has torch and
/// transformers.
fn torch_side(export: &Path, input: &Path) -> Result<Option<Vec<Measured>>> {
    let python = std::env::var("TASKMOE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into());
    let script = root().join("benches/torch_predict.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(export)
        .arg(input)
        .args(["--batch-size", &BATCH.to_string()])
        .args(["--threads", &THREADS.to_string()])
        .args(["--reps", &REPS.to_string()])
        .env_remove("LD_LIBRARY_PATH");
    eprintln!("$ {}", describe(&cmd));
    let out = match cmd.output() {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            eprintln!(
                "PyTorch reference skipped: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return Ok(None);
        }
        Err(e) => {
            eprintln!("PyTorch reference skipped: cannot run `{python}` ({e})");
            return Ok(None);
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut runs = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("RUN ")) {
        let v: Vec<f64> = line[4..]
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [rows, tokens, total, load] = v[..] {
            runs.push(Measured {
                rows: rows as usize,
                tokens: tokens as usize,
                total_s: total,
                load_s: load,
            });
        }
    }
    if let Some(versions) = text.lines().find(|l| l.starts_with("VERSIONS ")) {
        eprintln!("PyTorch reference: {}", &versions[9..]);
    }
    Ok((!runs.is_empty()).then_some(runs))
}

fn best(runs: &[Measured]) -> Measured {
    *runs
        .iter()
        .min_by(|a, b| a.total_s.total_cmp(&b.total_s))
        .expect("at least one run")
}

fn print_table(
    ours: &[Measured],
    theirs: Option<&[Measured]>,
    rows: usize,
    run_dir: &Path,
    load: (&str, &str),
) {
    let row = |name: &str, m: Measured, all: &[Measured]| -> String {
        let predicting = (m.total_s - m.load_s).max(1e-9);
        let times: Vec<String> = all.iter().map(|r| format!("{:.2}", r.total_s)).collect();
        format!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {} |",
            m.rows,
            m.tokens,
            m.total_s,
            m.load_s,
            m.tokens as f64 / m.total_s,
            m.tokens as f64 / predicting,
            times.join(", ")
        )
    };
    let ours_best = best(ours);
    println!(
        "\n### Inference throughput: `taskmoe predict` against a transformers pipeline\n\n\
         Dense all-MiniLM-L6-v2, {rows} single sentences (configs/glue-example, cycled), batch \
         {BATCH}, {THREADS} threads, best of {REPS}; load average before: {}, after: {}. \
         Resolved configuration: `{}`.\n",
        load.0,
        load.1,
        run_dir.join("config.toml").display()
    );
    println!(
        "| side | rows | tokens | whole command (s) | loading (s) | tokens/s | tokens/s \
         predicting alone | every run (s) |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    println!("{}", row("taskmoe predict", ours_best, ours));
    if let Some(theirs) = theirs {
        let theirs_best = best(theirs);
        println!("{}", row("transformers pipeline", theirs_best, theirs));
        println!(
            "\ntaskmoe / pipeline, whole command: {:.2}x the pipeline's tokens/s",
            (ours_best.tokens as f64 / ours_best.total_s)
                / (theirs_best.tokens as f64 / theirs_best.total_s)
        );
        if ours_best.tokens != theirs_best.tokens {
            println!(
                "note: the two tokenizers counted different tokens ({} against {})",
                ours_best.tokens, theirs_best.tokens
            );
        }
    }
}

/// `/proc/loadavg`'s first three fields, or `unknown`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_predict_summary_line_parses() {
        let err = "predicting 4 rows of x with y (step 1)\npredicted 4096 rows (41000 tokens) \
                   in 3.25 s: 1260.3 rows/s, 12615 tokens/s (of which loading the model and \
                   reading the input 0.84 s; predicting alone 17012 tokens/s)\n";
        let m = parse_predict(err).unwrap();
        assert_eq!((m.rows, m.tokens), (4096, 41000));
        assert!((m.total_s - 3.25).abs() < 1e-12 && (m.load_s - 0.84).abs() < 1e-12);
        assert!(parse_predict("nothing").is_err());
    }

    #[test]
    fn rows_cycle_the_glue_example_sentences() {
        let dir = std::env::temp_dir().join(format!("xtask-rows-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rows.tsv");
        write_rows(&path, 50).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 51);
        assert_eq!(lines[0], "sentence");
        assert!(lines[1..]
            .iter()
            .all(|l| !l.is_empty() && !l.contains('\t')));
        fs::remove_dir_all(dir).unwrap();
    }
}
