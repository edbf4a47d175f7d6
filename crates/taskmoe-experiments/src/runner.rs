//! Running the arms of an experiment: each training run is a `taskmoe train --config FILE`
//! process (so every run folder is an ordinary, reproducible run), several at a time, with
//! finished runs reused when their configuration has not changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{bail, Context, ExperimentError, Result};
use taskmoe_train::RunConfig;

/// The file `taskmoe train` leaves in a finished run folder; its presence marks a run done.
pub const RESULT_FILE: &str = "final-test.json";

/// One training run of an experiment.
#[derive(Clone, Debug)]
pub struct Job {
    /// Unique within the experiment: the run folder's and config file's name.
    pub id: String,
    /// The run's configuration (its `output` is set by the runner).
    pub config: RunConfig,
}

/// Runs jobs as `taskmoe` processes under an experiment folder: configs in `configs/`, run
/// folders in `runs/`, each process's output in `logs/`.
#[derive(Clone, Debug)]
pub struct Runner {
    exe: PathBuf,
    dir: PathBuf,
    parallel: usize,
}

impl Runner {
    /// A runner that starts `exe` (the `taskmoe` binary) with `parallel` runs at a time, for
    /// the experiment folder `dir`.
    pub fn new(exe: PathBuf, dir: &Path, parallel: usize) -> Self {
        Runner {
            exe,
            dir: dir.to_path_buf(),
            parallel: parallel.max(1),
        }
    }

    /// The run folder of job `id`.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.dir.join("runs").join(id)
    }

    /// Runs every job not already done with the same configuration, `parallel` at a time, and
    /// returns the run folders in job order. The first failure stops new starts; the error
    /// names the job and its log.
    pub fn run(&self, phase: &str, jobs: &[Job]) -> Result<Vec<PathBuf>> {
        for dir in ["configs", "runs", "logs"] {
            let d = self.dir.join(dir);
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut prepared = Vec::with_capacity(jobs.len());
        let mut todo = Vec::new();
        for job in jobs {
            if !seen.insert(job.id.as_str()) {
                bail!("two jobs are named `{}`", job.id);
            }
            let mut cfg = job.config.clone();
            cfg.output.dir = self.dir.join("runs");
            cfg.output.name = job.id.clone();
            // Experiment runs are retrained, never resumed: their checkpoints need only the
            // weights (a third of the disk).
            cfg.checkpoint.save_optimizer = false;
            cfg.checkpoint.keep_last = 1;
            let text = cfg.to_toml();
            let config_path = self.dir.join("configs").join(format!("{}.toml", job.id));
            let run_dir = cfg.run_dir();
            let done = run_dir.join(RESULT_FILE).is_file()
                && std::fs::read_to_string(&config_path).is_ok_and(|old| old == text);
            if !done {
                if run_dir.exists() {
                    std::fs::remove_dir_all(&run_dir)
                        .with_context(|| format!("removing the stale run {}", run_dir.display()))?;
                }
                std::fs::write(&config_path, &text)
                    .with_context(|| format!("writing {}", config_path.display()))?;
                todo.push((job.id.clone(), config_path));
            }
            prepared.push(run_dir);
        }
        let reused = jobs.len() - todo.len();
        eprintln!(
            "{phase}: {} runs ({} to train, {reused} reused), {} at a time",
            jobs.len(),
            todo.len(),
            self.parallel.min(todo.len().max(1))
        );
        let next = AtomicUsize::new(0);
        let finished = AtomicUsize::new(0);
        let failure: Mutex<Option<ExperimentError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..self.parallel.min(todo.len()) {
                scope.spawn(|| loop {
                    if failure.lock().expect("no panics hold the lock").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((id, config)) = todo.get(i) else {
                        return;
                    };
                    let started = Instant::now();
                    match self.train(id, config) {
                        Ok(()) => {
                            let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                            eprintln!(
                                "  [{n}/{}] {id} ({:.1} s)",
                                todo.len(),
                                started.elapsed().as_secs_f64()
                            );
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .expect("no panics hold the lock")
                                .get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().expect("no panics hold the lock") {
            return Err(e);
        }
        Ok(prepared)
    }

    fn train(&self, id: &str, config: &Path) -> Result<()> {
        let log_path = self.dir.join("logs").join(format!("{id}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let status = Command::new(&self.exe)
            .arg("train")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "run `{id}` failed ({status}); config {}, log {}:\n{}",
                config.display(),
                log_path.display(),
                tail.join("\n")
            );
        }
        Ok(())
    }
}
