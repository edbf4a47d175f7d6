//! Pretrained BERT-family checkpoints (HF `model.safetensors` + `config.json`): dense import
//! and upcycling into MoE blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use taskmoe_experts::Upcycling;
use tch::{nn, Tensor};

use crate::config::{ModelConfig, NormPlacement, Variant};
use crate::error::{config_error, ModelError, Result};
use crate::model::MultiTaskModel;

/// The fields of an HF BERT `config.json` that define the encoder.
#[derive(Debug, Deserialize)]
struct HfBertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "bert_eps")]
    layer_norm_eps: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default)]
    hidden_dropout_prob: f64,
    #[serde(default)]
    attention_probs_dropout_prob: f64,
}

fn two() -> usize {
    2
}
fn bert_eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}

/// The encoder configuration of an HF BERT checkpoint folder (`config.json`), as a dense
/// post-LayerNorm [`ModelConfig`]; other fields keep `base`'s values. Expert widths follow
/// the FFN width, so [`ModelConfig::with_variant`] then gives the upcycled MoE variants.
pub fn bert_config(dir: &Path, base: &ModelConfig) -> Result<ModelConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.clone(),
        source,
    })?;
    let hf: HfBertConfig = serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.clone(),
        source,
    })?;
    if hf.hidden_act != "gelu" {
        return Err(config_error(
            format!("{}: hidden_act", path.display()),
            format!(
                "only exact `gelu` BERT models are supported, got `{}`",
                hf.hidden_act
            ),
        ));
    }
    let mut cfg = base.clone();
    cfg.variant = Variant::Dense;
    cfg.vocab_size = hf.vocab_size;
    cfg.d_model = hf.hidden_size;
    cfg.num_layers = hf.num_hidden_layers;
    cfg.num_heads = hf.num_attention_heads;
    cfg.d_ff = hf.intermediate_size;
    cfg.moe.d_ff = hf.intermediate_size;
    cfg.max_position = hf.max_position_embeddings;
    cfg.type_vocab_size = hf.type_vocab_size;
    cfg.layer_norm_eps = hf.layer_norm_eps;
    cfg.dropout = hf.hidden_dropout_prob;
    cfg.attention_dropout = hf.attention_probs_dropout_prob;
    cfg.norm = NormPlacement::Post;
    Ok(cfg)
}

/// Whether the BERT import fills parameter `name` from the checkpoint by name: the embeddings
/// and every encoder parameter outside the MoE layers (attention, LayerNorms, dense FFNs).
/// These are what `train.freeze_pretrained` freezes; the MoE layers' experts are upcycled
/// from the pretrained FFNs instead (FFN experts train, a LoRA bank's base FFN never does),
/// and routers, task embeddings and heads are fresh.
pub fn is_pretrained_param(name: &str) -> bool {
    (name.starts_with("embeddings.") || name.starts_with("encoder.")) && !name.contains(".moe.")
}

/// What [`import_bert`] did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Parameters copied from the checkpoint.
    pub loaded: Vec<String>,
    /// MoE blocks whose experts were upcycled from the block's pretrained FFN.
    pub upcycled_blocks: Vec<usize>,
    /// Parameters left at their fresh initialisation (routers, heads, task embeddings, shared
    /// experts).
    pub fresh: Vec<String>,
    /// Checkpoint tensors the model has no use for (pooler, pre-training heads, buffers).
    pub ignored: Vec<String>,
}

/// Loads an HF BERT-family `model.safetensors` from `dir` into `model` (built on `vs` with a
/// matching [`bert_config`]): every embedding, attention, LayerNorm and dense FFN tensor by
/// name (a `bert.` prefix is stripped), and each MoE block's experts upcycled from that
/// block's pretrained FFN as `upcycling` says (copies plus noise of `noise * std(W)`, then a
/// share `drop` of each expert's hidden units re-initialised: Drop-Upcycling; LoRA experts take
/// the FFN as their frozen base, with zero noise and drop). Routers, heads and task
/// embeddings stay freshly initialised. A BERT tensor the model expects but the checkpoint
/// lacks, or one of another shape, is an error listing all of them.
pub fn import_bert(
    model: &MultiTaskModel,
    vs: &nn::VarStore,
    dir: &Path,
    upcycling: Upcycling,
) -> Result<ImportReport> {
    let path = dir.join("model.safetensors");
    let weights: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
        .map_err(|e| ModelError::Checkpoint {
            path: path.clone(),
            problems: vec![format!("cannot read: {e}")],
        })?
        .into_iter()
        .map(|(name, t)| (name.strip_prefix("bert.").unwrap_or(&name).to_string(), t))
        .collect();
    // Encoder MoE blocks upcycle their block's pretrained FFN; tower blocks
    // (`model.tower_layers`) have no pretrained counterpart and start fresh.
    let num_layers = model.config().num_layers;
    let moe_blocks: Vec<usize> = model
        .moe_layers()
        .iter()
        .map(|(i, _)| *i)
        .filter(|&i| i < num_layers)
        .collect();
    let is_moe_param = |name: &str| {
        moe_blocks
            .iter()
            .any(|i| name.starts_with(&format!("encoder.layer.{i}.moe.")))
    };
    let bert_named =
        |name: &str| name.starts_with("embeddings.") || name.starts_with("encoder.layer.");

    let mut report = ImportReport::default();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let vars = vs.variables();
    for (name, var) in &vars {
        if is_moe_param(name) || !bert_named(name) {
            continue;
        }
        match weights.get(name) {
            None => problems.push(format!("missing {name}")),
            Some(t) if t.size() != var.size() => problems.push(format!(
                "{name} has shape {:?}, the model expects {:?}",
                t.size(),
                var.size()
            )),
            Some(_) => {
                used.insert(name.clone());
            }
        }
    }
    // Each MoE block upcycles from its own pretrained FFN.
    let ffn_names = |i: usize| {
        [
            format!("encoder.layer.{i}.intermediate.dense.weight"),
            format!("encoder.layer.{i}.intermediate.dense.bias"),
            format!("encoder.layer.{i}.output.dense.weight"),
            format!("encoder.layer.{i}.output.dense.bias"),
        ]
    };
    for &i in &moe_blocks {
        for n in ffn_names(i) {
            if weights.contains_key(&n) {
                used.insert(n);
            } else {
                problems.push(format!("missing {n} (to upcycle block {i})"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ModelError::Checkpoint { path, problems });
    }

    tch::no_grad(|| {
        for name in used.iter().filter(|n| vars.contains_key(*n)) {
            vars[name].shallow_clone().copy_(&weights[name]);
            report.loaded.push(name.clone());
        }
    });
    for (i, layer) in model
        .moe_layers()
        .into_iter()
        .filter(|(i, _)| *i < num_layers)
    {
        let [w1, b1, w2, b2] = ffn_names(i).map(|n| weights[&n].shallow_clone());
        layer
            .experts()
            .upcycle_from_weights(&w1, &b1, &w2, &b2, upcycling)?;
        report.upcycled_blocks.push(i);
    }
    report.fresh = vars
        .keys()
        .filter(|n| {
            let upcycled = is_moe_param(n) && n.contains(".moe.experts.");
            !used.contains(*n) && !upcycled
        })
        .cloned()
        .collect();
    report.fresh.sort();
    report.ignored = weights
        .keys()
        .filter(|n| !used.contains(*n))
        .cloned()
        .collect();
    Ok(report)
}
