//! The trainer's side of a data-parallel job: which rank this is, averaging the gradients,
//! summing the logged numbers, agreeing on what to resume.
//!
//! Every rank holds the whole model and optimizer and trains on its shard of each step's
//! global batch ([`taskmoe_data::Sampler::shard`]); after the backward pass the gradients are
//! averaged over the ranks ([`Distributed::sync_grads`]), so every rank applies the same update
//! and the replicas never drift apart. Rank 0 writes the logs and checkpoints; evaluations run
//! on every rank, each on its share of the batches, and rank 0 scores the gathered logits
//! ([`Distributed::evaluation_group`]).
//!
//! With `runtime.expert_parallel = P > 1`, each block of `P` consecutive ranks also forms an
//! expert-parallel group: every MoE layer runs its experts split over the group, exchanging
//! token rows by all-to-all ([`taskmoe_experts::ExpertExchange`]), and each rank stores only
//! its `E / P` experts and their AdamW moments ([`Distributed::shard_experts`]). Expert
//! gradients are averaged over the ranks that hold the same experts (the expert-data-parallel
//! group), everything else over all ranks; the clipping norm adds the shards' squares over the
//! expert-parallel group. Checkpoints gather the experts and their moments first, so they keep
//! the single-process layout and load anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tch::{nn, Device, Tensor};

use taskmoe_dist::{Backend, CollectiveStats, DistEnv, GradBuckets, ProcessGroup, Topology};
use taskmoe_experts::ExpertExchange;
use taskmoe_model::MultiTaskModel;

use crate::error::{invalid, Result};
use crate::run_config::RunConfig;
use taskmoe_optim::AdamW;

/// A rank's handle on the job (see the module docs).
#[derive(Debug)]
pub struct Distributed {
    world: ProcessGroup,
    /// The rank on this node (`LOCAL_RANK`): which GPU a CUDA run uses.
    local_rank: usize,
    /// Where this rank trains (`cuda:LOCAL_RANK` in a CUDA job).
    device: Device,
    topology: Topology,
    buckets: GradBuckets,
    experts: Option<Arc<ExpertGroup>>,
    /// The ranks that hold the same experts as this one, when there are several.
    expert_dp: Option<ProcessGroup>,
    /// The names of the parameters this rank stores a shard of (after
    /// [`Distributed::shard_experts`]).
    sharded: BTreeSet<String>,
    /// All ranks again, as the MoE layers' statistics group (global aux losses).
    statistics: Arc<ExpertGroup>,
    /// All ranks again, for evaluations shared among them.
    evaluation: Arc<ProcessGroup>,
}

/// The optimizer partition of the sharded expert parameters ([`AdamW::with_partitions`]).
const EXPERT_PARTITION: usize = 1;

/// An expert-parallel group as the MoE layers see it.
#[derive(Debug)]
pub struct ExpertGroup(pub ProcessGroup);

impl ExpertExchange for ExpertGroup {
    fn size(&self) -> usize {
        self.0.size()
    }

    fn rank(&self) -> usize {
        self.0.rank()
    }

    fn all_gather(&self, t: &Tensor) -> std::result::Result<Tensor, String> {
        self.0.all_gather(t).map_err(|e| e.to_string())
    }

    fn all_to_all(
        &self,
        t: &Tensor,
        out_splits: &[i64],
        in_splits: &[i64],
    ) -> std::result::Result<Tensor, String> {
        self.0
            .all_to_all(t, out_splits, in_splits)
            .map_err(|e| e.to_string())
    }

    fn all_reduce_sum(&self, t: &Tensor) -> std::result::Result<Tensor, String> {
        self.0.all_reduce_sum_autograd(t).map_err(|e| e.to_string())
    }
}

impl Distributed {
    /// Rank 0's evaluation score, on every rank of the job (collective): its name and direction
    /// from this rank's own `score`, which must be given exactly when rank 0's is.
    pub(crate) fn rank0_score(
        &self,
        score: Option<(String, f64, bool)>,
        step: u64,
    ) -> Result<Option<(String, f64, bool)>> {
        let mine = match (&score, self.is_rank0()) {
            (Some((_, value, _)), true) => [1.0, *value],
            _ => [0.0, 0.0],
        };
        let agreed = self.sum(&mine)?;
        match (score, agreed[0] > 0.0) {
            (Some((name, _, higher)), true) => Ok(Some((name, agreed[1], higher))),
            (None, false) => Ok(None),
            (score, _) => Err(invalid(
                "evaluation",
                format!(
                    "step {step}: rank {} {} a score and rank 0 {}: every rank's evaluation must \
                     name the same score (its value is taken from rank 0)",
                    self.rank(),
                    if score.is_some() {
                        "returned"
                    } else {
                        "returned no"
                    },
                    if agreed[0] > 0.0 { "did" } else { "did not" }
                ),
            )),
        }
    }

    /// Joins the job torchrun's variables describe (`None` without `WORLD_SIZE`: a
    /// single-process run). `runtime.expert_parallel` must divide the world size.
    pub fn from_env(cfg: &RunConfig) -> Result<Option<Self>> {
        match DistEnv::from_env()? {
            Some(env) if env.world_size > 1 => Self::connect(&env, cfg).map(Some),
            _ => {
                if cfg.runtime.expert_parallel > 1 {
                    return Err(invalid(
                        "config",
                        format!(
                            "key `runtime.expert_parallel` = {} needs as many processes: launch \
                             with `cargo xtask train --nproc N` or torchrun (WORLD_SIZE is unset \
                             or 1)",
                            cfg.runtime.expert_parallel
                        ),
                    ));
                }
                Ok(None)
            }
        }
    }

    /// Connects to the job's other ranks (within `env.timeout`), on NCCL when the run trains on
    /// CUDA (`runtime.device`; this rank's GPU is `cuda:LOCAL_RANK`) and on Gloo otherwise
    /// ([`Backend::for_device`]: `TASKMOE_DIST_BACKEND` overrides).
    pub fn connect(env: &DistEnv, cfg: &RunConfig) -> Result<Self> {
        let topology = Topology::new(env.world_size, cfg.runtime.expert_parallel, env.rank)
            .map_err(|e| invalid("config", format!("key `runtime.expert_parallel`: {e}")))?;
        if cfg.data.batch_size % env.world_size != 0 {
            return Err(invalid(
                "config",
                format!(
                    "key `data.batch_size` = {} (the global batch) must split evenly over {} \
                     ranks",
                    cfg.data.batch_size, env.world_size
                ),
            ));
        }
        let device = taskmoe_device::rank_device(
            taskmoe_device::select_named(&cfg.runtime.device)?,
            env.local_rank,
            tch::Cuda::device_count() as usize,
        )?;
        let backend = Backend::for_device(device)?;
        let world = ProcessGroup::connect_with(env, backend)?;
        let experts = if topology.ep > 1 {
            let name = format!("ep{}", topology.ep_group());
            let group = world
                .subgroup(&name, &topology.ep_ranks())?
                .expect("a rank is a member of its own expert-parallel group");
            Some(Arc::new(ExpertGroup(group)))
        } else {
            None
        };
        let expert_dp_ranks = topology.expert_dp_ranks();
        let expert_dp = if topology.ep > 1 && expert_dp_ranks.len() > 1 {
            let name = format!("edp{}", topology.ep_rank());
            world.subgroup(&name, &expert_dp_ranks)?
        } else {
            None
        };
        let all: Vec<usize> = (0..env.world_size).collect();
        let statistics = world
            .subgroup("statistics", &all)?
            .expect("every rank is in the world");
        let evaluation = world
            .subgroup("evaluation", &all)?
            .expect("every rank is in the world");
        Ok(Distributed {
            world,
            local_rank: env.local_rank,
            device,
            topology,
            buckets: GradBuckets::default(),
            experts,
            expert_dp,
            sharded: BTreeSet::new(),
            statistics: Arc::new(ExpertGroup(statistics)),
            evaluation: Arc::new(evaluation),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.world.rank()
    }

    /// This process's rank on its node (`LOCAL_RANK`).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// The device this rank trains on (`cuda:LOCAL_RANK` in a CUDA job).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The c10d backend of every group of the job.
    pub fn backend(&self) -> Backend {
        self.world.backend()
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world.size()
    }

    /// Whether this rank writes logs and checkpoints.
    pub fn is_rank0(&self) -> bool {
        self.rank() == 0
    }

    /// The world group.
    pub fn group(&self) -> &ProcessGroup {
        &self.world
    }

    /// All ranks, as a group of their own for evaluations shared among them (say with
    /// `taskmoe_eval::evaluate_sharded`): the trainer calls its evaluation on every rank, with
    /// the experts gathered.
    pub fn evaluation_group(&self) -> Arc<ProcessGroup> {
        self.evaluation.clone()
    }

    /// The data-parallel x expert-parallel layout.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// The bound on every collective.
    pub fn timeout(&self) -> Duration {
        self.world.timeout()
    }

    /// Averages the gradients over the ranks, in place in the optimizer's flat buffers (a few
    /// bucketed all-reduces; parameters a rank's shard did not reach count as zero there).
    ///
    /// The sharded experts' buffers are summed over the expert-data-parallel group only (the
    /// ranks holding the same experts; their owners' gradients already hold the rows of the
    /// whole expert-parallel group) and divided by the world size too, which is the same
    /// average as over a world in which every rank held every expert.
    pub fn sync_grads(&self, opt: &mut AdamW) -> Result<()> {
        let world = self.world_size() as f64;
        for (partition, flat) in opt.flat_grads_by_partition()? {
            let n = flat.numel() as i64;
            let group = match partition {
                EXPERT_PARTITION => self.expert_dp.as_ref(),
                _ => Some(&self.world),
            };
            match group {
                Some(group) => {
                    self.buckets.reduce(group, &flat, 0, n, world)?;
                }
                None => tch::no_grad(|| {
                    let _ = flat.shallow_clone().g_div_scalar_(world);
                }),
            }
        }
        Ok(())
    }

    /// The L2 norm of the whole model's averaged gradients (call after
    /// [`Distributed::sync_grads`]): the replicated parameters' squares are the same on every
    /// rank, the sharded experts' are summed over the expert-parallel group.
    pub fn grad_norm(&self, opt: &mut AdamW) -> Result<f64> {
        let sums = opt.grad_square_sums()?;
        let experts = sums.get(&EXPERT_PARTITION).copied().unwrap_or(0.0);
        let others: f64 = sums
            .iter()
            .filter(|(p, _)| **p != EXPERT_PARTITION)
            .map(|(_, v)| v)
            .sum();
        let experts = match (&self.experts, self.sharded.is_empty()) {
            (Some(group), false) => group.0.all_reduce_f64(&[experts])?[0],
            _ => experts,
        };
        Ok((others + experts).sqrt())
    }

    /// Whether the MoE layers' experts are sharded over an expert-parallel group.
    pub fn shards_experts(&self) -> bool {
        !self.sharded.is_empty()
    }

    /// The optimizer partition of parameter `name` (sharded experts apart from the rest).
    pub fn partition(&self, name: &str) -> usize {
        match self.sharded.contains(name) {
            true => EXPERT_PARTITION,
            false => 0,
        }
    }

    /// Keeps only this rank's share of every MoE layer's experts (with
    /// `runtime.expert_parallel > 1`; nothing otherwise), remembering which parameters of `vs`
    /// are sharded ([`Distributed::partition`]). Build the optimizer afterwards.
    pub fn shard_experts(&mut self, model: &MultiTaskModel, vs: &nn::VarStore) -> Result<()> {
        if self.experts.is_none() {
            return Ok(());
        }
        let vars = vs.variables();
        for (block, layer) in model.moe_layers() {
            let bank = layer.experts().ffn().ok_or_else(|| {
                invalid(
                    "config",
                    "key `runtime.expert_parallel`: LoRA experts are not sharded over ranks",
                )
            })?;
            let ptrs: Vec<usize> = bank
                .params()
                .iter()
                .map(|t| t.data_ptr() as usize)
                .collect();
            let names: Vec<&String> = vars
                .iter()
                .filter(|(_, t)| ptrs.contains(&(t.data_ptr() as usize)))
                .map(|(n, _)| n)
                .collect();
            if names.len() != ptrs.len() {
                return Err(invalid(
                    "distributed",
                    format!(
                        "MoE block {block}: found {} of the 4 expert parameters in the \
                         VarStore",
                        names.len()
                    ),
                ));
            }
            self.sharded.extend(names.into_iter().cloned());
            layer
                .shard_experts()
                .map_err(|e| invalid("distributed", format!("MoE block {block}: {e}")))?;
        }
        Ok(())
    }

    /// Gathers (`gathered = true`) or re-shards every MoE layer's experts: collective over the
    /// expert-parallel group. Gathered, every rank holds all experts (a checkpoint, a shared
    /// evaluation); re-sharded, each returns to its shard (refreshed from the
    /// gathered values), which the optimizer updates.
    pub fn set_experts_gathered(&self, model: &MultiTaskModel, gathered: bool) -> Result<()> {
        if !self.shards_experts() {
            return Ok(());
        }
        for (block, layer) in model.moe_layers() {
            let done = match gathered {
                true => layer.gather_experts(),
                false => layer.shard_experts(),
            };
            done.map_err(|e| invalid("distributed", format!("MoE block {block}: {e}")))?;
        }
        Ok(())
    }

    /// The optimizer's state in the single-process layout, for rank 0 to write (collective
    /// over the expert-parallel group of rank 0; call it on every rank). Rank 0 gets the
    /// sharded experts' moments gathered from its group, the rest as they are; the other ranks
    /// get an empty list. Only rank 0 ever holds the gathered moments.
    pub fn gathered_state(&self, opt: &AdamW) -> Result<Vec<(String, Tensor)>> {
        let Some(group) = self.experts.as_ref().filter(|_| self.shards_experts()) else {
            return match self.is_rank0() {
                true => Ok(opt.state_tensors()?),
                false => Ok(Vec::new()),
            };
        };
        if self.topology.ep_group() != 0 {
            return Ok(Vec::new()); // rank 0's group holds every expert already
        }
        let mut state = opt.state_tensors()?;
        for (name, t) in &mut state {
            if self.sharded_moment(name) {
                if let Some(whole) = group.0.gather_rows(t, 0)? {
                    *t = whole;
                }
            }
        }
        Ok(match self.is_rank0() {
            true => state,
            false => Vec::new(),
        })
    }

    /// This rank's share of optimizer state in the single-process layout (as
    /// [`Distributed::gathered_state`] writes it): the sharded experts' moments narrowed to
    /// this rank's experts. `origin` names the state's source in errors.
    pub fn shard_state(
        &self,
        state: Vec<(String, Tensor)>,
        origin: &Path,
    ) -> Result<BTreeMap<String, Tensor>> {
        let Some(group) = self.experts.as_ref().filter(|_| self.shards_experts()) else {
            return Ok(state.into_iter().collect());
        };
        let (p, me) = (group.size() as i64, group.rank() as i64);
        let mut out = BTreeMap::new();
        for (name, t) in state {
            let t = if self.sharded_moment(&name) {
                let e = t.size().first().copied().unwrap_or(0);
                if e % p != 0 {
                    return Err(invalid(
                        "resume",
                        format!(
                            "{}: `{name}` has {e} experts, which do not split over {p} ranks",
                            origin.display()
                        ),
                    ));
                }
                t.narrow(0, me * (e / p), e / p).contiguous()
            } else {
                t
            };
            out.insert(name, t);
        }
        Ok(out)
    }

    /// Whether a state tensor's name is a moment of a sharded parameter.
    fn sharded_moment(&self, name: &str) -> bool {
        [
            taskmoe_optim::EXP_AVG_PREFIX,
            taskmoe_optim::EXP_AVG_SQ_PREFIX,
        ]
        .iter()
        .any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(|param| self.sharded.contains(param))
        })
    }

    /// Sums host numbers over the ranks.
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        Ok(self.world.all_reduce_f64(values)?)
    }

    /// Copies rank 0's parameters to every rank (the replicas start equal even if something
    /// in their initialisation was not deterministic).
    pub fn broadcast_params(&self, vs: &nn::VarStore) -> Result<()> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, mut t) in vars {
            self.world.broadcast(&mut t, 0)?;
        }
        Ok(())
    }

    /// Checks that every rank holds the same `value` of `what` (say, the step it resumes at).
    pub fn agree(&self, what: &str, value: u64) -> Result<()> {
        let all = self
            .world
            .all_gather(&Tensor::from_slice(&[value as i64]))?;
        let all: Vec<i64> = Vec::try_from(all.reshape([-1]))?;
        if all.iter().any(|&v| v != all[0]) {
            return Err(invalid(
                "distributed",
                format!(
                    "rank {}: the ranks disagree on {what}: {all:?} (rank order); do all ranks \
                     see the same run folder?",
                    self.rank()
                ),
            ));
        }
        Ok(())
    }

    /// Makes every MoE layer of `model` compute its aux losses over all ranks' tokens, and
    /// splits its experts over this rank's expert-parallel group (with
    /// `runtime.expert_parallel > 1`).
    pub fn attach_experts(&self, model: &MultiTaskModel) -> Result<()> {
        for (block, layer) in model.moe_layers() {
            let err = |e: taskmoe_experts::ExpertsError| {
                invalid("config", format!("MoE block {block}: {e}"))
            };
            layer
                .set_statistics_group(self.statistics.clone())
                .map_err(err)?;
            if let Some(group) = &self.experts {
                layer.set_expert_parallel(group.clone()).map_err(err)?;
            }
        }
        Ok(())
    }

    /// Collectives so far: the world group's all-reduces (gradients, logs), all-to-alls and
    /// others, then the expert-parallel group's, if any, the statistics group's and the
    /// evaluation group's.
    pub fn stats(&self) -> Vec<(String, [CollectiveStats; 3])> {
        let mut out = vec![(self.world.name().to_string(), self.world.stats())];
        if let Some(g) = &self.experts {
            out.push((g.0.name().to_string(), g.0.stats()));
        }
        out.push((
            self.statistics.0.name().to_string(),
            self.statistics.0.stats(),
        ));
        out.push((self.evaluation.name().to_string(), self.evaluation.stats()));
        out
    }

    /// [`Distributed::stats`] as one line per group, for the end of a run.
    pub fn stats_summary(&self) -> String {
        let mut lines = Vec::new();
        for (name, [reduce, a2a, other]) in self.stats() {
            let mb = |s: &CollectiveStats| s.bytes as f64 / 1e6;
            lines.push(format!(
                "rank {} group {name}: all_reduce {} calls {:.1} MB {:.2} s; all_to_all {} calls \
                 {:.1} MB sent {:.2} s; other {} calls {:.2} s",
                self.rank(),
                reduce.calls,
                mb(&reduce),
                reduce.seconds,
                a2a.calls,
                mb(&a2a),
                a2a.seconds,
                other.calls,
                other.seconds
            ));
        }
        lines.join("\n")
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<()> {
        Ok(self.world.barrier()?)
    }
}
