//! Atomic checkpoint directories with a completeness manifest and keep-last-N rotation.
//!
//! A run directory holds `checkpoint-{step}/` directories (DESIGN.md section 4). Each is made
//! in this order, so that a crash at any point leaves either the complete directory or nothing
//! under that name:
//!
//! 1. the caller's callback writes its files (`model.safetensors`, `optimizer.safetensors`,
//!    `trainer_state.json`, the config...) into `.tmp-checkpoint-{step}-{pid}/`;
//! 2. every file is read back, hashed (SHA-256) and fsynced;
//! 3. the manifest [`MANIFEST_FILE`] listing every file with its size and hash is written and
//!    fsynced last, then the directory itself is fsynced;
//! 4. the directory is renamed to `checkpoint-{step}` and the run directory is fsynced;
//! 5. only then are old checkpoints beyond the `keep_last` newest complete ones deleted.
//!
//! A checkpoint is *complete* when its manifest parses, names its own step (when the folder is
//! called `checkpoint-{step}`; a copy may have any name), and every listed file exists with
//! the recorded size (a cheap check that catches truncation and deletion).
//! A checkpoint is *usable* when it is complete and every file has its manifest's SHA-256
//! ([`Checkpoint::verify_hashes`]). [`latest_verified`] finds a run's newest usable checkpoint
//! and says which newer ones it skipped and why; [`resolve_checkpoint`] is the one policy every
//! reader of a checkpoint goes through. Temporary directories left by a crashed writer
//! (its pid no longer alive) are deleted when a [`CheckpointWriter`] is created; those of live
//! processes are left alone. One writer per run directory is assumed ([`crate::RunLock`]
//! enforces it). A writer can protect one step (the best checkpoint) from rotation.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{invalid, io_err, Result, TrainError};

/// The manifest file that marks a checkpoint directory complete; written last.
pub const MANIFEST_FILE: &str = "COMPLETE.json";

const CHECKPOINT_PREFIX: &str = "checkpoint-";
const TEMP_PREFIX: &str = ".tmp-checkpoint-";

/// One file of a checkpoint as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// The file name inside the checkpoint directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// The content of [`MANIFEST_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The step of the checkpoint (equal to the `{step}` of its directory name).
    pub step: u64,
    /// Every file of the checkpoint except the manifest, sorted by name.
    pub files: Vec<ManifestEntry>,
}

/// A complete checkpoint directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The step it was written at.
    pub step: u64,
    /// The `checkpoint-{step}` directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Checkpoint {
    /// Opens `dir` and checks it is complete (module docs); otherwise
    /// [`TrainError::IncompleteCheckpoint`] says why.
    pub fn open(dir: impl AsRef<Path>) -> Result<Checkpoint> {
        let dir = dir.as_ref();
        let incomplete = |message: String| TrainError::IncompleteCheckpoint {
            path: dir.to_path_buf(),
            message,
        };
        let text = fs::read_to_string(dir.join(MANIFEST_FILE))
            .map_err(|e| incomplete(format!("{MANIFEST_FILE}: {e}")))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| incomplete(format!("{MANIFEST_FILE}: {e}")))?;
        // A folder named `checkpoint-{n}` must hold step n; a copy under another name (a
        // checkpoint taken elsewhere) is read as it is.
        if parse_step(dir, CHECKPOINT_PREFIX).is_some_and(|n| n != manifest.step) {
            return Err(incomplete(format!(
                "the manifest names step {}, the directory name does not",
                manifest.step
            )));
        }
        for entry in &manifest.files {
            let size = fs::metadata(dir.join(&entry.name))
                .map_err(|e| incomplete(format!("{}: {e}", entry.name)))?
                .len();
            if size != entry.size {
                return Err(incomplete(format!(
                    "{} has {size} bytes, the manifest records {}",
                    entry.name, entry.size
                )));
            }
        }
        Ok(Checkpoint {
            step: manifest.step,
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The path of file `name` in the checkpoint.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Loads the checkpoint's model weights into `vs` (built for the same model); an error
    /// names the file.
    pub fn load_weights(&self, vs: &tch::nn::VarStore) -> Result<()> {
        let file = self.file(crate::run_folder::MODEL_FILE);
        Ok(taskmoe_model::load_weights(vs, &file)?)
    }

    /// Whether the checkpoint lists a file called `name`.
    pub fn has_file(&self, name: &str) -> bool {
        self.manifest.files.iter().any(|f| f.name == name)
    }

    /// Re-reads every file of the manifest: `(name, None)` when its size and SHA-256 match,
    /// `(name, Some(problem))` otherwise; then `(name, Some("not in the manifest"))` for every
    /// other file of the folder (such as results written there by hand).
    pub fn check_files(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for entry in &self.manifest.files {
            let problem = match hash_file(&self.dir.join(&entry.name)) {
                Err(e) => Some(e.to_string()),
                Ok((size, _)) if size != entry.size => {
                    Some(format!("{size} bytes, the manifest records {}", entry.size))
                }
                Ok((_, sha)) if sha != entry.sha256 => {
                    Some("SHA-256 differs from the manifest".to_string())
                }
                Ok(_) => None,
            };
            out.push((entry.name.clone(), problem));
        }
        if let Ok(items) = fs::read_dir(&self.dir) {
            let mut extra: Vec<String> = items
                .filter_map(|i| i.ok())
                .map(|i| i.file_name().to_string_lossy().into_owned())
                .filter(|n| n != MANIFEST_FILE && !self.has_file(n))
                .collect();
            extra.sort();
            out.extend(
                extra
                    .into_iter()
                    .map(|n| (n, Some("not in the manifest".to_string()))),
            );
        }
        out
    }

    /// Re-reads every file and compares its SHA-256 with the manifest.
    pub fn verify_hashes(&self) -> Result<()> {
        for entry in &self.manifest.files {
            let (_, sha) = hash_file(&self.dir.join(&entry.name))?;
            if sha != entry.sha256 {
                return Err(TrainError::IncompleteCheckpoint {
                    path: self.dir.clone(),
                    message: format!("{}: SHA-256 differs from the manifest", entry.name),
                });
            }
        }
        Ok(())
    }
}

/// Where the caller's callback writes the files of a checkpoint being made.
#[derive(Debug)]
pub struct CheckpointFiles {
    dir: PathBuf,
}

impl CheckpointFiles {
    /// The temporary directory being filled.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path for file `name` (a plain file name, not [`MANIFEST_FILE`]), for writers that
    /// take a path such as `Tensor::write_safetensors` or [`taskmoe_optim::AdamW::save`].
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        let plain = Path::new(name).file_name().and_then(|n| n.to_str()) == Some(name);
        if !plain || name.starts_with('.') || name == MANIFEST_FILE {
            return Err(invalid(
                "checkpoint",
                format!("`{name}` is not a valid checkpoint file name"),
            ));
        }
        Ok(self.dir.join(name))
    }

    /// Writes `bytes` to file `name`.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name)?;
        fs::write(&path, bytes).map_err(io_err(path))
    }

    /// Writes `value` as pretty-printed JSON to file `name`.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.path(name)?;
        let text = serde_json::to_string_pretty(value).map_err(|source| TrainError::Json {
            path: path.clone(),
            source,
        })?;
        fs::write(&path, text).map_err(io_err(path))
    }
}

/// Writes checkpoints into a run directory atomically, keeping the newest `keep_last`.
#[derive(Debug, Clone)]
pub struct CheckpointWriter {
    run_dir: PathBuf,
    keep_last: Option<usize>,
    protected: Option<u64>,
}

impl CheckpointWriter {
    /// A writer into `run_dir` (created if needed) that keeps the `keep_last` newest complete
    /// checkpoints (`None` keeps all). Deletes temporary directories a crashed writer left.
    pub fn new(run_dir: impl Into<PathBuf>, keep_last: Option<usize>) -> Result<Self> {
        let run_dir = run_dir.into();
        if keep_last == Some(0) {
            return Err(invalid("checkpoint writer", "keep_last must be at least 1"));
        }
        fs::create_dir_all(&run_dir).map_err(io_err(&run_dir))?;
        clean_stale_temp_dirs(&run_dir)?;
        Ok(CheckpointWriter {
            run_dir,
            keep_last,
            protected: None,
        })
    }

    /// Keeps `checkpoint-{step}` through rotation too (the best checkpoint), beside the
    /// `keep_last` newest; `None` protects nothing.
    pub fn protect(&mut self, step: Option<u64>) {
        self.protected = step;
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Makes `checkpoint-{step}` from the files `write_files` puts into the temporary
    /// directory, following the order of the module docs, then rotates old checkpoints.
    ///
    /// If the callback fails, the temporary directory is deleted and the error returned as
    /// [`TrainError::WriteCallback`]; existing checkpoints are untouched. An existing
    /// `checkpoint-{step}` is replaced (during the swap, the newest complete checkpoint is the
    /// previous one). The callback may only create plain files.
    pub fn write<F, E>(&self, step: u64, write_files: F) -> Result<Checkpoint>
    where
        F: FnOnce(&CheckpointFiles) -> std::result::Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let pid = std::process::id();
        let tmp = self.run_dir.join(format!("{TEMP_PREFIX}{step}-{pid}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let made = self.fill(step, &tmp, write_files);
        let manifest = match made {
            Ok(manifest) => manifest,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let dir = checkpoint_dir(&self.run_dir, step);
        if dir.exists() {
            let old = self
                .run_dir
                .join(format!("{TEMP_PREFIX}{step}-{pid}-replaced"));
            fs::rename(&dir, &old).map_err(io_err(&dir))?;
            fs::rename(&tmp, &dir).map_err(io_err(&tmp))?;
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        } else {
            fs::rename(&tmp, &dir).map_err(io_err(&tmp))?;
        }
        sync_dir(&self.run_dir)?;
        self.rotate(step)?;
        Ok(Checkpoint {
            step,
            dir,
            manifest,
        })
    }

    /// Steps 1 to 3: callback, hash and fsync every file, manifest, fsync the directory.
    fn fill<F, E>(&self, step: u64, tmp: &Path, write_files: F) -> Result<Manifest>
    where
        F: FnOnce(&CheckpointFiles) -> std::result::Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let files = CheckpointFiles {
            dir: tmp.to_path_buf(),
        };
        write_files(&files).map_err(|e| TrainError::WriteCallback {
            path: tmp.to_path_buf(),
            source: e.into(),
        })?;
        let mut entries = Vec::new();
        for item in fs::read_dir(tmp).map_err(io_err(tmp))? {
            let item = item.map_err(io_err(tmp))?;
            let path = item.path();
            let kind = item.file_type().map_err(io_err(&path))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if !kind.is_file() || name == MANIFEST_FILE {
                return Err(invalid(
                    "checkpoint",
                    format!("{}: only plain data files may be written", path.display()),
                ));
            }
            let (size, sha256) = hash_file(&path)?;
            entries.push(ManifestEntry { name, size, sha256 });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            step,
            files: entries,
        };
        let path = tmp.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(&manifest).map_err(|source| TrainError::Json {
            path: path.clone(),
            source,
        })?;
        let mut file = File::create(&path).map_err(io_err(&path))?;
        file.write_all(text.as_bytes()).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        sync_dir(tmp)?;
        Ok(manifest)
    }

    /// Deletes every checkpoint directory older than `newest` except the `keep_last` newest
    /// complete ones (which include `newest`). Directories of later steps are left alone.
    fn rotate(&self, newest: u64) -> Result<()> {
        let Some(keep) = self.keep_last else {
            return Ok(());
        };
        let mut kept = 0;
        for (step, dir) in list_checkpoints(&self.run_dir)?.into_iter().rev() {
            if step > newest {
                continue;
            }
            if kept < keep && Checkpoint::open(&dir).is_ok() {
                kept += 1;
                continue;
            }
            // The protected (best) checkpoint survives beyond the newest `keep_last`; among
            // them it counts as one of them.
            if Some(step) == self.protected {
                continue;
            }
            fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(())
    }
}

/// The `checkpoint-{step}` directory of `run_dir`.
pub fn checkpoint_dir(run_dir: impl AsRef<Path>, step: u64) -> PathBuf {
    run_dir.as_ref().join(format!("{CHECKPOINT_PREFIX}{step}"))
}

/// Every `checkpoint-{step}` directory in `run_dir`, complete or not, by increasing step; empty
/// if `run_dir` does not exist.
pub fn list_checkpoints(run_dir: impl AsRef<Path>) -> Result<Vec<(u64, PathBuf)>> {
    let run_dir = run_dir.as_ref();
    if !run_dir.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for item in fs::read_dir(run_dir).map_err(io_err(run_dir))? {
        let path = item.map_err(io_err(run_dir))?.path();
        if let (Some(step), true) = (parse_step(&path, CHECKPOINT_PREFIX), path.is_dir()) {
            found.push((step, path));
        }
    }
    found.sort();
    Ok(found)
}

/// What [`latest_verified`] found.
#[derive(Debug)]
pub struct Latest {
    /// The newest checkpoint whose files all match their manifest (sizes and SHA-256).
    pub checkpoint: Option<Checkpoint>,
    /// Newer checkpoints passed over, each with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Latest {
    /// One line per skipped checkpoint, as `eval` and `--resume` print them.
    pub fn skipped_lines(&self) -> Vec<String> {
        let using = self
            .checkpoint
            .as_ref()
            .map_or("none left".to_string(), |c| {
                format!("using {}", c.dir.display())
            });
        self.skipped
            .iter()
            .map(|(dir, why)| format!("skipped {}: {why} ({using})", dir.display()))
            .collect()
    }
}

/// The newest checkpoint of `run_dir` that is complete and whose every file has its
/// manifest's SHA-256, with the newer ones that were skipped and why.
pub fn latest_verified(run_dir: impl AsRef<Path>) -> Result<Latest> {
    let mut skipped = Vec::new();
    for (_, dir) in list_checkpoints(run_dir)?.into_iter().rev() {
        match Checkpoint::open(&dir).and_then(|c| c.verify_hashes().map(|_| c)) {
            Ok(c) => {
                return Ok(Latest {
                    checkpoint: Some(c),
                    skipped,
                })
            }
            Err(TrainError::IncompleteCheckpoint { message, .. }) => skipped.push((dir, message)),
            Err(e) => skipped.push((dir, e.to_string())),
        }
    }
    Ok(Latest {
        checkpoint: None,
        skipped,
    })
}

impl Latest {
    /// The checkpoint found, or an error naming `run_dir` and every checkpoint rejected with
    /// its reason.
    pub fn require(self, run_dir: &Path) -> Result<Checkpoint> {
        if let Some(ckpt) = self.checkpoint {
            return Ok(ckpt);
        }
        let found = match self.skipped.is_empty() {
            true => "it holds no checkpoint-* folder".to_string(),
            false => self
                .skipped
                .iter()
                .map(|(dir, why)| format!("\n  {}: {why}", dir.display()))
                .collect::<String>(),
        };
        Err(invalid(
            "checkpoint",
            format!(
                "{} holds no checkpoint whose files match their manifest: {found}",
                run_dir.display()
            ),
        ))
    }
}

/// The one policy for "the checkpoint `path` means", used by eval, predict, export,
/// `init.checkpoint` and the experiments (a resume uses [`latest_verified`] directly, to
/// say what it found): a checkpoint folder (it holds a [`MANIFEST_FILE`]) is opened and every
/// file checked against its manifest; a run folder gives its newest checkpoint that passes the
/// same check, and the newer ones passed over are named on stderr with the reason.
pub fn resolve_checkpoint(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    if path.join(MANIFEST_FILE).is_file() {
        let ckpt = Checkpoint::open(path)?;
        ckpt.verify_hashes()?;
        return Ok(ckpt);
    }
    let latest = latest_verified(path)?;
    for line in latest.skipped_lines() {
        eprintln!("taskmoe: {line}");
    }
    latest.require(path)
}

/// Deletes the temporary directories (`.tmp-checkpoint-{step}-{pid}*`) that this process or a
/// process no longer alive left in `run_dir`; those of other live processes stay. Returns how
/// many were deleted.
pub(crate) fn clean_stale_temp_dirs(run_dir: impl AsRef<Path>) -> Result<usize> {
    let run_dir = run_dir.as_ref();
    let mut removed = 0;
    for item in fs::read_dir(run_dir).map_err(io_err(run_dir))? {
        let item = item.map_err(io_err(run_dir))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        // `{step}-{pid}` or `{step}-{pid}-replaced`; a name without a pid is stale.
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| p != std::process::id() && process_alive(p)) {
            continue;
        }
        let path = item.path();
        if path.is_dir() {
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
        } else {
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Whether a process with this pid exists (signal 0 probes without sending anything; a
/// process of another user answers EPERM and counts as alive).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for the process.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The `{step}` of a directory called `{prefix}{step}`.
fn parse_step(path: &Path, prefix: &str) -> Option<u64> {
    let digits = path.file_name()?.to_str()?.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads a file, fsyncs it, and returns its size and SHA-256 (lower-case hex).
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    file.sync_all().map_err(io_err(path))?;
    let sha = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sha))
}

/// fsyncs a directory, so that the entries created or renamed in it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}
