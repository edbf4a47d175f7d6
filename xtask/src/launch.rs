//! `cargo xtask train --nproc N`: a local data-parallel job, the way torchrun starts one.
//!
//! Starts `N` `taskmoe train` processes with torchrun's variables (`RANK`, `LOCAL_RANK`,
//! `WORLD_SIZE`, `MASTER_ADDR=127.0.0.1`, `MASTER_PORT` = a free port), forwards their output
//! line by line with a `[rank r]` prefix (rank 0's standard output, the result table, as it
//! is), and when one rank fails kills the others and reports which rank failed and how.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::Result;

/// Splits `--nproc N` (or `--nproc=N`) off `args`: `Some(N)` and the rest, or `None` and
/// `args` unchanged.
pub fn take_nproc(args: &[String]) -> Result<(Option<usize>, Vec<String>)> {
    let mut rest = Vec::new();
    let mut nproc = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = if a == "--nproc" {
            Some(
                it.next()
                    .ok_or("--nproc needs a number of processes")?
                    .clone(),
            )
        } else {
            a.strip_prefix("--nproc=").map(str::to_string)
        };
        match value {
            Some(v) => {
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--nproc {v}: not a positive number"))?;
                nproc = Some(n);
            }
            None => rest.push(a.clone()),
        }
    }
    Ok((nproc, rest))
}

fn forward(
    stream: impl Read + Send + 'static,
    prefix: String,
    to_stdout: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if to_stdout {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{prefix}{line}");
            } else {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{prefix}{line}");
            }
        }
    })
}

/// Runs `nproc` ranks of `binary args` from `dir`, each with `env` applied by `prepare`.
pub fn run(
    nproc: usize,
    binary: &Path,
    args: &[String],
    dir: &Path,
    prepare: impl Fn(&mut Command),
) -> Result<()> {
    let port = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
    eprintln!("xtask: {nproc} ranks on 127.0.0.1:{port}");
    let mut children: Vec<Child> = Vec::new();
    let mut pumps = Vec::new();
    for rank in 0..nproc {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .current_dir(dir)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        prepare(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                for c in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!("starting rank {rank} ({}): {e}", binary.display()).into());
            }
        };
        let prefix = format!("[rank {rank}] ");
        let out_prefix = if rank == 0 {
            String::new()
        } else {
            prefix.clone()
        };
        pumps.push(forward(
            child.stdout.take().expect("piped"),
            out_prefix,
            true,
        ));
        pumps.push(forward(child.stderr.take().expect("piped"), prefix, false));
        children.push(child);
    }
    let mut done = vec![false; nproc];
    let mut failure: Option<String> = None;
    while failure.is_none() && !done.iter().all(|&d| d) {
        for (rank, child) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            if let Some(status) = child.try_wait()? {
                done[rank] = true;
                if !status.success() {
                    failure = Some(format!("rank {rank} of {nproc} failed ({status})"));
                    break;
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    if failure.is_some() {
        for (rank, child) in children.iter_mut().enumerate() {
            if !done[rank] {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    for p in pumps {
        let _ = p.join();
    }
    match failure {
        Some(f) => Err(format!("{f}; stopped the other ranks").into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nproc_is_split_off_the_arguments() {
        let args: Vec<String> = ["--nproc", "2", "--config", "c.toml", "--nproc=3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (n, rest) = take_nproc(&args).unwrap();
        assert_eq!(n, Some(3));
        assert_eq!(rest, vec!["--config", "c.toml"]);
        assert!(take_nproc(&["--nproc".to_string()]).is_err());
        assert!(take_nproc(&["--nproc=0".to_string()]).is_err());
        assert_eq!(take_nproc(&[]).unwrap().0, None);
    }
}
