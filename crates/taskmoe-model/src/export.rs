//! Export to folders other tools load (`taskmoe export --format hf`).
//!
//! Two layouts, both `config.json` + `model.safetensors` (the encoder, `{"format": "pt"}`
//! metadata) + `heads.safetensors` (the task heads, `heads.{t}.{dense,out}.{weight,bias}`):
//!
//! - [`HfLayout::Bert`]: when the network is a BERT encoder (post-LN, no MoE block, no task
//!   token), `config.json` is a `BertConfig` (`model_type: "bert"`) and the encoder tensors
//!   are exactly `transformers.BertModel`'s (without its pooler), so
//!   `BertModel.from_pretrained(folder)` loads it and gives taskmoe's hidden states;
//! - [`HfLayout::Taskmoe`]: otherwise (`model_type: "taskmoe"`), the taskmoe names of
//!   `docs/checkpoints.md` (experts `[E, d, d_ff]` input-major, routers, task embeddings) with
//!   the taskmoe `ModelConfig` in `config.json`; `python/taskmoe_hf.py` loads it and reproduces
//!   taskmoe's logits. The folder also carries that modelling code ([`HF_MODELING_FILES`]:
//!   `python/taskmoe_hf.py`, `python/configuration_taskmoe.py` and `python/modeling_taskmoe.py`,
//!   embedded in the binary, written unchanged) and `config.json` names its classes in
//!   [`HF_AUTO_MAP`], so `transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)`
//!   loads it.
//!
//! With a task, the model is cut down to that task's sub-network: under `task-level` routing
//! every MoE block becomes one dense FFN, exactly: the task's `k` experts (and the shared ones)
//! concatenated along the hidden units, each expert's second layer scaled by its combine weight
//! (GELU is elementwise, so `sum_j w_j FFN_j(x)` is one FFN of width `k * d_ff`); narrower
//! blocks are padded with zero units to a common width, which adds nothing. An `added` task
//! embedding is a constant per token and is folded into the position embeddings. Such an
//! export of a post-LN model is a plain `BertModel` with one head.
//!
//! LoRA experts (`model.moe.expert_kind = "lora"`) are exported merged: expert `e` becomes the
//! FFN `W1 + s A1[e] B1[e]`, `W2 + s A2[e] B2[e]` (what it computes, up to rounding), stored as
//! FFN experts `experts.{w1,b1,w2,b2}`, and the exported `ModelConfig` says
//! `expert_kind = "ffn"`, so every reader of the layout runs it unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use tch::{nn, Kind, Tensor};

use crate::checkpoint::{write_tensors, ExportDtype};
use crate::config::{ModelConfig, NormPlacement, TaskEmbedding, Variant};
use crate::error::{ModelError, Result};
use crate::heads::HeadSpec;
use crate::model::MultiTaskModel;

/// The encoder file of an export.
pub const HF_MODEL_FILE: &str = "model.safetensors";
/// The heads file of an export.
pub const HF_HEADS_FILE: &str = "heads.safetensors";
/// The config file of an export.
pub const HF_CONFIG_FILE: &str = "config.json";
/// The model card of an export (written by `taskmoe export`, not by [`write_hf_export`]).
pub const HF_README_FILE: &str = "README.md";

/// The modelling code a taskmoe-layout export carries, `(file name, text)`: the repository's
/// `python/` files, embedded at build time and written unchanged, so the folder and the
/// repository run one implementation. `modeling_taskmoe.py` imports the other two.
pub const HF_MODELING_FILES: [(&str, &str); 3] = [
    (
        "taskmoe_hf.py",
        include_str!("../../../python/taskmoe_hf.py"),
    ),
    (
        "configuration_taskmoe.py",
        include_str!("../../../python/configuration_taskmoe.py"),
    ),
    (
        "modeling_taskmoe.py",
        include_str!("../../../python/modeling_taskmoe.py"),
    ),
];

/// `config.json`'s `auto_map` of a taskmoe-layout export, `(auto class, module.Class)`: what
/// `transformers` loads with `trust_remote_code=True`.
pub const HF_AUTO_MAP: [(&str, &str); 2] = [
    ("AutoConfig", "configuration_taskmoe.TaskmoeConfig"),
    ("AutoModel", "modeling_taskmoe.TaskmoeModel"),
];

/// Which names and config an export uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfLayout {
    /// `transformers.BertModel` names and `BertConfig`.
    Bert,
    /// taskmoe names and `ModelConfig` (`python/taskmoe_hf.py`), with that modelling code and
    /// an `auto_map` for `transformers`' `trust_remote_code=True`.
    Taskmoe,
}

impl HfLayout {
    /// How a folder of this layout loads, in a sentence (for messages and model cards).
    pub fn how_to_load(self) -> &'static str {
        match self {
            HfLayout::Bert => {
                "A `transformers.BertModel` folder: `BertModel.from_pretrained(folder)` (or \
                 `AutoModel`) loads the encoder and gives taskmoe's hidden states; the task heads are in \
                 `heads.safetensors` (`python/taskmoe_hf.py`'s `TaskMoeExport(folder)` runs \
                 encoder and heads and returns taskmoe's logits)"
            }
            HfLayout::Taskmoe => {
                "Not a `BertModel` folder: `transformers.AutoModel.from_pretrained(folder, \
                 trust_remote_code=True)` loads it through the modelling code in the folder \
                 (`modeling_taskmoe.py`, CPU, fp32) and returns taskmoe's logits; without \
                 `transformers`, `taskmoe_hf.TaskMoeExport(folder)` does the same"
            }
        }
    }
}

/// An export in memory: tensors (fp32, CPU) and the config, before writing.
#[derive(Debug)]
pub struct HfExport {
    /// The layout.
    pub layout: HfLayout,
    /// `config.json`; callers may add keys (label names, provenance) before writing.
    pub config: serde_json::Value,
    /// The encoder tensors, by name.
    pub encoder: BTreeMap<String, Tensor>,
    /// The head tensors, `heads.{t}.*` with `t` the position in [`HfExport::tasks`].
    pub heads: BTreeMap<String, Tensor>,
    /// The model's task ids that were exported, in head order.
    pub tasks: Vec<usize>,
    /// The configuration of the exported network (dense with one task for a sub-network).
    pub model: ModelConfig,
}

/// Builds the export of `model` (parameters in `vs`), whole or, with `task`, that task's
/// sub-network (see the module docs; needs `task-level` routing when the model has MoE
/// blocks).
pub fn hf_export(
    model: &MultiTaskModel,
    vs: &nn::VarStore,
    task: Option<usize>,
) -> Result<HfExport> {
    let cfg = model.config().clone();
    if cfg.tower_layers > 0 {
        // The modelling code an export carries (python/modeling_taskmoe.py) has no tower.
        return Err(ModelError::Input(format!(
            "export --format hf does not cover tower blocks (model.tower_layers = {}): the \
             exported modelling code runs the encoder and heads only; the run's checkpoints \
             evaluate and predict with taskmoe",
            cfg.tower_layers
        )));
    }
    if cfg.frozen_layers > 0 && cfg.task_embedding == TaskEmbedding::Added {
        // The exported modelling code adds the task vector to the input embedding.
        return Err(ModelError::Input(format!(
            "export --format hf does not cover a task embedding added above a frozen bottom \
             (model.task_embedding = \"added\" with model.frozen_layers = {}): the exported \
             modelling code adds it to the input embedding; the run's checkpoints evaluate and \
             predict with taskmoe",
            cfg.frozen_layers
        )));
    }
    let mut encoder = BTreeMap::new();
    let mut all_heads = BTreeMap::new();
    for (name, t) in vs.variables() {
        let t = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float);
        if name.starts_with("heads.") {
            all_heads.insert(name, t);
        } else {
            encoder.insert(name, t);
        }
    }
    let Some(task) = task else {
        let mut cfg = cfg;
        for (i, layer) in model.moe_layers() {
            if layer.experts().lora().is_none() {
                continue;
            }
            let prefix = format!("{}experts.", cfg.moe_prefix(i));
            encoder.retain(|name, _| !name.starts_with(&prefix));
            let merged = layer.experts().as_ffn()?;
            for (name, t) in ["w1", "b1", "w2", "b2"].iter().zip(merged.params()) {
                let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float);
                encoder.insert(format!("{prefix}{name}"), t);
            }
            cfg.moe.expert_kind = taskmoe_experts::ExpertKind::Ffn;
        }
        let bert = model.moe_layers().is_empty()
            && cfg.norm == NormPlacement::Post
            && cfg.task_embedding == TaskEmbedding::None;
        let layout = if bert {
            HfLayout::Bert
        } else {
            HfLayout::Taskmoe
        };
        let heads = model.heads().to_vec();
        return Ok(HfExport {
            layout,
            config: config_json(layout, &cfg, &heads, cfg.d_ff),
            encoder,
            heads: all_heads,
            tasks: (0..heads.len()).collect(),
            model: cfg,
        });
    };
    let spec = model.heads().get(task).cloned().ok_or_else(|| {
        ModelError::Input(format!(
            "task {task} is out of range: the model has {} tasks",
            model.heads().len()
        ))
    })?;
    // Every MoE block becomes the task's dense FFN.
    let mut widths = vec![cfg.d_ff; cfg.num_layers];
    for (i, layer) in model.moe_layers() {
        let sub = layer.task_subnetwork(task).map_err(|e| {
            ModelError::Input(format!(
                "--task needs a fixed sub-network per task (router kind task-level): {e}"
            ))
        })?;
        let prefix = format!("encoder.layer.{i}.moe.");
        encoder.retain(|name, _| !name.starts_with(&prefix));
        let (mut w1, mut b1, mut w2) = (Vec::new(), Vec::new(), Vec::new());
        let mut b2 = Tensor::zeros([cfg.d_model as i64], (Kind::Float, tch::Device::Cpu));
        for (j, &w) in sub.weights.iter().enumerate() {
            let j = j as i64;
            let cpu = |t: &Tensor| t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float);
            w1.push(cpu(&sub.bank.w1.get(j)).tr()); // [d_ff, d]
            b1.push(cpu(&sub.bank.b1.get(j)));
            w2.push(cpu(&sub.bank.w2.get(j)).tr() * w); // [d, d_ff]
            b2 += cpu(&sub.bank.b2.get(j)) * w;
        }
        if let Some(shared) = layer.shared() {
            let (sw1, sb1, sw2, sb2) = shared.weights();
            let cpu = |t: &Tensor| t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float);
            w1.push(cpu(sw1));
            b1.push(cpu(sb1));
            w2.push(cpu(sw2));
            b2 += cpu(sb2);
        }
        let p = format!("encoder.layer.{i}");
        let w1 = Tensor::cat(&w1, 0);
        widths[i] = w1.size()[0] as usize;
        encoder.insert(format!("{p}.intermediate.dense.weight"), w1);
        encoder.insert(format!("{p}.intermediate.dense.bias"), Tensor::cat(&b1, 0));
        encoder.insert(format!("{p}.output.dense.weight"), Tensor::cat(&w2, 1));
        encoder.insert(format!("{p}.output.dense.bias"), b2);
    }
    // One width for every block: zero units add nothing (gelu(0) = 0, zero output weights).
    let width = widths.iter().copied().max().unwrap_or(cfg.d_ff);
    for (i, &w) in widths.iter().enumerate() {
        let extra = (width - w) as i64;
        if extra == 0 {
            continue;
        }
        let p = format!("encoder.layer.{i}");
        let d = cfg.d_model as i64;
        let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu));
        for (name, pad, dim) in [
            ("intermediate.dense.weight", zeros(&[extra, d]), 0),
            ("intermediate.dense.bias", zeros(&[extra]), 0),
            ("output.dense.weight", zeros(&[d, extra]), 1),
        ] {
            let key = format!("{p}.{name}");
            let t = encoder
                .remove(&key)
                .expect("every block has a dense FFN now");
            encoder.insert(key, Tensor::cat(&[t, pad], dim));
        }
    }
    // The task embedding: folded (added) or cut to the task's row (prefix).
    let mut sub_cfg = cfg.clone();
    sub_cfg.variant = Variant::Dense;
    sub_cfg.d_ff = width;
    if let Some(emb) = encoder.remove("task_embeddings.weight") {
        let row = emb.get(task as i64);
        match cfg.task_embedding {
            TaskEmbedding::Added => {
                let key = "embeddings.position_embeddings.weight".to_string();
                let pos = encoder
                    .remove(&key)
                    .expect("the model has position embeddings");
                encoder.insert(key, pos + row.unsqueeze(0));
                sub_cfg.task_embedding = TaskEmbedding::None;
            }
            _ => {
                encoder.insert("task_embeddings.weight".into(), row.unsqueeze(0));
            }
        }
    }
    let heads: BTreeMap<String, Tensor> = all_heads
        .into_iter()
        .filter_map(|(name, t)| {
            let rest = name.strip_prefix(&format!("heads.{task}."))?.to_string();
            Some((format!("heads.0.{rest}"), t))
        })
        .collect();
    let bert = cfg.norm == NormPlacement::Post && sub_cfg.task_embedding == TaskEmbedding::None;
    let layout = if bert {
        HfLayout::Bert
    } else {
        HfLayout::Taskmoe
    };
    Ok(HfExport {
        layout,
        config: config_json(layout, &sub_cfg, std::slice::from_ref(&spec), width),
        encoder,
        heads,
        tasks: vec![task],
        model: sub_cfg,
    })
}

/// `config.json` of an export.
fn config_json(
    layout: HfLayout,
    cfg: &ModelConfig,
    heads: &[HeadSpec],
    width: usize,
) -> serde_json::Value {
    let heads = serde_json::to_value(heads).expect("head specs serialize");
    match layout {
        HfLayout::Bert => json!({
            "model_type": "bert",
            "architectures": ["BertModel"],
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model,
            "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads,
            "intermediate_size": width,
            "hidden_act": "gelu",
            "hidden_dropout_prob": cfg.dropout,
            "attention_probs_dropout_prob": cfg.attention_dropout,
            "max_position_embeddings": cfg.max_position,
            "type_vocab_size": cfg.type_vocab_size,
            "initializer_range": 0.02,
            "layer_norm_eps": cfg.layer_norm_eps,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "taskmoe": {
                "layout": "bert",
                "pooling": cfg.pooling,
                "model": cfg,
                "heads": heads,
                "heads_file": HF_HEADS_FILE,
            },
        }),
        HfLayout::Taskmoe => json!({
            "model_type": "taskmoe",
            "architectures": ["TaskmoeModel"],
            "auto_map": HF_AUTO_MAP
                .iter()
                .map(|&(k, v)| (k.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "taskmoe": {
                "layout": "taskmoe",
                "layout_version": 1,
                "model": cfg,
                "heads": heads,
                "heads_file": HF_HEADS_FILE,
            },
        }),
    }
}

/// Writes `export` into `dir` (created if needed) in `dtype`: `config.json` (with
/// `torch_dtype`), `model.safetensors` and `heads.safetensors`, and for the taskmoe layout the
/// modelling code [`HF_MODELING_FILES`] (a bert-layout export removes stale copies of them, so
/// `AutoModel` cannot pick them up).
pub fn write_hf_export(export: &HfExport, dir: &Path, dtype: ExportDtype) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cast = |m: &BTreeMap<String, Tensor>| -> Vec<(String, Tensor)> {
        m.iter()
            .map(|(k, t)| (k.clone(), t.to_kind(dtype.kind()).contiguous()))
            .collect()
    };
    write_tensors(&cast(&export.encoder), &dir.join(HF_MODEL_FILE))?;
    write_tensors(&cast(&export.heads), &dir.join(HF_HEADS_FILE))?;
    let mut config = export.config.clone();
    config["torch_dtype"] = dtype.torch_name().into();
    let path = dir.join(HF_CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).expect("the config serializes") + "\n";
    std::fs::write(&path, text).map_err(io(&path))?;
    for (name, code) in HF_MODELING_FILES {
        let path = dir.join(name);
        match export.layout {
            HfLayout::Taskmoe => std::fs::write(&path, code).map_err(io(&path))?,
            HfLayout::Bert if path.is_file() => std::fs::remove_file(&path).map_err(io(&path))?,
            HfLayout::Bert => {}
        }
    }
    Ok(())
}
