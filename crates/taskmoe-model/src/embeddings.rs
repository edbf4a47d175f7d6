//! Input embeddings: tokens, positions, token types, and optionally the task.

use taskmoe_device::{draw_for, module_name};
use taskmoe_kernels::dropout;
use tch::{nn, nn::Module, Tensor};

use crate::config::{ModelConfig, TaskEmbedding};

/// `LN(word[id] + position[i] + token_type[type] (+ task[t]))`, then dropout.
///
/// Parameter names follow HF BERT: `embeddings.word_embeddings.weight [V, d]`,
/// `embeddings.position_embeddings.weight [P, d]`,
/// `embeddings.token_type_embeddings.weight [types, d]`, `embeddings.LayerNorm.{weight,bias}`;
/// the task embedding (added or prefix mode) is `task_embeddings.weight [tasks, d]`. Above a
/// frozen bottom (`frozen_layers > 0`) an added task vector is not part of the input
/// embedding: the model adds it to the frozen bottom's output ([`Embeddings::add_task_above`]).
#[derive(Debug)]
pub(crate) struct Embeddings {
    word: nn::Embedding,
    position: nn::Embedding,
    token_type: nn::Embedding,
    layer_norm: nn::LayerNorm,
    task: Option<nn::Embedding>,
    mode: TaskEmbedding,
    /// Whether an added task vector goes into the input embedding (`frozen_layers = 0`) or,
    /// above a frozen bottom, into the states entering the first trained block.
    added_at_input: bool,
    dropout: f64,
}

impl Embeddings {
    pub(crate) fn new(root: &nn::Path, cfg: &ModelConfig, num_tasks: usize) -> Self {
        let p = root / "embeddings";
        let d = cfg.d_model as i64;
        let init = nn::EmbeddingConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            ..Default::default()
        };
        // Each table from its own keyed stream (taskmoe_device::draw_for).
        let table = |path: nn::Path, rows: usize| {
            draw_for(&module_name(&path), || {
                nn::embedding(&path, rows as i64, d, init)
            })
        };
        let task = (cfg.task_embedding != TaskEmbedding::None)
            .then(|| table(root / "task_embeddings", num_tasks));
        Embeddings {
            word: table(&p / "word_embeddings", cfg.vocab_size),
            position: table(&p / "position_embeddings", cfg.max_position),
            token_type: table(&p / "token_type_embeddings", cfg.type_vocab_size),
            layer_norm: nn::layer_norm(
                &p / "LayerNorm",
                vec![d],
                nn::LayerNormConfig {
                    eps: cfg.layer_norm_eps,
                    ..Default::default()
                },
            ),
            task,
            mode: cfg.task_embedding,
            added_at_input: cfg.frozen_layers == 0,
            dropout: cfg.dropout,
        }
    }

    /// # Shapes
    /// `input_ids, token_type_ids: [B, L]`, `task_ids: [B]` -> `[B, L, d]`, or `[B, L + 1, d]`
    /// in prefix mode (the task token first).
    pub(crate) fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        task_ids: &Tensor,
        train: bool,
    ) -> Tensor {
        let (_, l) = input_ids.size2().expect("checked by the model");
        let positions = Tensor::arange(l, (tch::Kind::Int64, input_ids.device())).unsqueeze(0);
        let mut x = self.word.forward(input_ids)
            + self.position.forward(&positions)
            + self.token_type.forward(token_type_ids);
        if let (TaskEmbedding::Added, Some(task), true) =
            (self.mode, &self.task, self.added_at_input)
        {
            x += task.forward(task_ids).unsqueeze(1);
        }
        let x = self.layer_norm.forward(&x);
        let x = match (self.mode, &self.task) {
            (TaskEmbedding::Prefix, Some(task)) => {
                let prefix = self
                    .layer_norm
                    .forward(&task.forward(task_ids))
                    .unsqueeze(1);
                Tensor::cat(&[prefix, x], 1)
            }
            _ => x,
        };
        dropout(&x, self.dropout, train)
    }

    /// The states entering the first trained block above a frozen bottom: `x` plus the task's
    /// vector at every position when the task embedding is `added` and the input embedding
    /// left it out (`frozen_layers > 0`), else `x` unchanged. `x` is not written to (it may be
    /// the frozen-state memo's copy).
    ///
    /// # Shapes
    /// `x: [B, L, d]`, `task_ids: [B]` -> `[B, L, d]`
    pub(crate) fn add_task_above(&self, x: Tensor, task_ids: &Tensor) -> Tensor {
        match (self.mode, &self.task, self.added_at_input) {
            (TaskEmbedding::Added, Some(task), false) => x + task.forward(task_ids).unsqueeze(1),
            _ => x,
        }
    }

    /// Copies the task embedding of `source` into `task`'s row; `false` when the model has no
    /// task embedding.
    pub(crate) fn copy_task_row(&self, task: usize, source: usize) -> bool {
        let Some(emb) = &self.task else {
            return false;
        };
        tch::no_grad(|| {
            let row = emb.ws.get(source as i64);
            emb.ws.get(task as i64).copy_(&row);
        });
        true
    }

    /// Whether a task token is prepended.
    pub(crate) fn has_prefix(&self) -> bool {
        self.mode == TaskEmbedding::Prefix
    }
}
