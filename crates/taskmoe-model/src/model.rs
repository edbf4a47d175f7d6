//! The multi-task model: encoder + per-task heads.

use tch::{nn, nn::Module, Kind, Tensor};

use taskmoe_experts::{FeedForward, LayerStats, MoeLayer};
use taskmoe_router::AuxLosses;

use crate::block::{layer_norm, Block, TokenRows};
use crate::config::{ModelConfig, Pooling};
use crate::embeddings::Embeddings;
use crate::error::{ModelError, Result};
use crate::heads::{Head, HeadSpec};

/// Logit value of classes a task does not have, in the padded `[B, max_outputs]` logits.
pub const MISSING_CLASS_LOGIT: f64 = -1e9;

/// One batch of inputs, as the data crate's tensors provide them.
#[derive(Debug)]
pub struct ModelInput<'a> {
    /// Token ids. `[B, L]` int64
    pub input_ids: &'a Tensor,
    /// 1 for real tokens, 0 for padding. `[B, L]` int64 or bool
    pub attention_mask: &'a Tensor,
    /// Segment ids (0 / 1 for sentence pairs); `None` means all 0. `[B, L]` int64
    pub token_type_ids: Option<&'a Tensor>,
    /// Task of each example, in `0..heads.len()`. `[B]` int64
    pub task_ids: &'a Tensor,
}

/// What the model computed for a batch.
#[derive(Debug)]
pub struct ModelOutput {
    /// Head outputs in fp32, padded to the widest head with [`MISSING_CLASS_LOGIT`] (so a
    /// softmax over a row only sees that task's classes; a regression task uses column 0).
    /// `[B, max_outputs]`
    pub logits: Tensor,
    /// The pooled vector fed to the heads. `[B, d]`
    pub pooled: Tensor,
    /// Final hidden states (including the task token in prefix mode). `[B, L(+1), d]`
    pub hidden: Tensor,
    /// Unweighted aux losses, averaged over the MoE blocks; `None` without MoE blocks.
    pub aux: Option<AuxLosses>,
    /// Routing statistics of each MoE block, with its block index.
    pub stats: Vec<(usize, LayerStats)>,
}

/// A transformer encoder with dense or MoE feed-forward blocks and one head per task.
///
/// Parameter names mirror HF BERT where a counterpart exists (`embeddings.*`,
/// `encoder.layer.{i}.*`), so BERT checkpoints load without a renaming table; see
/// `docs/checkpoints.md` for the full list.
#[derive(Debug)]
pub struct MultiTaskModel {
    cfg: ModelConfig,
    pub(crate) heads_spec: Vec<HeadSpec>,
    pub(crate) embeddings: Embeddings,
    blocks: Vec<Block>,
    final_norm: Option<nn::LayerNorm>,
    pub(crate) heads: Vec<Head>,
}

impl MultiTaskModel {
    /// Creates the model's parameters under `root` (normally a `VarStore`'s root) for the
    /// given task heads (task id = position). Validates the configuration first.
    pub fn new(root: &nn::Path, cfg: &ModelConfig, heads: &[HeadSpec]) -> Result<Self> {
        cfg.validate()?;
        if heads.is_empty() {
            return Err(ModelError::Input(
                "a model needs at least one task head".into(),
            ));
        }
        for h in heads {
            if h.num_outputs() == 0 {
                return Err(ModelError::Input(format!("task {} has no labels", h.name)));
            }
        }
        let num_tasks = heads.len();
        let encoder = root / "encoder";
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::new(&(&encoder / "layer" / i), cfg, i, num_tasks))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = (cfg.norm == crate::config::NormPlacement::Pre)
            .then(|| layer_norm(&encoder / "final_layer_norm", cfg));
        let heads_params = heads
            .iter()
            .enumerate()
            .map(|(i, h)| {
                Head::new(
                    root / "heads" / i,
                    cfg.d_model,
                    h.num_outputs(),
                    cfg.dropout,
                )
            })
            .collect();
        Ok(MultiTaskModel {
            cfg: cfg.clone(),
            heads_spec: heads.to_vec(),
            embeddings: Embeddings::new(root, cfg, num_tasks),
            blocks,
            final_norm,
            heads: heads_params,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The task heads, in task-id order.
    pub fn heads(&self) -> &[HeadSpec] {
        &self.heads_spec
    }

    /// The MoE layers with their block index.
    pub fn moe_layers(&self) -> Vec<(usize, &MoeLayer)> {
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match &b.ffn {
                FeedForward::Moe(m) => Some((i, m.as_ref())),
                FeedForward::Dense(_) => None,
            })
            .collect()
    }

    /// The encoder and the heads. `train` enables dropout, router noise and the training
    /// capacity. Reads the task ids and the padding mask back to the host once (to check the
    /// ids and to find the real tokens).
    pub fn forward(&self, input: &ModelInput, train: bool) -> Result<ModelOutput> {
        let (b, _) = self.check(input)?;
        let task_ids_host: Vec<i64> = Vec::try_from(input.task_ids)?;
        if let Some(bad) = task_ids_host
            .iter()
            .find(|&&t| t < 0 || t as usize >= self.heads.len())
        {
            return Err(ModelError::Input(format!(
                "task id {bad} is out of range: the model has {} tasks",
                self.heads.len()
            )));
        }
        let type_ids = match input.token_type_ids {
            Some(t) => t.shallow_clone(),
            None => input.input_ids.zeros_like(),
        };
        let mut x = self
            .embeddings
            .forward(input.input_ids, &type_ids, input.task_ids, train);
        let mut mask = input.attention_mask.to_kind(Kind::Bool);
        if self.embeddings.has_prefix() {
            let prefix = mask.ones_like().narrow(1, 0, 1);
            mask = Tensor::cat(&[prefix, mask], 1);
        }
        let l = mask.size()[1];
        let index = mask.reshape([-1]).nonzero().squeeze_dim(1); // real tokens of B * L
                                                                 // Without padding, attention needs no mask and the feed-forward no gather / scatter.
        let padded = index.size()[0] < b * l;
        let attend = padded.then(|| mask.view([b, 1, 1, l]));
        let token_tasks = input
            .task_ids
            .unsqueeze(1)
            .expand([b, l], false)
            .reshape([-1]);
        let rows = TokenRows {
            task_ids: match padded {
                true => token_tasks.index_select(0, &index),
                false => token_tasks,
            },
            index: padded.then_some(index),
        };
        let mut aux_layers = Vec::new();
        let mut stats = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let out = block.forward(&x, attend.as_ref(), &rows, train)?;
            x = out.x;
            aux_layers.extend(out.aux);
            if let Some(s) = out.stats {
                stats.push((i, s));
            }
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward(&x);
        }
        let pooled = self.pool(&x, &mask);
        let logits = self.head_logits(&pooled, &task_ids_host, train)?;
        Ok(ModelOutput {
            logits,
            pooled,
            hidden: x,
            aux: AuxLosses::mean(&aux_layers),
            stats,
        })
    }

    fn check(&self, input: &ModelInput) -> Result<(i64, i64)> {
        let size = input.input_ids.size();
        let &[b, l] = size.as_slice() else {
            return Err(ModelError::Input(format!(
                "input_ids has shape {size:?}, expected [batch, length]"
            )));
        };
        if l as usize > self.cfg.max_position {
            return Err(ModelError::Input(format!(
                "sequences of length {l} exceed max_position = {}",
                self.cfg.max_position
            )));
        }
        let same = |name: &str, t: &Tensor, want: &[i64]| {
            if t.size() != want {
                Err(ModelError::Input(format!(
                    "{name} has shape {:?}, expected {want:?}",
                    t.size()
                )))
            } else {
                Ok(())
            }
        };
        same("attention_mask", input.attention_mask, &[b, l])?;
        if let Some(t) = input.token_type_ids {
            same("token_type_ids", t, &[b, l])?;
        }
        same("task_ids", input.task_ids, &[b])?;
        Ok((b, l))
    }

    /// `[B, L, d]` -> `[B, d]`: the `[CLS]` token (after the task token in prefix mode) or
    /// the mean over real tokens (excluding the task token).
    fn pool(&self, x: &Tensor, mask: &Tensor) -> Tensor {
        let offset = i64::from(self.embeddings.has_prefix());
        match self.cfg.pooling {
            Pooling::First => x.select(1, offset),
            Pooling::Mean => {
                let l = x.size()[1];
                let x = x.narrow(1, offset, l - offset);
                let m = mask
                    .narrow(1, offset, l - offset)
                    .to_kind(x.kind())
                    .unsqueeze(-1);
                (&x * &m).sum_dim_intlist(1, false, x.kind())
                    / m.sum_dim_intlist(1, false, x.kind()).clamp_min(1.0)
            }
        }
    }

    /// Runs each task's head on its examples only and assembles the padded logits.
    fn head_logits(&self, pooled: &Tensor, task_ids: &[i64], train: bool) -> Result<Tensor> {
        let width = self
            .heads_spec
            .iter()
            .map(HeadSpec::num_outputs)
            .max()
            .unwrap_or(1);
        let b = task_ids.len() as i64;
        let device = pooled.device();
        let pooled = pooled.to_kind(Kind::Float);
        let mut logits = Tensor::full(
            [b, width as i64],
            MISSING_CLASS_LOGIT,
            (Kind::Float, device),
        );
        for (task, head) in self.heads.iter().enumerate() {
            let rows: Vec<i64> = (0..b)
                .filter(|&i| task_ids[i as usize] == task as i64)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let index = Tensor::from_slice(&rows).to_device(device);
            let out = head
                .forward(&pooled.index_select(0, &index), train)
                .to_kind(Kind::Float);
            let n = out.size()[1];
            let padded = Tensor::cat(
                &[
                    out,
                    Tensor::full(
                        [rows.len() as i64, width as i64 - n],
                        MISSING_CLASS_LOGIT,
                        (Kind::Float, device),
                    ),
                ],
                1,
            );
            logits = logits.index_copy(0, &index, &padded);
        }
        Ok(logits)
    }
}
