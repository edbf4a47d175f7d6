//! The multi-task model: encoder + per-task heads.

use tch::{nn, nn::Module, Kind, Tensor};

use taskmoe_experts::{FeedForward, LayerStats, MoeLayer};
use taskmoe_kernels::TaskGroups;
use taskmoe_router::AuxLosses;

use crate::block::{layer_norm, Block, TokenRows};
use crate::config::{ModelConfig, Pooling};
use crate::embeddings::Embeddings;
use crate::error::{ModelError, Result};
use crate::frozen_states::FrozenStates;
use crate::heads::{Head, HeadSpec};
use crate::tower::TowerBlock;

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
    /// Feed-forward blocks on the pooled vectors (`tower_layers`).
    tower: Vec<TowerBlock>,
    /// Whether some encoder block's router uses the tokens grouped by task (`per-task`,
    /// `mmoe`, `cgc`, `expert-choice`): the model then groups them once per batch from its
    /// host counts.
    routes_per_task: bool,
    /// Whether some tower block's router does, for the examples (one row each).
    tower_routes_per_task: bool,
    /// The memo of the frozen blocks' states, when one is attached.
    frozen_states: Option<FrozenStates>,
}

/// A batch's masks, host copies and token rows, computed once before the blocks.
struct PreparedBatch {
    type_ids: Tensor,
    mask: Tensor,
    task_ids_host: Vec<i64>,
    lengths_host: Vec<i64>,
    attend: Option<Tensor>,
    rows: TokenRows,
}

/// The memo key of each example ([`crate::example_key`] of its real tokens), or `None` when
/// some example's real tokens are not all at the front (the memo stores states of a prefix).
fn example_keys(
    input: &ModelInput,
    type_ids: &Tensor,
    lengths: &[i64],
) -> Result<Option<Vec<u64>>> {
    let (b, l) = (lengths.len(), input.input_ids.size()[1] as usize);
    let mask = input.attention_mask.to_kind(Kind::Int64);
    let host: Vec<i64> = Vec::try_from(
        &Tensor::stack(
            &[
                input.input_ids.to_kind(Kind::Int64),
                type_ids.to_kind(Kind::Int64),
                mask,
            ],
            0,
        )
        .reshape([-1]),
    )?;
    let (ids, rest) = host.split_at(b * l);
    let (types, mask) = rest.split_at(b * l);
    let mut keys = Vec::with_capacity(b);
    for (i, &n) in lengths.iter().enumerate() {
        let row = i * l..(i + 1) * l;
        let n = n as usize;
        if mask[row.clone()]
            .iter()
            .enumerate()
            .any(|(j, &m)| (m != 0) != (j < n))
        {
            return Ok(None);
        }
        keys.push(crate::frozen_states::example_key(
            &ids[row.start..row.start + n],
            &types[row.start..row.start + n],
        ));
    }
    Ok(Some(keys))
}

/// `model.head_start = "shared"`: every head becomes a copy of the first head of its kind (as
/// many labels, or regression: the heads `init_task_from` copies between), the heads drawn as
/// usual first, so the other modules' draws do not move.
fn start_heads_shared(heads: &[Head], specs: &[HeadSpec]) {
    for (i, spec) in specs.iter().enumerate() {
        let first = specs
            .iter()
            .position(|s| s.kind == spec.kind)
            .expect("a head is of its own kind");
        if first != i {
            heads[i].copy_from(&heads[first]);
        }
    }
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
                    cfg.head,
                )
            })
            .collect::<Vec<Head>>();
        if cfg.head_start == crate::config::HeadStart::Shared {
            start_heads_shared(&heads_params, heads);
        }
        let tower = (0..cfg.tower_layers)
            .map(|j| TowerBlock::new(&(root / "tower" / j), cfg, num_tasks))
            .collect::<Result<Vec<_>>>()?;
        let groups_tasks = |f: &FeedForward| matches!(f, FeedForward::Moe(m) if m.config().router.kind.uses_task_groups());
        let routes_per_task = blocks.iter().any(|b| groups_tasks(&b.ffn));
        let tower_routes_per_task = tower.iter().any(|t| groups_tasks(&t.ffn));
        Ok(MultiTaskModel {
            routes_per_task,
            tower_routes_per_task,
            frozen_states: None,
            cfg: cfg.clone(),
            heads_spec: heads.to_vec(),
            embeddings: Embeddings::new(root, cfg, num_tasks),
            blocks,
            final_norm,
            heads: heads_params,
            tower,
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

    /// Columns of the padded logits [`MultiTaskModel::forward`] returns: the widest head's
    /// outputs.
    pub fn logits_width(&self) -> usize {
        self.heads_spec
            .iter()
            .map(HeadSpec::num_outputs)
            .max()
            .unwrap_or(1)
    }

    /// The MoE layers with their block index: encoder blocks `0..num_layers`, then tower
    /// block `j` as `num_layers + j` ([`ModelConfig::moe_prefix`] names their parameters).
    pub fn moe_layers(&self) -> Vec<(usize, &MoeLayer)> {
        self.blocks
            .iter()
            .map(|b| &b.ffn)
            .chain(self.tower.iter().map(|t| &t.ffn))
            .enumerate()
            .filter_map(|(i, ffn)| match ffn {
                FeedForward::Moe(m) => Some((i, m.as_ref())),
                FeedForward::Dense(_) => None,
            })
            .collect()
    }

    /// Tells every router the training step about to run (the soft-to-sparse warm-up of
    /// `model.moe.router.k_warmup_steps`; nothing without one).
    pub fn set_training_step(&self, step: u64) {
        for (_, layer) in self.moe_layers() {
            layer.router().set_training_step(step);
        }
    }

    /// Sets the task states of every `task-representation` router from the tasks' own
    /// examples: each task present in `inputs` gets, at every MoE block, exactly the mean of
    /// its real tokens' states entering that block over all the batches (evaluation mode, no
    /// gradient; earlier blocks are calibrated before later ones see the tokens). This is how
    /// an unseen task gets its routing from its own `k` examples. One batch gives the exact
    /// means; over several, a later block's mean mixes states computed under the earlier
    /// blocks' calibration so far. Nothing happens without such routers.
    pub fn calibrate_routing(&self, inputs: &[ModelInput]) -> Result<()> {
        let routers: Vec<_> = self
            .moe_layers()
            .into_iter()
            .map(|(_, m)| m.router())
            .filter(|r| r.observes_task_states())
            .collect();
        if routers.is_empty() {
            return Ok(());
        }
        routers.iter().for_each(|r| r.begin_calibration());
        let run = inputs
            .iter()
            .try_for_each(|input| tch::no_grad(|| self.forward(input, false)).map(|_| ()));
        routers.iter().for_each(|r| r.end_calibration());
        run
    }

    /// The encoder and the heads. `train` enables dropout, router noise and the training
    /// capacity. Reads back to the host once the task ids with each example's length (one
    /// `[2, B]` transfer: to check the ids, to count the rows of each task for the heads and
    /// the `per-task` routers) and once the size of the real-token index (`nonzero` of the
    /// padding mask, only when the batch has padding); each MoE layer then reads its
    /// per-expert counts (see `docs/architecture.md`). With a frozen-state memo attached
    /// ([`MultiTaskModel::attach_frozen_states`]) it also reads the ids, segment ids and mask
    /// once, to key the examples. Nothing else is read back or copied up.
    pub fn forward(&self, input: &ModelInput, train: bool) -> Result<ModelOutput> {
        let batch = self.prepare(input)?;
        let mut x = self.bottom(input, &batch, train)?;
        let mut aux_layers = Vec::new();
        let mut stats = Vec::new();
        let first = self.cfg.frozen_layers;
        for (i, block) in self.blocks.iter().enumerate().skip(first) {
            let out = block.forward(&x, batch.attend.as_ref(), &batch.rows, train)?;
            x = out.x;
            aux_layers.extend(out.aux);
            if let Some(s) = out.stats {
                stats.push((i, s));
            }
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward(&x);
        }
        let mut pooled = self.pool(&x, &batch.mask);
        if !self.tower.is_empty() {
            // One row per example: the tower's routers group them by task from the host ids.
            let groups = self
                .tower_routes_per_task
                .then(|| {
                    let mut counts = vec![0usize; self.heads.len()];
                    for &t in &batch.task_ids_host {
                        counts[t as usize] += 1;
                    }
                    TaskGroups::with_counts(input.task_ids, counts)
                })
                .transpose()?;
            for (j, block) in self.tower.iter().enumerate() {
                let out = block.forward(&pooled, input.task_ids, groups.as_ref(), train)?;
                pooled = out.x;
                aux_layers.extend(out.aux);
                if let Some(s) = out.stats {
                    stats.push((self.blocks.len() + j, s));
                }
            }
        }
        let logits = self.head_logits(&pooled, input.task_ids, &batch.task_ids_host, train)?;
        Ok(ModelOutput {
            logits,
            pooled,
            hidden: x,
            aux: AuxLosses::mean(&aux_layers),
            stats,
        })
    }

    /// What every forward pass needs before the first block: the padding mask (with the task
    /// token), the host copies of task ids and lengths, and the rows of the real tokens.
    fn prepare(&self, input: &ModelInput) -> Result<PreparedBatch> {
        let (b, _) = self.check(input)?;
        let type_ids = match input.token_type_ids {
            Some(t) => t.shallow_clone(),
            None => input.input_ids.zeros_like(),
        };
        let mut mask = input.attention_mask.to_kind(Kind::Bool);
        if self.embeddings.has_prefix() {
            let prefix = mask.ones_like().narrow(1, 0, 1);
            mask = Tensor::cat(&[prefix, mask], 1);
        }
        let lengths = mask.sum_dim_intlist(1, false, Kind::Int64);
        let host: Vec<i64> = Vec::try_from(&Tensor::cat(&[input.task_ids, &lengths], 0))?;
        let (task_ids_host, lengths_host) = host.split_at(b as usize);
        let num_tasks = self.heads.len();
        if let Some(bad) = task_ids_host
            .iter()
            .find(|&&t| t < 0 || t as usize >= num_tasks)
        {
            return Err(ModelError::Input(format!(
                "task id {bad} is out of range: the model has {num_tasks} tasks"
            )));
        }
        let l = mask.size()[1];
        let real: i64 = lengths_host.iter().sum();
        // Without padding, attention needs no mask and the feed-forward no gather / scatter.
        let padded = real < b * l;
        let attend = padded.then(|| mask.view([b, 1, 1, l]));
        let token_tasks = input
            .task_ids
            .unsqueeze(1)
            .expand([b, l], false)
            .reshape([-1]);
        let (task_ids, index) = match padded {
            true => {
                let index = mask.reshape([-1]).nonzero().squeeze_dim(1); // real tokens of B * L
                (token_tasks.index_select(0, &index), Some(index))
            }
            false => (token_tasks, None),
        };
        let groups = self
            .routes_per_task
            .then(|| {
                let mut counts = vec![0usize; num_tasks];
                for (&t, &n) in task_ids_host.iter().zip(lengths_host) {
                    counts[t as usize] += n as usize;
                }
                TaskGroups::with_counts(&task_ids, counts)
            })
            .transpose()?;
        Ok(PreparedBatch {
            type_ids,
            task_ids_host: task_ids_host.to_vec(),
            lengths_host: lengths_host.to_vec(),
            rows: TokenRows {
                task_ids,
                index,
                groups,
            },
            attend,
            mask,
        })
    }

    /// The states entering the first trained block: the embeddings, or (with
    /// `frozen_layers`) the frozen blocks' output ([`MultiTaskModel::frozen_output`]) plus,
    /// with `task_embedding = "added"`, the task's vector at every token. The task vector is
    /// added after the memo, so what the memo holds stays a function of the text alone.
    fn bottom(&self, input: &ModelInput, batch: &PreparedBatch, train: bool) -> Result<Tensor> {
        if self.cfg.frozen_layers == 0 {
            return Ok(self.embeddings.forward(
                input.input_ids,
                &batch.type_ids,
                input.task_ids,
                train,
            ));
        }
        let x = self.frozen_output(input, batch)?;
        Ok(self.embeddings.add_task_above(x, input.task_ids))
    }

    /// The frozen blocks' output (`frozen_layers > 0`), which sees no task: from the attached
    /// [`FrozenStates`] where it holds every example of the batch, else computed (in
    /// evaluation mode, without gradient) and stored there.
    fn frozen_output(&self, input: &ModelInput, batch: &PreparedBatch) -> Result<Tensor> {
        let frozen = self.cfg.frozen_layers;
        let compute = || -> Result<Tensor> {
            tch::no_grad(|| {
                let mut x = self.embeddings.forward(
                    input.input_ids,
                    &batch.type_ids,
                    input.task_ids,
                    false,
                );
                for block in &self.blocks[..frozen] {
                    x = block
                        .forward(&x, batch.attend.as_ref(), &batch.rows, false)?
                        .x;
                }
                Ok(x)
            })
        };
        let Some(memo) = &self.frozen_states else {
            return compute();
        };
        let Some(keys) = example_keys(input, &batch.type_ids, &batch.lengths_host)? else {
            return compute();
        };
        let l = batch.mask.size()[1];
        if let Some(x) = memo.batch(&keys, &batch.lengths_host, l) {
            return Ok(x);
        }
        let x = compute()?;
        for (i, (&key, &n)) in keys.iter().zip(&batch.lengths_host).enumerate() {
            if !memo.contains(key) {
                memo.insert(key, &x.get(i as i64).narrow(0, 0, n));
            }
        }
        Ok(x)
    }

    /// Attaches a memo of the frozen blocks' states (see [`FrozenStates`]): from now on every
    /// forward pass reads the states of the examples it holds and stores those of the others.
    /// The memo must be the one of this model's frozen weights (its
    /// [`FrozenStates::prefix_key`] equal to [`crate::frozen_prefix_key`] of them); a model
    /// without `frozen_layers` refuses it.
    pub fn attach_frozen_states(&mut self, memo: FrozenStates) -> Result<()> {
        if self.cfg.frozen_layers == 0 {
            return Err(ModelError::Input(
                "a frozen-state memo needs model.frozen_layers > 0".into(),
            ));
        }
        self.frozen_states = Some(memo);
        Ok(())
    }

    /// The attached memo of the frozen blocks' states, if any.
    pub fn frozen_states(&self) -> Option<&FrozenStates> {
        self.frozen_states.as_ref()
    }

    /// Computes the frozen blocks' states of every example of `inputs` the attached memo does
    /// not hold yet, and stores them; returns how many it added. Nothing runs above the frozen
    /// blocks. Without a memo, nothing happens.
    pub fn fill_frozen_states(&self, inputs: &[ModelInput]) -> Result<usize> {
        let Some(memo) = &self.frozen_states else {
            return Ok(0);
        };
        let before = memo.len();
        for input in inputs {
            let batch = self.prepare(input)?;
            let _states = self.frozen_output(input, &batch)?;
        }
        Ok(memo.len() - before)
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

    /// Runs each task's head on its examples only and assembles the padded logits: examples
    /// grouped by task on the device (a permutation, counts from the host ids), one slice per
    /// task present, and back to batch order. No host-to-device copy, no scatter.
    fn head_logits(
        &self,
        pooled: &Tensor,
        task_ids: &Tensor,
        task_ids_host: &[i64],
        train: bool,
    ) -> Result<Tensor> {
        let width = self.logits_width() as i64;
        let mut counts = vec![0usize; self.heads.len()];
        for &t in task_ids_host {
            counts[t as usize] += 1;
        }
        let groups = TaskGroups::with_counts(task_ids, counts)?;
        let pooled = groups.group(&pooled.to_kind(Kind::Float))?;
        let slices = pooled.split_with_sizes(
            groups
                .layout
                .counts
                .iter()
                .map(|&c| c as i64)
                .collect::<Vec<_>>(),
            0,
        );
        let mut outputs = Vec::new();
        for ((head, slice), &n) in self.heads.iter().zip(&slices).zip(&groups.layout.counts) {
            if n == 0 {
                continue;
            }
            let out = head.forward(slice, train).to_kind(Kind::Float);
            let missing = width - out.size()[1];
            outputs.push(match missing {
                0 => out,
                _ => Tensor::cat(
                    &[
                        out,
                        Tensor::full(
                            [n as i64, missing],
                            MISSING_CLASS_LOGIT,
                            (Kind::Float, pooled.device()),
                        ),
                    ],
                    1,
                ),
            });
        }
        Ok(groups.ungroup(&Tensor::cat(&outputs, 0))?)
    }
}
