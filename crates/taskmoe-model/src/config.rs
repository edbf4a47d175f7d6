//! Model configuration: one serde struct for every variant, with named presets.

use serde::{Deserialize, Serialize};
use taskmoe_experts::MoeConfig;
use taskmoe_router::{RouterConfig, RouterKind};

use crate::error::{config_error, Result};

/// Which model to build. All variants share the encoder; they differ in the feed-forward
/// blocks and in how tasks are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Dense multi-task model: every block has a dense FFN, all tasks share every weight.
    Dense,
    /// Task-agnostic MoE: MoE blocks with the `token` router.
    TokenMoe,
    /// Task-aware MoE: MoE blocks with a task-aware router (`moe.router.kind` is
    /// `task-concat`, `per-task` or `task-level`).
    TaskMoe,
    /// The single-task baseline: a dense model trained on one task (the trainer builds one
    /// per task).
    SingleTask,
}

impl Variant {
    /// Whether the variant has MoE blocks.
    pub fn is_moe(self) -> bool {
        matches!(self, Variant::TokenMoe | Variant::TaskMoe)
    }
}

/// Where LayerNorm sits in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormPlacement {
    /// `LN(x + f(x))` after each sub-layer, as BERT (so BERT weights load as they are).
    Post,
    /// `x + f(LN(x))`, with a final LayerNorm after the last block (more stable from scratch).
    Pre,
}

/// How a sequence becomes one vector for the task head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The first (`[CLS]`) token.
    First,
    /// The mean over non-padding tokens (sentence-transformers style).
    Mean,
}

/// The shape of each task's head on the pooled vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadStyle {
    /// BERT's classifier: `out(dropout(tanh(dense(pooled))))`, a `d x d` layer of its own per
    /// task, strong enough to solve simple tasks on its own.
    #[default]
    Mlp,
    /// `out(dropout(pooled))`: one linear map per task, so the task knowledge has to live in
    /// the shared layers (and their routing).
    Linear,
}

/// How the task heads start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadStart {
    /// Every head drawn on its own: two tasks with the same labels start by reading the
    /// pooled vector along different random directions, so what their losses ask of the
    /// shared layers (and of their gates) differs by that rotation.
    #[default]
    Independent,
    /// Every head starts as a copy of the first head of the same kind (classification with
    /// as many labels, or regression) and diverges by gradient: tasks start by reading the
    /// pooled vector the same way, so tasks whose labels agree ask the same of the shared
    /// layers. Uses no task relatedness, only the tasks' label kinds. Whether the gradients
    /// then follow the task families is measured by `taskmoe affinity`.
    Shared,
}

/// How the encoder is told the task (the heads always are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskEmbedding {
    /// Not at all: only the routers (task-aware variants) and the heads see the task.
    None,
    /// A learned vector per task added to every token's input embedding (like the position
    /// embedding), before the embedding LayerNorm. Above a frozen bottom
    /// (`model.frozen_layers > 0`) it is added instead to every token's state entering the
    /// first trained block (the frozen blocks' output; with `frozen_layers = num_layers`, the
    /// final states before pooling), so the frozen bottom stays task-blind and its memoised
    /// states a function of the text alone.
    Added,
    /// A learned task token prepended to the sequence (after embedding, so it takes no
    /// position); it attends and is attended to, and is excluded from pooling.
    Prefix,
}

/// The model configuration. Every field has a default (shown in its doc); the default is the
/// [`ModelConfig::small`] preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Model variant. Default `task-moe`.
    pub variant: Variant,
    /// Token vocabulary size. Default 1024.
    pub vocab_size: usize,
    /// Longest sequence (position embeddings). Default 128.
    pub max_position: usize,
    /// Token type (segment) vocabulary, 2 for sentence pairs. Default 2.
    pub type_vocab_size: usize,
    /// Hidden size `d`. Default 128.
    pub d_model: usize,
    /// Transformer blocks. Default 4.
    pub num_layers: usize,
    /// Attention heads; must divide `d_model`. Default 4.
    pub num_heads: usize,
    /// Width of the dense FFN blocks. Default 512.
    pub d_ff: usize,
    /// Dropout on embeddings, sub-layer outputs and the head. Default 0.1.
    pub dropout: f64,
    /// Dropout on attention probabilities. Default 0.1.
    pub attention_dropout: f64,
    /// LayerNorm epsilon. Default 1e-12 (BERT).
    pub layer_norm_eps: f64,
    /// LayerNorm placement. Default `pre` (stable from scratch at a learning rate of 1e-3;
    /// BERT imports set `post`).
    pub norm: NormPlacement,
    /// Pooling for the heads. Default `mean` (BERT imports keep the configured pooling).
    pub pooling: Pooling,
    /// Each task's head: `mlp` (BERT's `dense + tanh + out`) or `linear` (`out` alone, so the
    /// shared layers carry the task knowledge). Default `mlp`.
    pub head: HeadStyle,
    /// How the heads start: `independent` (each drawn on its own) or `shared` (each a copy of
    /// the first head of its kind, diverging by gradient). Default `independent`.
    pub head_start: HeadStart,
    /// How the encoder sees the task: `none`, `added` or `prefix`. With `frozen_layers > 0`
    /// only `none` and `added` are allowed, and `added` enters above the frozen bottom (see
    /// [`TaskEmbedding::Added`]). Default `none`.
    pub task_embedding: TaskEmbedding,
    /// Block `i` (0-based) is a MoE block when `(i + 1) % moe_every == 0`: 1 = every block,
    /// 2 = every other block starting with the second (Switch/GShard). Ignored by dense
    /// variants. Default 2.
    pub moe_every: usize,
    /// Blocks frozen at the bottom of the encoder: the embeddings and blocks `0..frozen_layers`
    /// are never trained and always run as in evaluation (no dropout), so their output is a
    /// fixed function of the text that a trainer computes once per dataset and caches
    /// ([`crate::FrozenStates`]). They must be dense and see no task: `task_embedding =
    /// "prefix"` is refused, and an `added` task vector (which trains) goes onto their output
    /// rather than into the frozen embeddings. MoE blocks go above them (for example
    /// `moe_every = 6` on a 6-block encoder frozen up to block 5). Default 0: everything
    /// trains.
    pub frozen_layers: usize,
    /// Feed-forward blocks above the pooling, on each example's pooled vector:
    /// `x + dropout(FFN(LN(x)))`, a MoE layer (routed by the example's task) in the MoE variants
    /// and a dense FFN of width `d_ff` otherwise; the heads read the last one. Over a frozen
    /// encoder (`frozen_layers = num_layers`) only the tower and the heads train: the
    /// multi-task recommendation model of experts and per-task gates over fixed sentence
    /// embeddings, computed once. A pretrained import starts them fresh. Default 0.
    pub tower_layers: usize,
    /// The MoE blocks: router, experts and their width. Default: 8 experts of width 512, top-1
    /// straight-through gates (`renormalize = true`), dropless, `per-task` router.
    pub moe: MoeConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::small()
    }
}

impl ModelConfig {
    /// The default: d = 128, 4 pre-LN blocks (2 of them MoE with 8 experts), mean pooling,
    /// sized for CPU training of the synthetic benchmark.
    pub fn small() -> Self {
        ModelConfig {
            variant: Variant::TaskMoe,
            vocab_size: 1024,
            max_position: 128,
            type_vocab_size: 2,
            d_model: 128,
            num_layers: 4,
            num_heads: 4,
            d_ff: 512,
            dropout: 0.1,
            attention_dropout: 0.1,
            layer_norm_eps: 1e-12,
            norm: NormPlacement::Pre,
            pooling: Pooling::Mean,
            head: HeadStyle::Mlp,
            head_start: HeadStart::Independent,
            task_embedding: TaskEmbedding::None,
            moe_every: 2,
            frozen_layers: 0,
            tower_layers: 0,
            moe: MoeConfig {
                router: RouterConfig {
                    kind: RouterKind::PerTask,
                    num_experts: 8,
                    k: 1,
                    renormalize: true,
                    capacity_factor_train: 0.0,
                    capacity_factor_eval: 0.0,
                    ..RouterConfig::default()
                },
                d_ff: 512,
                ..MoeConfig::default()
            },
        }
    }

    /// The larger preset of the performance suite: [`ModelConfig::small`] scaled to
    /// d = 512, 8 blocks of 8 heads, FFN width 2048, and 16 experts of width 2048 (top-1,
    /// per-task router) in every second block. The vocabulary and positions stay those of
    /// `small`, so the comparison between variants is about the encoder, not the embeddings.
    pub fn medium() -> Self {
        let mut cfg = Self::small();
        cfg.d_model = 512;
        cfg.num_layers = 8;
        cfg.num_heads = 8;
        cfg.d_ff = 2048;
        cfg.moe.router.num_experts = 16;
        cfg.moe.d_ff = 2048;
        cfg
    }

    /// A tiny model for tests: d = 32, 2 blocks, both MoE with 4 experts.
    pub fn tiny() -> Self {
        let mut cfg = Self::small();
        cfg.vocab_size = 64;
        cfg.max_position = 32;
        cfg.d_model = 32;
        cfg.num_layers = 2;
        cfg.num_heads = 2;
        cfg.d_ff = 64;
        cfg.moe_every = 1;
        cfg.moe.router.num_experts = 4;
        cfg.moe.d_ff = 64;
        cfg.dropout = 0.0;
        cfg.attention_dropout = 0.0;
        cfg
    }

    /// The GPU-sized preset (what `taskmoe check` measures MFU with): BERT-large-like width on
    /// a task-MoE, d = 1024, 16 heads, 12 blocks, every other block MoE with 8 experts of width
    /// 2048 (top-2, renormalised, per-task router), vocabulary 32000, 512 positions, no dropout.
    pub fn gpu() -> Self {
        let mut cfg = Self::small();
        cfg.vocab_size = 32000;
        cfg.max_position = 512;
        cfg.d_model = 1024;
        cfg.num_layers = 12;
        cfg.num_heads = 16;
        cfg.d_ff = 4096;
        cfg.dropout = 0.0;
        cfg.attention_dropout = 0.0;
        cfg.moe_every = 2;
        cfg.moe.router.num_experts = 8;
        cfg.moe.router.k = 2;
        cfg.moe.router.renormalize = true;
        cfg.moe.d_ff = 2048;
        cfg
    }

    /// The names [`ModelConfig::preset`] knows, the values of a run configuration's
    /// `model.preset` key.
    pub const PRESETS: [&'static str; 4] = ["small", "medium", "tiny", "gpu"];

    /// The preset called `name` (one of [`ModelConfig::PRESETS`]).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "small" => Some(Self::small()),
            "medium" => Some(Self::medium()),
            "tiny" => Some(Self::tiny()),
            "gpu" => Some(Self::gpu()),
            _ => None,
        }
    }

    /// The same configuration as another variant. MoE variants get a matching router kind:
    /// `token` for `token-moe`, the configured task-aware kind (or `per-task`) for `task-moe`.
    pub fn with_variant(&self, variant: Variant) -> Self {
        let mut cfg = self.clone();
        cfg.variant = variant;
        match variant {
            Variant::TokenMoe => cfg.moe.router.kind = RouterKind::Token,
            Variant::TaskMoe if !cfg.moe.router.kind.is_task_aware() => {
                cfg.moe.router.kind = RouterKind::PerTask
            }
            _ => {}
        }
        cfg
    }

    /// Whether parameter `name` (as the model names it) belongs to the frozen bottom of the
    /// encoder (`frozen_layers`): the embeddings and blocks `0..frozen_layers`.
    pub fn is_frozen_param(&self, name: &str) -> bool {
        if self.frozen_layers == 0 {
            return false;
        }
        if name.starts_with("embeddings.") {
            return true;
        }
        name.strip_prefix("encoder.layer.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < self.frozen_layers)
    }

    /// The parameter prefix of MoE layer `layer` as [`crate::MultiTaskModel::moe_layers`]
    /// numbers them: `encoder.layer.{i}.moe.` for encoder blocks, `tower.{j}.moe.` for tower
    /// block `j` (numbered `num_layers + j`).
    pub fn moe_prefix(&self, layer: usize) -> String {
        match layer.checked_sub(self.num_layers) {
            Some(j) => format!("tower.{j}.moe."),
            None => format!("encoder.layer.{layer}.moe."),
        }
    }

    /// Whether block `layer` (0-based) has a MoE feed-forward.
    pub fn is_moe_block(&self, layer: usize) -> bool {
        self.variant.is_moe() && (layer + 1) % self.moe_every == 0
    }

    /// Checks every value; errors name the key as `model.<field>`.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("max_position", self.max_position),
            ("type_vocab_size", self.type_vocab_size),
            ("d_model", self.d_model),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("d_ff", self.d_ff),
            ("moe_every", self.moe_every),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(config_error(format!("model.{key}"), "must be at least 1"));
            }
        }
        if self.d_model % self.num_heads != 0 {
            return Err(config_error(
                "model.num_heads",
                format!(
                    "must divide d_model = {}, got {}",
                    self.d_model, self.num_heads
                ),
            ));
        }
        for (key, p) in [
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(config_error(
                    format!("model.{key}"),
                    format!("must be in [0, 1), got {p}"),
                ));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(config_error("model.layer_norm_eps", "must be positive"));
        }
        self.validate_frozen_layers()?;
        if self.variant.is_moe() {
            self.moe.validate("model.moe")?;
            let kind = self.moe.router.kind;
            match self.variant {
                Variant::TokenMoe if kind != RouterKind::Token => {
                    return Err(config_error(
                        "model.moe.router.kind",
                        format!("token-moe routes with `token`, got `{}`", kind.name()),
                    ))
                }
                Variant::TaskMoe if !kind.is_task_aware() => {
                    return Err(config_error(
                        "model.moe.router.kind",
                        "task-moe needs a task-aware router: task-concat, per-task or task-level",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn validate_frozen_layers(&self) -> Result<()> {
        let n = self.frozen_layers;
        if n == 0 {
            return Ok(());
        }
        let key = "model.frozen_layers";
        if n > self.num_layers {
            return Err(config_error(
                key,
                format!("must be at most num_layers = {}, got {n}", self.num_layers),
            ));
        }
        if let Some(i) = (0..n).find(|&i| self.is_moe_block(i)) {
            return Err(config_error(
                key,
                format!(
                    "block {i} is a MoE block (moe_every = {}) but the first {n} blocks are \
                     frozen: frozen blocks must be dense (raise moe_every or lower \
                     frozen_layers)",
                    self.moe_every
                ),
            ));
        }
        if self.task_embedding == TaskEmbedding::Prefix {
            return Err(config_error(
                "model.task_embedding",
                format!(
                    "a task token (`prefix`) would pass through the {n} frozen blocks \
                     (model.frozen_layers = {n}), which must not see the task: use `added` \
                     (the task vector enters above the frozen blocks) or `none`"
                ),
            ));
        }
        Ok(())
    }
}
