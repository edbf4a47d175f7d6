//! The frozen bottom of the encoder (`model.frozen_layers`), computed once per dataset: at the
//! start of a run the trainer attaches a [`FrozenStates`] memo to the model, reads the file
//! earlier runs on the same frozen weights left (`runtime.frozen_state_cache`), computes what
//! it lacks for every split of the training tasks, and writes the file back when it grew. From
//! then on each step and evaluation starts at the first trained block.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{nn, Device, Kind};

use taskmoe_data::{Batch, TaskData};
use taskmoe_model::{frozen_prefix_key, FrozenStates, MultiTaskModel};

use crate::error::{invalid, Result};
use crate::objective::model_input;
use crate::run_config::RunConfig;
use crate::run_data::RunData;

/// Examples per forward pass while filling the memo (length-bucketed): a constant, so the
/// stored states never depend on the run's batch sizes.
const FILL_BATCH: usize = 64;

/// What attaching the frozen states did: the run prints it, and saves the file again at the
/// end of training when evaluations added examples.
#[derive(Clone, Debug)]
pub struct FrozenStatesReport {
    /// Frozen blocks (`model.frozen_layers`).
    pub layers: usize,
    /// The key of the frozen weights ([`frozen_prefix_key`]).
    pub key: String,
    /// The memo's file (`None` with `runtime.frozen_state_cache = false`).
    pub file: Option<PathBuf>,
    /// Examples read from the file.
    pub read: usize,
    /// Examples computed at the start.
    pub computed: usize,
    /// Seconds spent reading and computing.
    pub seconds: f64,
    /// Why the file could not be read, when it could not (it is then rewritten).
    pub unreadable: Option<String>,
    /// Examples the file held after the last write (or read).
    pub saved: usize,
}

impl std::fmt::Display for FrozenStatesReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frozen blocks 0..{}: states of {} examples read, {} computed ({:.1} s)",
            self.layers, self.read, self.computed, self.seconds
        )?;
        match &self.file {
            Some(p) => write!(f, "; cache {}", p.display())?,
            None => write!(
                f,
                "; kept in memory only (runtime.frozen_state_cache = false)"
            )?,
        }
        if let Some(why) = &self.unreadable {
            write!(f, "; the old cache was unreadable and was rebuilt: {why}")?;
        }
        Ok(())
    }
}

/// taskmoe's cache folder: `runtime.cache_dir`, else `$TASKMOE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/taskmoe`, else `$HOME/.cache/taskmoe`.
pub fn cache_dir(cfg: &RunConfig) -> Result<PathBuf> {
    if let Some(dir) = &cfg.runtime.cache_dir {
        return Ok(dir.clone());
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("TASKMOE_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("taskmoe"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("taskmoe")),
        None => Err(invalid(
            "config",
            "key `runtime.cache_dir`: not set, and neither is TASKMOE_CACHE_DIR, \
             XDG_CACHE_HOME or HOME to place the frozen-state cache",
        )),
    }
}

/// The file of the frozen weights with key `key` under `dir`.
pub fn frozen_states_file(dir: &Path, key: &str) -> PathBuf {
    dir.join("frozen-states").join(format!("{key}.safetensors"))
}

/// Attaches the memo of the frozen blocks' states to `model` (whose weights are final: after
/// initialisation or restore), filled for every split of the training tasks; `None` without
/// `model.frozen_layers`. `write` lets this process write the file (rank 0 of a job).
pub(crate) fn attach_frozen_states(
    model: &mut MultiTaskModel,
    vs: &nn::VarStore,
    cfg: &RunConfig,
    data: &RunData,
    device: Device,
    write: bool,
) -> Result<Option<FrozenStatesReport>> {
    let Some(key) = frozen_prefix_key(vs, &cfg.model) else {
        return Ok(None);
    };
    let start = Instant::now();
    let memo = FrozenStates::new(&key, cfg.model.d_model);
    let file = match cfg.runtime.frozen_state_cache {
        true => Some(frozen_states_file(&cache_dir(cfg)?, &key)),
        false => None,
    };
    let mut unreadable = None;
    let mut read = 0;
    if let Some(path) = file.as_ref().filter(|p| p.exists()) {
        // A cache never stops a run: an unreadable file is recomputed and replaced.
        match memo.load(path, Kind::Float, device) {
            Ok(n) => read = n,
            Err(e) => unreadable = Some(e.to_string()),
        }
    }
    model.attach_frozen_states(memo)?;
    let mut computed = 0;
    for &t in &data.train_tasks {
        for split in [&data.train[t], &data.validation[t], &data.test[t]] {
            for batch in fill_batches(split, data.pad_id) {
                let tensors = batch?.to_tensors(device)?;
                computed += model.fill_frozen_states(&[model_input(&tensors)])?;
            }
        }
    }
    let mut report = FrozenStatesReport {
        layers: cfg.model.frozen_layers,
        key,
        file,
        read,
        computed,
        seconds: start.elapsed().as_secs_f64(),
        unreadable,
        saved: read,
    };
    if write {
        save_if_grown(model, &mut report)?;
    }
    Ok(Some(report))
}

/// The split in batches of [`FILL_BATCH`] examples of similar length (sorted by length, stably),
/// each padded to its longest example.
fn fill_batches(
    split: &TaskData,
    pad_id: i64,
) -> impl Iterator<Item = taskmoe_data::Result<Batch>> + '_ {
    let mut order: Vec<usize> = (0..split.examples.len()).collect();
    order.sort_by_key(|&i| split.examples[i].input_ids.len());
    let chunks: Vec<Vec<usize>> = order.chunks(FILL_BATCH).map(<[usize]>::to_vec).collect();
    chunks.into_iter().map(move |chunk| {
        let longest = chunk
            .iter()
            .map(|&i| split.examples[i].input_ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        Batch::from_examples(
            chunk.iter().map(|&i| (split.task_id, &split.examples[i])),
            longest,
            pad_id,
        )
    })
}

/// Attaches to a loaded model with frozen blocks the memo its training left on disk (the
/// cache file of its frozen weights, when `runtime.frozen_state_cache` keeps one), computing
/// nothing up front: a forward pass computes and keeps what the file lacks. So an evaluation
/// of a trained run (`taskmoe eval`, the experiments' tests of their runs) reads the states
/// its training computed. Returns how many examples were read; `None` without frozen blocks.
/// An unreadable or missing file leaves the memo empty.
pub(crate) fn read_frozen_states(
    model: &mut MultiTaskModel,
    vs: &nn::VarStore,
    cfg: &RunConfig,
    device: Device,
) -> Result<Option<usize>> {
    let Some(key) = frozen_prefix_key(vs, &cfg.model) else {
        return Ok(None);
    };
    let memo = FrozenStates::new(&key, cfg.model.d_model);
    let mut read = 0;
    if cfg.runtime.frozen_state_cache {
        let path = frozen_states_file(&cache_dir(cfg)?, &key);
        if path.exists() {
            read = memo.load(&path, Kind::Float, device).unwrap_or(0);
        }
    }
    model.attach_frozen_states(memo)?;
    Ok(Some(read))
}

/// Writes the memo to its file when it holds examples the file does not.
pub(crate) fn save_if_grown(model: &MultiTaskModel, report: &mut FrozenStatesReport) -> Result<()> {
    let (Some(path), Some(memo)) = (&report.file, model.frozen_states()) else {
        return Ok(());
    };
    let held = memo.len();
    if held > report.saved || report.unreadable.is_some() {
        memo.save(path)
            .map_err(|e| invalid("config", format!("writing the frozen-state cache: {e}")))?;
        report.saved = held;
        report.unreadable = None;
    }
    Ok(())
}
