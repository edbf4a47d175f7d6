//! Running a job of `N` local ranks (tests, benchmarks): each a child process with torchrun's
//! variables, on a free loopback port.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::env::{free_loopback_port, DistEnv};

/// What one rank of a local job did.
#[derive(Debug)]
pub struct RankOutput {
    /// The rank.
    pub rank: usize,
    /// Its exit status; `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl RankOutput {
    /// Whether the rank exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// The running test binary as a command that runs exactly one of its tests, test `name` of
/// the module whose `module_path!()` is `module`, on one test thread with its output not
/// captured: the rank of a multi-process test whose ranks are a worker test of the same binary
/// (started by [`run_local`]; the worker prints a marker that [`expect_all_ok`] requires, so a
/// filter that selected nothing fails). The test's name is the module path below the binary's
/// crate name, as `--exact` wants it.
///
/// # Panics
/// When the path of the running executable cannot be read.
pub fn worker_test(module: &str, name: &str) -> Command {
    let test = match module.split_once("::") {
        Some((_binary, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    };
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let mut command = Command::new(exe);
    command.args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"]);
    command
}

/// Panics, naming the rank, its exit status and its output, unless every rank of `outs`
/// exited with status 0 and printed `marker` on its standard output (a test's worker prints
/// it last, so a worker that returned early does not pass).
pub fn expect_all_ok(outs: &[RankOutput], marker: &str) {
    for o in outs {
        assert!(
            o.success() && o.stdout.contains(marker),
            "rank {} ({:?}) did not finish with `{marker}`:\n{}\n{}",
            o.rank,
            o.status,
            o.stdout,
            o.stderr
        );
    }
}

/// Starts `world` processes made by `command(rank)`, each with torchrun's variables for a
/// job on 127.0.0.1 (a free port) and a collective timeout of `collective_timeout`, and waits
/// for all of them, killing those still running after `deadline`. Output is captured.
pub fn run_local(
    world: usize,
    collective_timeout: Duration,
    deadline: Duration,
    command: impl Fn(usize) -> Command,
) -> std::io::Result<Vec<RankOutput>> {
    let env = DistEnv {
        rank: 0,
        world_size: world,
        local_rank: 0,
        master_addr: "127.0.0.1".to_string(),
        master_port: free_loopback_port()?,
        timeout: collective_timeout,
    };
    let mut children: Vec<(
        Child,
        thread::JoinHandle<String>,
        thread::JoinHandle<String>,
    )> = Vec::new();
    for rank in 0..world {
        let mut cmd = command(rank);
        cmd.envs(env.vars_for(rank))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let drain = |mut r: Box<dyn Read + Send>| {
            thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("piped")));
        let err = drain(Box::new(child.stderr.take().expect("piped")));
        children.push((child, out, err));
    }
    let start = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; world];
    loop {
        for (rank, (child, _, _)) in children.iter_mut().enumerate() {
            if statuses[rank].is_none() {
                statuses[rank] = child.try_wait()?;
            }
        }
        if statuses.iter().all(Option::is_some) {
            break;
        }
        if start.elapsed() > deadline {
            for (rank, (child, _, _)) in children.iter_mut().enumerate() {
                if statuses[rank].is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(children
        .into_iter()
        .zip(statuses)
        .enumerate()
        .map(|(rank, ((_, out, err), status))| RankOutput {
            rank,
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
        .collect())
}
