//! The sparse MoE feed-forward layer: router + dispatch + experts + combine.

use std::sync::{Arc, Mutex, OnceLock};

use tch::{nn, Kind, Tensor};

use taskmoe_kernels::stats::{mean_gate_entropy, task_expert_counts, task_gate_sums, RoutingStats};
use taskmoe_kernels::{combine, count_ids, permute, DispatchPlan, GroupLayout, TaskGroups};
use taskmoe_router::{AuxLosses, ExpertChoice, Router, RouterKind};

use crate::bank::ExpertBank;
use crate::config::{ExpertKind, MoeConfig};
use crate::dense::DenseFfn;
use crate::error::{ExpertsError, Result};
use crate::expert_parallel::{self, ExpertExchange};
use crate::experts::Experts;
use crate::lora::LoraExpertBank;

/// What one MoE layer did with a batch, for logs and routing analysis.
#[derive(Debug)]
pub struct LayerStats {
    /// Per-expert load, dropped fraction and load entropy.
    pub routing: RoutingStats,
    /// Routing slots per task and expert (before capacity), on the device. `[tasks, E]` int64
    pub task_expert: Tensor,
    /// Tokens per task whose first choice (largest combine weight) is each expert, on the
    /// device: the routing the family measures compare, the same for top-1 routers as
    /// `task_expert` and meaningful for dense mixtures (`mmoe`, `cgc`, soft `dselect-k`), where
    /// every token has a slot at every expert. In evaluation only (`None` in training, which
    /// never reads it). `[tasks, E]` int64
    pub task_first_choice: Option<Tensor>,
    /// Mean router probability of each token's first choice, on the device (fp32 scalar): the
    /// combine weight of a top-1 Switch (raw) gate, near `1 / E` while the router is
    /// undecided; the router's confidence under straight-through or renormalised gates.
    pub top1_prob: Tensor,
    /// Mean gate entropy of the router over the tokens in nats, on the device (fp32 scalar;
    /// `taskmoe_kernels::stats::mean_gate_entropy`): `ln E` while the gates are undecided.
    pub gate_entropy: Tensor,
    /// In evaluation only (`None` in training, which never reads it): per task, the sums of its
    /// tokens' gate entropy and top-1 margin and its token count, on the device
    /// (`taskmoe_kernels::stats::task_gate_sums`). `[tasks, 3]` fp32
    pub gate_sums: Option<Tensor>,
}

/// The result of a MoE layer's forward pass.
#[derive(Debug)]
pub struct MoeOutput {
    /// The layer output, in the dtype of the input. `[T, d]`
    pub y: Tensor,
    /// The unweighted aux losses of this layer.
    pub aux: AuxLosses,
    /// Routing statistics.
    pub stats: LayerStats,
}

/// A sparse Mixture-of-Experts FFN ([Shazeer et al. 2017](https://arxiv.org/abs/1701.06538)).
///
/// For tokens `x [T, d]` with task ids `[T]`:
///
/// 1. the [`Router`] picks `k` experts and weights per token (fp32);
/// 2. a `DispatchPlan` orders the slots by expert and applies the capacity (training or
///    evaluation factor);
/// 3. `permute` gathers the rows, the experts ([`ExpertBank`] or [`LoraExpertBank`]) run each
///    expert on its contiguous slice;
///    (with expert parallelism, the all-to-all exchange of rows sits between these two steps);
/// 4. `combine` sums each token's expert outputs with its weights; a token whose slots were all
///    dropped gets zero here and keeps only the residual of the surrounding block;
/// 5. with shared experts, their dense output is added for every token.
///
/// Parameters live under `router.*`, `experts.{w1,b1,w2,b2}` (FFN experts) or
/// `experts.base.{w1,b1,w2,b2}` and `experts.lora_{a1,b1,a2,b2}` (LoRA experts), and
/// `shared_expert.{intermediate,output}.dense.*`.
#[derive(Debug)]
pub struct MoeLayer {
    cfg: MoeConfig,
    router: Router,
    experts: Experts,
    shared: Option<DenseFfn>,
    /// Set once for expert parallelism: the experts run split over this group's ranks.
    exchange: OnceLock<Arc<dyn ExpertExchange>>,
    /// Set once for data parallelism: the aux losses are computed over this group's tokens.
    statistics: OnceLock<Arc<dyn ExpertExchange>>,
    /// This rank's shard storage while the experts are gathered ([`MoeLayer::gather_experts`]),
    /// to return to (an optimizer's flat buffers may hold it).
    kept_shard: Mutex<Option<[Tensor; 4]>>,
}

/// The dense sub-network one task uses under `task-level` routing: its `k` experts with their
/// fixed weights (plus the shared experts, if any), extracted from a [`MoeLayer`].
#[derive(Debug)]
pub struct TaskSubnetwork {
    /// Expert ids in the layer, best first.
    pub experts: Vec<usize>,
    /// Combine weight of each expert.
    pub weights: Vec<f64>,
    /// The selected experts' weights (copies), in the order of `experts`.
    pub bank: ExpertBank,
}

impl MoeLayer {
    /// Creates the layer under `p` for `d_model`-wide tokens of `num_tasks` tasks.
    pub fn new(p: nn::Path, cfg: &MoeConfig, d_model: usize, num_tasks: usize) -> Result<Self> {
        cfg.validate("moe")?;
        let router = Router::new(&p / "router", &cfg.router, d_model, num_tasks)?;
        let experts = match cfg.expert_kind {
            ExpertKind::Ffn => Experts::Ffn(ExpertBank::new(
                &p / "experts",
                cfg.router.num_experts,
                d_model,
                cfg.d_ff,
                cfg.expert_dropout,
            )),
            ExpertKind::Lora => Experts::Lora(LoraExpertBank::new(
                &p / "experts",
                cfg.router.num_experts,
                d_model,
                cfg.d_ff,
                cfg.lora_rank,
                cfg.lora_scale(),
                cfg.expert_dropout,
            )?),
        };
        let shared = (cfg.num_shared_experts > 0)
            .then(|| {
                DenseFfn::new(
                    &p / "shared_expert",
                    d_model,
                    cfg.num_shared_experts * cfg.d_ff,
                    cfg.expert_dropout,
                )
            })
            .transpose()?;
        Ok(MoeLayer {
            cfg: cfg.clone(),
            router,
            experts,
            shared,
            exchange: OnceLock::new(),
            statistics: OnceLock::new(),
            kept_shard: Mutex::new(None),
        })
    }

    /// Computes the load-balance and mutual-information losses over the tokens of all ranks of
    /// `group` (in training), instead of this rank's alone: with data parallelism the group is
    /// the world, and the aux losses are the global batch's. Without it, and with expert
    /// parallelism, they cover the expert-parallel group's tokens. An error if already set.
    pub fn set_statistics_group(&self, group: Arc<dyn ExpertExchange>) -> Result<()> {
        self.statistics
            .set(group)
            .map_err(|_| ExpertsError::Input("the MoE layer already has a statistics group".into()))
    }

    /// Splits the experts over the ranks of `exchange` from now on (expert parallelism: see
    /// `expert_parallel.rs`): each rank runs only its `E / P` on the rows the others send it,
    /// in training. Every rank still stores all `E` experts' weights until
    /// [`MoeLayer::shard_experts`]; while it does, evaluation (`train = false`) runs all experts
    /// locally, with no collective. An error when `E` does not split evenly or the layer
    /// already has a group, and for LoRA experts (their frozen base FFN is shared by all).
    pub fn set_expert_parallel(&self, exchange: Arc<dyn ExpertExchange>) -> Result<()> {
        let (e, p) = (self.cfg.router.num_experts, exchange.size());
        if self.experts.lora().is_some() {
            return Err(ExpertsError::Config {
                key: "runtime.expert_parallel".into(),
                message: "LoRA experts (model.moe.expert_kind = \"lora\") run on every rank; \
                          expert parallelism needs FFN experts"
                    .into(),
            });
        }
        if p == 0 || e % p != 0 {
            return Err(ExpertsError::Config {
                key: "runtime.expert_parallel".into(),
                message: format!("{e} experts do not split evenly over {p} ranks"),
            });
        }
        self.exchange.set(exchange).map_err(|_| {
            ExpertsError::Input("the MoE layer already has an expert-parallel group".into())
        })
    }

    /// Whether this rank stores only its share of the experts ([`MoeLayer::shard_experts`]).
    pub fn experts_sharded(&self) -> bool {
        self.experts.num_experts() < self.cfg.router.num_experts
    }

    /// The FFN experts (expert parallelism shards them; LoRA experts never are).
    fn ffn_bank(&self) -> Result<&ExpertBank> {
        self.experts.ffn().ok_or_else(|| {
            ExpertsError::Input("expert parallelism needs FFN experts, these are LoRA".into())
        })
    }

    /// Keeps only this rank's `E / P` experts in memory (the expert-parallel group must be
    /// set): the bank's parameters shrink in place to `[E / P, ...]`, so the `VarStore` and an
    /// optimizer built afterwards hold the shard alone. From then on the layer runs through
    /// the group in evaluation too, so every rank of the group must run the same forward
    /// calls. After [`MoeLayer::gather_experts`] it returns to the storage it kept (refreshed
    /// from the gathered values). Nothing happens when already sharded.
    pub fn shard_experts(&self) -> Result<()> {
        let ex = self.exchange.get().ok_or_else(|| {
            ExpertsError::Input("sharding the experts needs an expert-parallel group".into())
        })?;
        if self.experts_sharded() {
            return Ok(());
        }
        let bank = self.ffn_bank()?;
        let shard = expert_parallel::shard_of(bank, ex.as_ref())?;
        let kept = self.kept_shard.lock().expect("not poisoned").take();
        match kept {
            Some(kept) => {
                let _guard = tch::no_grad_guard();
                for (k, s) in kept.iter().zip(&shard) {
                    k.shallow_clone().f_copy_(s)?;
                }
                bank.set_storage(kept)
            }
            None => bank.set_storage(shard),
        }
    }

    /// Makes every rank of the expert-parallel group hold all `E` experts again (one
    /// all-gather per parameter, every rank of the group must call it), for a checkpoint in
    /// the single-process layout or an evaluation on one rank; [`MoeLayer::shard_experts`]
    /// returns to the shard. Nothing happens when not sharded.
    pub fn gather_experts(&self) -> Result<()> {
        if !self.experts_sharded() {
            return Ok(());
        }
        let ex = self
            .exchange
            .get()
            .expect("a sharded layer has its expert-parallel group");
        let bank = self.ffn_bank()?;
        let full = expert_parallel::gathered(bank, ex.as_ref())?;
        // Other handles on the same storage (detached, so set_storage leaves them alone).
        *self.kept_shard.lock().expect("not poisoned") = Some(bank.params().map(Tensor::detach));
        bank.set_storage(full)
    }

    /// The configuration.
    pub fn config(&self) -> &MoeConfig {
        &self.cfg
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The routed experts.
    pub fn experts(&self) -> &Experts {
        &self.experts
    }

    /// The always-on shared experts, if configured.
    pub fn shared(&self) -> Option<&DenseFfn> {
        self.shared.as_ref()
    }

    /// Routes, runs and combines. `train` selects the training capacity, router noise and
    /// dropout; evaluation is deterministic.
    ///
    /// # Shapes
    /// `x: [T, d]`, `task_ids: [T]` int64 -> `y: [T, d]`.
    pub fn forward(&self, x: &Tensor, task_ids: &Tensor, train: bool) -> Result<MoeOutput> {
        self.forward_grouped(x, task_ids, None, train)
    }

    /// [`MoeLayer::forward`] with the tokens grouped by task (see
    /// [`Router::forward_grouped`]: the `per-task` router uses them, and without them groups
    /// the ids itself).
    ///
    /// # Shapes
    /// `x: [T, d]`, `task_ids: [T]` int64, groups over `T` rows -> `y: [T, d]`.
    pub fn forward_grouped(
        &self,
        x: &Tensor,
        task_ids: &Tensor,
        groups: Option<&TaskGroups>,
        train: bool,
    ) -> Result<MoeOutput> {
        let cfg = &self.cfg.router;
        if self.router.observes_task_states() && (train || self.router.is_calibrating()) {
            self.observe_task_states(x, task_ids, train)?;
        }
        let decision = self.router.forward_grouped(x, task_ids, groups, train)?;
        let num_tasks = self.router.num_tasks();
        let (mut y, routing, task_expert, task_first_choice) = match &decision.expert_choice {
            Some(choice) => self.run_expert_choice(x, task_ids, choice, train)?,
            None => {
                let plan = DispatchPlan::new(
                    &decision.routed.experts,
                    cfg.num_experts,
                    cfg.capacity(train),
                )?;
                // (rows, d), grouped by expert
                let rows = permute(x, &plan)?;
                let out_rows = self.run_experts(&rows, &plan.layout, train)?;
                let y = combine(&out_rows, &decision.routed.weights, &plan)?.to_kind(x.kind());
                let count = |experts: &Tensor| {
                    task_expert_counts(experts, task_ids, num_tasks, cfg.num_experts)
                };
                let task_expert = count(&decision.routed.experts)?;
                let first = match train {
                    true => None,
                    false => Some(count(&decision.routed.experts.narrow(1, 0, 1))?),
                };
                (y, RoutingStats::from_plan(&plan), task_expert, first)
            }
        };
        if let Some(shared) = &self.shared {
            y += shared.forward(x, train);
        }
        let mut aux =
            AuxLosses::compute_balancing(&decision, task_ids, num_tasks, cfg.balance_over)?;
        let statistics = self.statistics.get().or(self.exchange.get());
        // The routing slots per expert that bias balancing moves by: the group's when there is
        // one (they come with its aux all-reduce), else this batch's.
        let mut group_slots = None;
        if let Some(ex) = statistics.filter(|_| train) {
            // The load balance and mutual information of the whole group's tokens.
            let (group_aux, slots) = expert_parallel::group_aux(
                ex.as_ref(),
                &decision.routed.probs,
                &decision.routed.experts,
                task_ids,
                num_tasks,
                cfg.balance_over,
                aux,
            )?;
            aux = group_aux;
            if decision.expert_choice.is_some() {
                // Balanced by construction (as AuxLosses::compute_balancing has it).
                aux.load_balance = aux.load_balance.zeros_like();
            }
            group_slots = Some(slots);
        }
        if train && self.router.expert_bias().is_some() {
            let slots = match group_slots {
                Some(slots) => slots,
                None => count_ids("expert bias", &decision.routed.experts, cfg.num_experts)?
                    .to_kind(Kind::Float),
            };
            self.router.update_expert_bias(&slots)?;
        }
        let top1_prob = tch::no_grad(|| {
            decision
                .routed
                .probs
                .amax([-1].as_slice(), false)
                .mean(Kind::Float)
        });
        let gate_entropy = tch::no_grad(|| mean_gate_entropy(&decision.routed.probs))?;
        let gate_sums = match train {
            true => None,
            false => Some(tch::no_grad(|| {
                task_gate_sums(&decision.routed.probs, task_ids, num_tasks)
            })?),
        };
        Ok(MoeOutput {
            y,
            aux,
            stats: LayerStats {
                routing,
                task_expert,
                task_first_choice,
                top1_prob,
                gate_entropy,
                gate_sums,
            },
        })
    }

    /// Gives a `task-representation` router this batch's per-task sums and counts of the token
    /// states, summed over the statistics group's ranks in training (so every rank's states
    /// stay equal), before it routes.
    fn observe_task_states(&self, x: &Tensor, task_ids: &Tensor, train: bool) -> Result<()> {
        let tasks = self.router.num_tasks() as i64;
        let x = x.detach().to_kind(Kind::Float);
        let d = x.size()[1];
        let sums =
            Tensor::zeros([tasks, d], (Kind::Float, x.device())).f_index_add(0, task_ids, &x)?;
        let counts = Tensor::zeros([tasks], (Kind::Float, x.device())).f_index_add(
            0,
            task_ids,
            &Tensor::ones([x.size()[0]], (Kind::Float, x.device())),
        )?;
        let (sums, counts) = match self
            .statistics
            .get()
            .or(self.exchange.get())
            .filter(|_| train)
        {
            Some(ex) => {
                let packed = Tensor::cat(&[sums.reshape([-1]), counts], 0);
                let summed = ex.all_reduce_sum(&packed).map_err(|err| {
                    ExpertsError::Input(format!("all_reduce of the task states: {err}"))
                })?;
                (
                    summed.narrow(0, 0, tasks * d).reshape([tasks, d]),
                    summed.narrow(0, tasks * d, tasks),
                )
            }
            None => (sums, counts),
        };
        Ok(self.router.observe_task_states(&sums, &counts)?)
    }

    /// The experts over `rows` grouped by `layout`: on this rank, or split over the
    /// expert-parallel group. Evaluation runs every expert here while this rank stores all of
    /// them, so ranks that share an evaluation, each on other batches, never wait for one
    /// another.
    fn run_experts(&self, rows: &Tensor, layout: &GroupLayout, train: bool) -> Result<Tensor> {
        let exchange = self
            .exchange
            .get()
            .filter(|_| train || self.experts_sharded());
        match exchange {
            Some(ex) => {
                expert_parallel::forward(self.ffn_bank()?, ex.as_ref(), rows, &layout.counts, train)
            }
            None => self.experts.forward_layout(rows, layout, train),
        }
    }

    /// Expert choice: each expert runs on the tokens it took, and each token sums its takers'
    /// outputs by their weights (0 for a token no expert took). Returns the output, the
    /// routing statistics (equal loads; "dropped" is the share of tokens no expert took) and
    /// the task x expert slot counts, which serve as first choices too in evaluation (a token
    /// counts once per expert that took it). Reads one count back (the tokens taken), for the
    /// "dropped" statistic; the layout is built on the device.
    fn run_expert_choice(
        &self,
        x: &Tensor,
        task_ids: &Tensor,
        choice: &ExpertChoice,
        train: bool,
    ) -> Result<(Tensor, RoutingStats, Tensor, Option<Tensor>)> {
        let e = self.cfg.router.num_experts;
        let rows = x.f_index_select(0, &choice.tokens)?;
        // Every expert takes the same number of rows: no host counts to copy up.
        let per_expert = Tensor::full(
            [e as i64],
            choice.per_expert as i64,
            (Kind::Int64, x.device()),
        );
        let layout = GroupLayout::from_device(vec![choice.per_expert; e], &per_expert)?;
        let out_rows = self.run_experts(&rows, &layout, train)?;
        let weighted = out_rows.to_kind(Kind::Float) * choice.weights.unsqueeze(1);
        let y = Tensor::zeros(x.size(), (Kind::Float, x.device()))
            .f_index_add(0, &choice.tokens, &weighted)?
            .to_kind(x.kind());
        let tokens = x.size()[0];
        let taken = tch::no_grad(|| {
            Tensor::zeros([tokens], (Kind::Int64, x.device()))
                .index_fill(0, &choice.tokens, 1)
                .sum(Kind::Int64)
                .int64_value(&[])
        });
        let load = vec![1.0 / e as f64; e];
        let routing = RoutingStats {
            load_entropy: taskmoe_kernels::stats::entropy(&load),
            dropped_fraction: 1.0 - taken as f64 / tokens.max(1) as f64,
            load,
        };
        // The layout's row groups are the slots' experts.
        let slot_experts = layout.row_group.unsqueeze(1);
        let slot_tasks = task_ids.f_index_select(0, &choice.tokens)?;
        let counts = task_expert_counts(&slot_experts, &slot_tasks, self.router.num_tasks(), e)?;
        let first = (!train).then(|| counts.shallow_clone());
        Ok((y, routing, counts, first))
    }

    /// Extracts the sub-network `task` uses under `task-level` routing (evaluation mode, so no
    /// noise); an error for other router kinds, whose experts depend on the token. LoRA
    /// experts come merged into full FFNs ([`LoraExpertBank::merged`]).
    pub fn task_subnetwork(&self, task: usize) -> Result<TaskSubnetwork> {
        if self.experts_sharded() {
            return Err(ExpertsError::Input(
                "the experts are sharded over ranks: gather them first".into(),
            ));
        }
        if self.cfg.router.kind != RouterKind::TaskLevel {
            return Err(ExpertsError::Input(format!(
                "task sub-networks exist only for task-level routing, this layer routes with \
                 {:?}",
                self.cfg.router.kind
            )));
        }
        let bank = self.experts.as_ffn()?;
        let ids = Tensor::from_slice(&[task as i64]).to_device(bank.w1.device());
        let probe = Tensor::zeros([1, bank.w1.size()[1]], (Kind::Float, bank.w1.device()));
        let decision = tch::no_grad(|| self.router.forward(&probe, &ids, false))?;
        let experts: Vec<i64> = Vec::try_from(&decision.routed.experts.reshape([-1]))?;
        let weights: Vec<f64> =
            Vec::try_from(&decision.routed.weights.reshape([-1]).to_kind(Kind::Double))?;
        let index = Tensor::from_slice(&experts).to_device(bank.w1.device());
        let take = |t: &Tensor| tch::no_grad(|| t.index_select(0, &index).copy());
        Ok(TaskSubnetwork {
            experts: experts.iter().map(|&e| e as usize).collect(),
            weights,
            bank: ExpertBank::from_weights(
                take(&bank.w1),
                take(&bank.b1),
                take(&bank.w2),
                take(&bank.b2),
                0.0,
            )?,
        })
    }
}

impl TaskSubnetwork {
    /// `sum_j w_j expert_j(x)`: the layer's evaluation output for this task's tokens, less the
    /// layer's shared experts (add `layer.shared()`'s output when it has them).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.size()[0] as usize;
        let mut y = x.zeros_like();
        for (j, &w) in self.weights.iter().enumerate() {
            let mut counts = vec![0; self.experts.len()];
            counts[j] = t;
            y += self.bank.forward(x, &counts, false)? * w;
        }
        Ok(y)
    }
}
