//! Running the arms of an experiment: each training run is a `taskmoe train --config FILE`
//! process (so every run folder is an ordinary, reproducible run), several at a time, with
//! finished runs reused when their configuration has not changed and interrupted ones resumed
//! from their newest checkpoint, so an experiment killed at any point continues where it
//! stopped.

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
            // An interrupted run resumes exactly from its newest checkpoint; a finished run
            // keeps only its weights (`final_optimizer = false`: a third of the disk).
            cfg.checkpoint.save_optimizer = true;
            cfg.checkpoint.final_optimizer = false;
            cfg.checkpoint.keep_last = 1;
            let text = cfg.to_toml();
            let config_path = self.dir.join("configs").join(format!("{}.toml", job.id));
            let run_dir = cfg.run_dir();
            let same = same_config(&config_path, &text);
            let done = same && run_dir.join(RESULT_FILE).is_file();
            if !done {
                let resume = same && has_checkpoint(&run_dir);
                if !resume && run_dir.exists() {
                    std::fs::remove_dir_all(&run_dir)
                        .with_context(|| format!("removing the stale run {}", run_dir.display()))?;
                }
                std::fs::write(&config_path, &text)
                    .with_context(|| format!("writing {}", config_path.display()))?;
                todo.push(Todo {
                    id: job.id.clone(),
                    config: config_path,
                    resume,
                });
            }
            prepared.push(run_dir);
        }
        let reused = jobs.len() - todo.len();
        let resumed = todo.iter().filter(|t| t.resume).count();
        eprintln!(
            "{phase}: {} runs ({} to train, {resumed} of them resumed, {reused} reused), {} at \
             a time",
            jobs.len(),
            todo.len(),
            self.parallel.min(todo.len().max(1))
        );
        let phase_started = Instant::now();
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
                    let Some(job) = todo.get(i) else {
                        return;
                    };
                    let started = Instant::now();
                    match self.train_or_resume(job) {
                        Ok(()) => {
                            let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
                            let eta =
                                eta_secs(phase_started.elapsed().as_secs_f64(), n, todo.len());
                            eprintln!(
                                "  [{n}/{}] {}{} ({:.1} s); {phase} done in about {}",
                                todo.len(),
                                job.id,
                                if job.resume { ", resumed" } else { "" },
                                started.elapsed().as_secs_f64(),
                                clock(eta)
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

    /// Resumes an interrupted run from its newest checkpoint; where that fails (a checkpoint
    /// the trainer refuses), says so and trains the run again from the start.
    fn train_or_resume(&self, job: &Todo) -> Result<()> {
        if !job.resume {
            return self.train(&job.id, &job.config, false);
        }
        match self.train(&job.id, &job.config, true) {
            Ok(()) => Ok(()),
            Err(e) => {
                eprintln!(
                    "  {}: resuming failed, training it again from the start: {e}",
                    job.id
                );
                let run_dir = self.run_dir(&job.id);
                std::fs::remove_dir_all(&run_dir)
                    .with_context(|| format!("removing {}", run_dir.display()))?;
                self.train(&job.id, &job.config, false)
            }
        }
    }

    fn train(&self, id: &str, config: &Path, resume: bool) -> Result<()> {
        let log_path = self.dir.join("logs").join(format!("{id}.log"));
        // A resumed run's log goes on after the interrupted one's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resume)
            .truncate(!resume)
            .open(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let status = Command::new(&self.exe)
            .arg("train")
            .arg("--config")
            .arg(config)
            .args(resume.then_some("--resume"))
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

/// A run to train: its id, its configuration file, and whether it resumes.
struct Todo {
    id: String,
    config: PathBuf,
    resume: bool,
}

/// Whether the run configuration saved at `path` resolves to `text` (a [`RunConfig::to_toml`]):
/// read back with today's defaults, so a key added since (whose default keeps what runs
/// computed) does not make finished runs look changed. `false` when it is missing or no longer
/// loads.
fn same_config(path: &Path, text: &str) -> bool {
    match std::fs::read_to_string(path) {
        Ok(old) if old == text => true,
        Ok(_) => RunConfig::load(Some(path), &[]).is_ok_and(|cfg| cfg.to_toml() == text),
        Err(_) => false,
    }
}

/// Whether a run folder holds a checkpoint to resume from (a `checkpoint-*` folder with its
/// manifest; the trainer still verifies it).
fn has_checkpoint(run_dir: &Path) -> bool {
    std::fs::read_dir(run_dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("checkpoint-")
                && e.path().join(taskmoe_train::MANIFEST_FILE).is_file()
        })
    })
}

/// Seconds left in a phase of `total` runs after `done` of them took `elapsed` seconds of
/// wall time together (the runs in parallel included): the mean rate so far, applied to the
/// rest.
pub fn eta_secs(elapsed: f64, done: usize, total: usize) -> f64 {
    match done {
        0 => f64::NAN,
        _ => elapsed / done as f64 * total.saturating_sub(done) as f64,
    }
}

/// `h:mm:ss` (or `m:ss`) of a number of seconds; `?` when unknown.
pub fn clock(secs: f64) -> String {
    if !secs.is_finite() {
        return "?".into();
    }
    let s = secs.round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_config_missing_a_key_added_since_is_the_same_run() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
        let text = RunConfig::load(Some(&tiny), &[]).unwrap().to_toml();
        let path = dir.path().join("job.toml");
        // Written before `init.routing_from` existed: the same run.
        assert!(text.contains("[init.routing_from]\n"), "{text}");
        std::fs::write(&path, text.replace("[init.routing_from]\n", "")).unwrap();
        assert!(same_config(&path, &text));
        // A value that differs is another run; a file that no longer loads too.
        let steps = RunConfig::load(Some(&tiny), &["train.steps=7".into()]).unwrap();
        assert!(!same_config(&path, &steps.to_toml()));
        std::fs::write(&path, "[train]\nstepz = 3\n").unwrap();
        assert!(!same_config(&path, &text));
        assert!(!same_config(&dir.path().join("missing.toml"), &text));
    }

    #[test]
    fn the_eta_applies_the_rate_so_far_to_the_rest() {
        assert_eq!(eta_secs(60.0, 2, 10), 240.0);
        assert_eq!(eta_secs(60.0, 10, 10), 0.0);
        assert!(eta_secs(5.0, 0, 3).is_nan());
        assert_eq!(clock(65.4), "1:05");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(f64::NAN), "?");
    }
}
