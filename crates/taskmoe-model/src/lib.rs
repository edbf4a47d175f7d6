//! Multi-task transformer encoders with dense or sparse (task-aware MoE) feed-forward blocks.
//!
//! The `tiny` preset as a task-MoE with two classification heads, on a padded batch of two
//! tasks:
//!
//! ```rust
//! use taskmoe_model::{HeadSpec, ModelConfig, ModelInput, MultiTaskModel, Variant};
//! use tch::{nn, Device, Kind, Tensor};
//!
//! # fn main() -> taskmoe_model::Result<()> {
//! let cfg = ModelConfig::preset("tiny").unwrap().with_variant(Variant::TaskMoe);
//! let heads = [("nli", 3), ("sentiment", 2)].map(|(name, n)| HeadSpec::classification(name, n));
//! let vs = nn::VarStore::new(Device::Cpu);
//! let model = MultiTaskModel::new(&vs.root(), &cfg, &heads)?;
//! let ids = Tensor::from_slice(&[2i64, 7, 9, 3, 5, 6, 0, 0]).view([2, 4]); // 0 = padding
//! let mask = ids.ne(0).to_kind(Kind::Int64);
//! let tasks = Tensor::from_slice(&[0i64, 1]); // an nli and a sentiment example
//! let input = ModelInput {
//!     input_ids: &ids,
//!     attention_mask: &mask,
//!     token_type_ids: None,
//!     task_ids: &tasks,
//! };
//! let out = model.forward(&input, false)?;
//! assert_eq!(out.logits.size(), [2, 3]); // padded to the widest head
//! assert_eq!(out.stats.len(), 2); // both tiny blocks are MoE, each reports its routing
//! assert!(out.aux.is_some()); // their aux losses, averaged
//! # Ok(())
//! # }
//! ```
//!
//! - [`ModelConfig`]: one serde configuration for every [`Variant`] (`dense`, `token-moe`,
//!   `task-moe` with any task-aware router, `single-task`), with presets;
//! - [`MultiTaskModel`]: embeddings (+ an optional task embedding, added or as a prefix
//!   token), `N` blocks of self-attention and dense-or-MoE FFN (post- or pre-LayerNorm),
//!   pooling, and one head per task; its forward returns padded per-example logits, the
//!   averaged aux losses and per-layer routing statistics ([`ModelOutput`]);
//! - [`per_example_loss`]: cross-entropy / squared error on the padded logits;
//! - [`save_weights`] / [`load_weights`]: safetensors with HF BERT names where they exist,
//!   exported in fp32, bf16 or fp16; loading reports every missing, extra or mis-shaped tensor;
//! - [`bert_config`] / [`import_bert`]: HF BERT-family checkpoints (all-MiniLM-L6-v2 is the
//!   test asset) into the dense encoder, with MoE experts upcycled from the pretrained FFNs;
//! - [`hf_export`] / [`write_hf_export`]: folders `transformers.BertModel` (post-LN dense) or
//!   `AutoModel` with `trust_remote_code=True` through the modelling code they carry (every
//!   other model) load, whole or one task's sub-network;
//! - [`FrozenStates`]: the hidden states of the frozen bottom blocks (`frozen_layers`),
//!   computed once per text and kept on disk under a hash of the frozen weights;
//! - [`param_report`]: total and active parameters and FLOPs per token of any configuration.

#![warn(missing_docs)]

mod attention;
mod block;
mod checkpoint;
mod config;
mod embeddings;
mod error;
mod export;
mod frozen_states;
mod heads;
mod import;
mod loss;
mod model;
mod params;
mod safetensors_meta;
mod tower;
mod transfer;

pub use checkpoint::{
    load_card, load_weights, save_card, save_weights, write_tensors, ExportDtype, ModelCard,
};
/// The source of this crate's configuration types: `taskmoe config show` prints each key's
/// documentation from it beside the value.
pub const CONFIG_SOURCE: &str = include_str!("config.rs");
pub use config::{
    HeadStart, HeadStyle, ModelConfig, NormPlacement, Pooling, TaskEmbedding, Variant,
};
pub use error::{ModelError, Result};
pub use export::{
    hf_export, write_hf_export, HfExport, HfLayout, HF_AUTO_MAP, HF_CONFIG_FILE, HF_HEADS_FILE,
    HF_MODELING_FILES, HF_MODEL_FILE, HF_README_FILE,
};
pub use frozen_states::{example_key, frozen_prefix_key, FrozenStates};
pub use heads::{HeadKind, HeadSpec};
pub use import::{bert_config, import_bert, is_pretrained_param, ImportReport};
pub use loss::{per_example_loss, IGNORE_INDEX};
pub use model::{ModelInput, ModelOutput, MultiTaskModel, MISSING_CLASS_LOGIT};
pub use params::{param_report, ParamReport};
pub use safetensors_meta::{read_metadata, set_metadata};
pub use taskmoe_experts::Upcycling;
pub use transfer::TaskInitReport;
