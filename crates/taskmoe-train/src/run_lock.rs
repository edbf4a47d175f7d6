//! An exclusive lock on a run folder, held for as long as a process writes into it.
//!
//! `train`, `train --resume` and `eval` (which writes its results into the run folder) take
//! [`RunLock::acquire`] before they look at the folder's checkpoints, so the check "does this
//! folder already hold a run?" and the writes that follow cannot interleave with another
//! process: a second writer is refused with the holder's pid and command. The lock is a
//! `flock(LOCK_EX | LOCK_NB)` on [`LOCK_FILE`]; the kernel releases it when the holder exits,
//! however it exits, so a crashed run never leaves a stale lock. The file itself stays (it
//! records the last holder); deleting it would let two processes lock two different files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{invalid, io_err, Result};

/// The lock file in a run folder.
pub const LOCK_FILE: &str = ".lock";

/// A held lock on a run folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Locks `run_dir` (created if needed) for `what` (a short description such as
    /// `taskmoe train`, recorded in the lock file). Fails without waiting, naming the holder's
    /// pid, when another process holds the lock.
    pub fn acquire(run_dir: &Path, what: &str) -> Result<RunLock> {
        std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
        let path = run_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on a file descriptor this function owns for the call's duration.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(invalid(
                    "run folder",
                    format!(
                        "{} is in use by another process ({}); wait for it to finish, or set \
                         output.name to use another folder",
                        run_dir.display(),
                        if holder.is_empty() {
                            "pid unknown".to_string()
                        } else {
                            holder.to_string()
                        }
                    ),
                ));
            }
            return Err(io_err(&path)(err));
        }
        let record = format!("pid {}: {what}\n", std::process::id());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(record.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(io_err(&path))?;
        Ok(RunLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
