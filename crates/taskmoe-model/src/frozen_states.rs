//! The frozen bottom of the encoder, computed once per text: a memo of the hidden states that
//! leave block `frozen_layers - 1` (`model.frozen_layers`), keyed by what the frozen blocks
//! see of an example (its token ids and segment ids), stored on disk under a key of the frozen
//! weights themselves.
//!
//! The frozen blocks run without dropout and never change, so their output for a text is a
//! constant: a trainer computes it once per dataset ([`MultiTaskModel::fill_frozen_states`])
//! and every later forward pass (training steps, evaluations, every seed that loads the file)
//! starts at the first trained block. A memo answers only for the weights it was made with:
//! its file is named by [`frozen_prefix_key`], a hash of the frozen weights and of the
//! configuration they run under, so changed weights, another layer count or another model
//! never read it.
//!
//! [`MultiTaskModel::fill_frozen_states`]: crate::MultiTaskModel::fill_frozen_states

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use tch::{nn, Kind, Tensor};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// Version of the memo's key and file layout; part of every key, so a change to how states
/// are computed or stored never reads an older file.
const FORMAT: &str = "taskmoe-frozen-states-v1";

/// The hidden states of the frozen blocks for each example seen so far, by example key.
#[derive(Debug)]
pub struct FrozenStates {
    prefix_key: String,
    d_model: i64,
    rows: Mutex<HashMap<u64, Tensor>>,
}

/// The key of an example: its real tokens' ids and segment ids, in order.
pub fn example_key(ids: &[i64], type_ids: &[i64]) -> u64 {
    let mut h = Sha256::new();
    for (&i, &t) in ids.iter().zip(type_ids) {
        h.update(i.to_le_bytes());
        h.update(t.to_le_bytes());
    }
    let digest = h.finalize();
    u64::from_le_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

/// The key of the frozen bottom of `cfg`'s encoder with the weights in `vs`: a SHA-256 over
/// the memo format, the configuration the frozen blocks run under (sizes, normalisation,
/// `frozen_layers`) and every frozen parameter's name, shape and fp32 values. `None` without
/// frozen blocks.
pub fn frozen_prefix_key(vs: &nn::VarStore, cfg: &ModelConfig) -> Option<String> {
    if cfg.frozen_layers == 0 {
        return None;
    }
    let mut h = Sha256::new();
    h.update(FORMAT);
    let shape = format!(
        "vocab {} positions {} types {} d {} heads {} d_ff {} eps {:e} norm {:?} frozen {}",
        cfg.vocab_size,
        cfg.max_position,
        cfg.type_vocab_size,
        cfg.d_model,
        cfg.num_heads,
        cfg.d_ff,
        cfg.layer_norm_eps,
        cfg.norm,
        cfg.frozen_layers
    );
    h.update(shape.as_bytes());
    let mut params: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(name, _)| cfg.is_frozen_param(name))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in params {
        h.update(format!("{name} {:?}", t.size()).as_bytes());
        let values: Vec<f32> = Vec::try_from(
            t.detach()
                .to_kind(Kind::Float)
                .to_device(tch::Device::Cpu)
                .reshape([-1]),
        )
        .expect("a float tensor converts to Vec<f32>");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        h.update(&bytes);
    }
    let digest = h.finalize();
    Some(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

impl FrozenStates {
    /// An empty memo for the frozen bottom whose key is `prefix_key`, of hidden size `d_model`.
    pub fn new(prefix_key: &str, d_model: usize) -> Self {
        FrozenStates {
            prefix_key: prefix_key.to_string(),
            d_model: d_model as i64,
            rows: Mutex::new(HashMap::new()),
        }
    }

    /// The key of the frozen weights this memo answers for ([`frozen_prefix_key`]).
    pub fn prefix_key(&self) -> &str {
        &self.prefix_key
    }

    /// Examples held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the memo holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the memo holds the example with key `key` ([`example_key`]).
    pub fn contains(&self, key: u64) -> bool {
        self.lock().contains_key(&key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Tensor>> {
        // A panic elsewhere while holding the lock leaves a map that is still whole.
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the states `[len, d]` of the example with key `key` (a copy, detached).
    pub fn insert(&self, key: u64, states: &Tensor) {
        let row = tch::no_grad(|| states.detach().copy());
        self.lock().insert(key, row);
    }

    /// The states `[B, L, d]` of a batch whose example `i` has key `keys[i]` and `lengths[i]`
    /// real tokens at the front (padding positions are zero), or `None` when one of them is
    /// not held.
    pub fn batch(&self, keys: &[u64], lengths: &[i64], l: i64) -> Option<Tensor> {
        let rows = self.lock();
        let found: Option<Vec<&Tensor>> = keys.iter().map(|k| rows.get(k)).collect();
        let found = found?;
        let first = found.first()?;
        let (kind, device) = (first.kind(), first.device());
        let out = Tensor::zeros([keys.len() as i64, l, self.d_model], (kind, device));
        tch::no_grad(|| {
            for (i, (row, &n)) in found.iter().zip(lengths).enumerate() {
                out.get(i as i64).narrow(0, 0, n).copy_(row);
            }
        });
        Some(out)
    }

    /// Writes every held example to `path` (safetensors: `keys` `[N]`, `lengths` `[N]`,
    /// `states` `[sum of lengths, d]` in fp32), atomically: a temporary file beside it, synced,
    /// then renamed over it, so a reader sees the old file or the new one, never a part.
    pub fn save(&self, path: &Path) -> Result<()> {
        let rows = self.lock();
        let mut keys: Vec<u64> = rows.keys().copied().collect();
        keys.sort_unstable();
        let lengths: Vec<i64> = keys.iter().map(|k| rows[k].size()[0]).collect();
        let states = match keys.is_empty() {
            true => Tensor::zeros([0, self.d_model], (Kind::Float, tch::Device::Cpu)),
            false => Tensor::cat(
                &keys
                    .iter()
                    .map(|k| rows[k].to_kind(Kind::Float).to_device(tch::Device::Cpu))
                    .collect::<Vec<_>>(),
                0,
            ),
        };
        drop(rows);
        let as_i64: Vec<i64> = keys.iter().map(|&k| k as i64).collect();
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = crate::checkpoint::temporary_path(path);
        Tensor::write_safetensors(
            &[
                ("keys", Tensor::from_slice(&as_i64)),
                ("lengths", Tensor::from_slice(&lengths)),
                ("states", states),
            ],
            &tmp,
        )?;
        crate::checkpoint::sync_and_rename(&tmp, path)
    }

    /// Adds the examples stored at `path` by [`FrozenStates::save`], moved to `device` in
    /// `kind`; returns how many it read. A file that does not fit (other hidden size, lengths
    /// that do not add up) is an error naming it; the memo is then unchanged.
    pub fn load(&self, path: &Path, kind: Kind, device: tch::Device) -> Result<usize> {
        let tensors = Tensor::read_safetensors(path)
            .map_err(|e: tch::TchError| bad_file(path, e.to_string()))?;
        let get = |name: &str| {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| bad_file(path, format!("no tensor `{name}`")))
        };
        let (keys, lengths, states) = (get("keys")?, get("lengths")?, get("states")?);
        let keys: Vec<i64> =
            Vec::try_from(&keys).map_err(|e: tch::TchError| bad_file(path, e.to_string()))?;
        let lengths: Vec<i64> =
            Vec::try_from(&lengths).map_err(|e: tch::TchError| bad_file(path, e.to_string()))?;
        let size = states.size();
        let total: i64 = lengths.iter().sum();
        if keys.len() != lengths.len()
            || size.len() != 2
            || size[0] != total
            || size[1] != self.d_model
            || lengths.iter().any(|&n| n < 1)
        {
            return Err(bad_file(
                path,
                format!(
                    "{} keys, {} lengths summing to {total}, states {size:?}: expected one \
                     length per key, at least 1 each, and states [{total}, {}]",
                    keys.len(),
                    lengths.len(),
                    self.d_model
                ),
            ));
        }
        let states = states.to_kind(kind).to_device(device);
        let rows = states.split_with_sizes(&lengths, 0);
        let mut held = self.lock();
        for (k, row) in keys.iter().zip(rows) {
            held.insert(*k as u64, row);
        }
        Ok(keys.len())
    }
}

fn bad_file(path: &Path, why: String) -> ModelError {
    ModelError::Input(format!("frozen-state cache {}: {why}", path.display()))
}
