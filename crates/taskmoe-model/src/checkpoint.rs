//! Model weights in safetensors, with the configuration as JSON beside them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::heads::HeadSpec;

/// Precision of exported weights. Loading converts back to the model's dtype (fp32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportDtype {
    /// 32-bit floats: exact.
    F32,
    /// bfloat16: fp32's range, 8 bits of mantissa; half the size.
    Bf16,
    /// IEEE half: 11 bits of mantissa, range up to 65504; half the size.
    F16,
}

impl ExportDtype {
    /// The tch kind of the dtype.
    pub fn kind(self) -> Kind {
        match self {
            ExportDtype::F32 => Kind::Float,
            ExportDtype::Bf16 => Kind::BFloat16,
            ExportDtype::F16 => Kind::Half,
        }
    }

    /// PyTorch's name of the dtype (`torch_dtype` in HF configs).
    pub fn torch_name(self) -> &'static str {
        match self {
            ExportDtype::F32 => "float32",
            ExportDtype::Bf16 => "bfloat16",
            ExportDtype::F16 => "float16",
        }
    }
}

/// What `config.json` beside `model.safetensors` holds: enough to rebuild the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// The architecture.
    pub model: ModelConfig,
    /// The task heads, in task-id order.
    pub heads: Vec<HeadSpec>,
}

/// Writes every parameter of `vs` to `path` (safetensors, names as in the `VarStore`, with the
/// `{"format": "pt"}` metadata PyTorch tools expect) in `dtype`. Written to a temporary file
/// in the same folder, synced, then renamed, so a crash never leaves a truncated file under the
/// final name.
pub fn save_weights(vs: &nn::VarStore, path: &Path, dtype: ExportDtype) -> Result<()> {
    let vars = vs.variables();
    let mut named: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                t.detach().to_kind(dtype.kind()).to_device(tch::Device::Cpu),
            )
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors(&named, path)
}

/// Writes named tensors (CPU, any dtype) to the safetensors file `path` with
/// `{"format": "pt"}` metadata, atomically (temporary file, sync, rename).
pub fn write_tensors(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    let tmp = temporary_path(path);
    Tensor::write_safetensors(named, &tmp)?;
    crate::safetensors_meta::set_metadata(&tmp, &[("format", "pt")])?;
    sync_and_rename(&tmp, path)
}

/// Loads `path` into the parameters of `vs`, converting dtypes. Every missing, extra or
/// mis-shaped tensor is reported in one error, and nothing is changed unless all fit.
pub fn load_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let loaded: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| io_or_torch(path, e))?
        .into_iter()
        .collect();
    let vars = vs.variables();
    let mut problems = Vec::new();
    for (name, var) in &vars {
        match loaded.get(name) {
            None => problems.push(format!("missing {name} {:?}", var.size())),
            Some(t) if t.size() != var.size() => problems.push(format!(
                "{name} has shape {:?}, the model expects {:?}",
                t.size(),
                var.size()
            )),
            Some(_) => {}
        }
    }
    for name in loaded.keys().filter(|n| !vars.contains_key(*n)) {
        problems.push(format!("unexpected {name}"));
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            problems,
        });
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            var.shallow_clone().copy_(&loaded[name]);
        }
    });
    Ok(())
}

/// Writes `card` as pretty JSON to `path`, atomically.
pub fn save_card(card: &ModelCard, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(card).expect("the card serializes");
    let tmp = temporary_path(path);
    std::fs::write(&tmp, text + "\n").map_err(|source| ModelError::Io {
        path: tmp.clone(),
        source,
    })?;
    sync_and_rename(&tmp, path)
}

/// Reads a [`ModelCard`] (unknown keys are errors).
pub fn load_card(path: &Path) -> Result<ModelCard> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

pub(crate) fn sync_and_rename(tmp: &Path, path: &Path) -> Result<()> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(tmp, path).map_err(io)
}

fn io_or_torch(path: &Path, e: tch::TchError) -> ModelError {
    if !path.exists() {
        ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        }
    } else {
        ModelError::Checkpoint {
            path: path.to_path_buf(),
            problems: vec![format!("not a readable safetensors file: {e}")],
        }
    }
}
