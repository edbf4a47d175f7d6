//! The trainer's side of a data-parallel job: which rank this is, averaging the gradients,
//! summing the logged numbers, agreeing on what to resume.
//!
//! Every rank holds the whole model and optimizer and trains on its shard of each step's
//! global batch ([`taskmoe_data::Sampler::shard`]); after the backward pass the gradients are
//! averaged over the ranks ([`Distributed::sync_grads`]), so every rank applies the same update
//! and the replicas never drift apart. Rank 0 writes the logs and checkpoints.

use std::time::Duration;

use tch::{nn, Tensor};

use taskmoe_dist::{DistEnv, GradBuckets, ProcessGroup, Topology};

use crate::error::{invalid, Result, TrainError};
use crate::optim::AdamW;
use crate::run_config::RunConfig;

/// A rank's handle on the job (see the module docs).
#[derive(Debug)]
pub struct Distributed {
    world: ProcessGroup,
    topology: Topology,
    buckets: GradBuckets,
}

/// A distributed-layer error as a training error.
pub(crate) fn dist_err(e: taskmoe_dist::DistError) -> TrainError {
    invalid("distributed", e.to_string())
}

impl Distributed {
    /// Joins the job torchrun's variables describe (`None` without `WORLD_SIZE`: a
    /// single-process run). `train.expert_parallel` must divide the world size.
    pub fn from_env(cfg: &RunConfig) -> Result<Option<Self>> {
        match DistEnv::from_env().map_err(dist_err)? {
            Some(env) if env.world_size > 1 => Self::connect(&env, cfg).map(Some),
            _ => {
                if cfg.train.expert_parallel > 1 {
                    return Err(invalid(
                        "config",
                        format!(
                            "key `train.expert_parallel` = {} needs as many processes: launch \
                             with `cargo xtask train --nproc N` or torchrun (WORLD_SIZE is unset \
                             or 1)",
                            cfg.train.expert_parallel
                        ),
                    ));
                }
                Ok(None)
            }
        }
    }

    /// Connects to the job's other ranks (within `env.timeout`).
    pub fn connect(env: &DistEnv, cfg: &RunConfig) -> Result<Self> {
        let topology = Topology::new(env.world_size, cfg.train.expert_parallel, env.rank)
            .map_err(|e| invalid("config", format!("key `train.expert_parallel`: {e}")))?;
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
        let world = ProcessGroup::connect(env).map_err(dist_err)?;
        Ok(Distributed {
            world,
            topology,
            buckets: GradBuckets::default(),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.world.rank()
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
    pub fn sync_grads(&self, opt: &mut AdamW) -> Result<()> {
        let world = self.world_size() as f64;
        for flat in opt.flat_grads()? {
            let n = flat.numel() as i64;
            self.buckets
                .reduce(&self.world, &flat, 0, n, world)
                .map_err(dist_err)?;
        }
        Ok(())
    }

    /// Sums host numbers over the ranks.
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        self.world.all_reduce_f64(values).map_err(dist_err)
    }

    /// Copies rank 0's parameters to every rank (the replicas start equal even if something
    /// in their initialisation was not deterministic).
    pub fn broadcast_params(&self, vs: &nn::VarStore) -> Result<()> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, mut t) in vars {
            self.world.broadcast(&mut t, 0).map_err(dist_err)?;
        }
        Ok(())
    }

    /// Checks that every rank holds the same `value` of `what` (say, the step it resumes at).
    pub fn agree(&self, what: &str, value: u64) -> Result<()> {
        let all = self
            .world
            .all_gather(&Tensor::from_slice(&[value as i64]))
            .map_err(dist_err)?;
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

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<()> {
        self.world.barrier().map_err(dist_err)
    }
}
