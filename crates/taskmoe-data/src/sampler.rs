//! Mixed-task batches whose content is a pure function of `(seed, step)`.
//!
//! Slot `i` of the batch at step `s` draws its task from the mixture and its example uniformly
//! from that task's training examples (with replacement), using a generator keyed by
//! `(seed, s, i)` alone. Nothing depends on the batches asked for before, so a run resumed at
//! step `N` sees exactly the batches it would have seen, and [`SamplerState`] (seed, step and a
//! fingerprint of the mixture) is all a checkpoint needs to store.
//!
//! Sampling with replacement is what makes the order a pure function of the step; over a
//! run, task `t` still receives a fraction `p_t` of the slots, and each of its examples
//! `p_t / n_t` of them in expectation.

use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::error::{invalid, Result};
use crate::example::TaskData;
use crate::mixture::Mixture;
use crate::rng::{hash_key, hash_str, Rng};

/// The settings of a [`Sampler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerConfig {
    /// Examples per batch `B`.
    pub batch_size: usize,
    /// Padded sequence length `L`; every example must fit.
    pub seq_len: usize,
    /// Token id used for padding.
    pub pad_id: i64,
    /// The seed of the example order.
    pub seed: u64,
}

/// What a checkpoint stores to resume the data order: the next step to draw, and what must
/// not change between save and resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerState {
    /// The sampler's seed.
    pub seed: u64,
    /// The next step to draw.
    pub step: u64,
    /// A hash of the mixture (task names, ids, sizes, probabilities) and the batch settings;
    /// resuming with a different mixture is refused.
    pub fingerprint: u64,
}

/// Draws mixed-task batches from a [`Mixture`] over encoded training data.
#[derive(Debug, Clone)]
pub struct Sampler {
    mixture: Mixture,
    data: Vec<TaskData>,
    cumulative: Vec<f64>,
    config: SamplerConfig,
    fingerprint: u64,
}

/// Key word of the sampler's random stream, so that it never collides with other uses of one
/// seed (synthetic generation, subsampling).
fn stream() -> u64 {
    hash_str("sampler")
}

impl Sampler {
    /// A sampler over `data`, which holds one entry per mixture task (matched by task id), with
    /// as many examples as the mixture was told and none longer than `seq_len`.
    pub fn new(mixture: Mixture, data: Vec<TaskData>, config: SamplerConfig) -> Result<Self> {
        if config.batch_size == 0 || config.seq_len == 0 {
            return Err(invalid(
                "sampler",
                "batch_size and seq_len must be positive",
            ));
        }
        let mut ordered = Vec::with_capacity(mixture.tasks().len());
        for task in mixture.tasks() {
            let d = data
                .iter()
                .find(|d| d.task_id == task.task_id)
                .ok_or_else(|| invalid("sampler", format!("no data for task `{}`", task.name)))?;
            if d.examples.len() != task.num_examples || d.examples.is_empty() {
                return Err(invalid(
                    "sampler",
                    format!(
                        "task `{}` has {} examples, the mixture was built for {}",
                        task.name,
                        d.examples.len(),
                        task.num_examples
                    ),
                ));
            }
            if let Some(e) = d
                .examples
                .iter()
                .find(|e| e.input_ids.len() > config.seq_len)
            {
                return Err(invalid(
                    "sampler",
                    format!(
                        "example {} of `{}` has {} tokens, more than seq_len = {}",
                        e.id,
                        task.name,
                        e.input_ids.len(),
                        config.seq_len
                    ),
                ));
            }
            ordered.push(d.clone());
        }
        let mut acc = 0.0;
        let cumulative = mixture
            .probabilities()
            .iter()
            .map(|p| {
                acc += p;
                acc
            })
            .collect();
        let mut words = vec![
            config.seed,
            config.batch_size as u64,
            config.seq_len as u64,
            config.pad_id as u64,
        ];
        for (t, p) in mixture.tasks().iter().zip(mixture.probabilities()) {
            words.extend([
                hash_str(&t.name),
                t.task_id as u64,
                t.num_examples as u64,
                p.to_bits(),
            ]);
        }
        Ok(Sampler {
            fingerprint: hash_key(&words),
            mixture,
            data: ordered,
            cumulative,
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The mixture.
    pub fn mixture(&self) -> &Mixture {
        &self.mixture
    }

    /// The batch at `step`: the same for the same seed, mixture and step, whatever was drawn
    /// before.
    pub fn batch(&self, step: u64) -> Batch {
        let picks = (0..self.config.batch_size).map(|slot| self.pick(step, slot));
        Batch::from_examples(picks, self.config.seq_len, self.config.pad_id)
            .expect("lengths were checked in Sampler::new")
    }

    /// Rank `rank`'s shard of the batch at `step` in a job of `world` data-parallel ranks:
    /// slots `rank * B / world .. (rank + 1) * B / world` of [`Sampler::batch`]`(step)`, drawn
    /// directly (each slot's generator is keyed by the slot alone), so the shards of one step
    /// concatenate, in rank order, to the single-process batch. An error unless `world` divides
    /// the batch size.
    pub fn shard(&self, step: u64, rank: usize, world: usize) -> Result<Batch> {
        let b = self.config.batch_size;
        if world == 0 || rank >= world || b % world != 0 {
            return Err(invalid(
                "sampler",
                format!(
                    "rank {rank} of {world}: the batch size {b} must split evenly over the ranks"
                ),
            ));
        }
        let per = b / world;
        let picks = (rank * per..(rank + 1) * per).map(|slot| self.pick(step, slot));
        Ok(
            Batch::from_examples(picks, self.config.seq_len, self.config.pad_id)
                .expect("lengths were checked in Sampler::new"),
        )
    }

    /// Task id and example of slot `slot` at `step`.
    fn pick(&self, step: u64, slot: usize) -> (usize, &crate::example::EncodedExample) {
        let mut rng = Rng::from_key(&[self.config.seed, stream(), step, slot as u64]);
        let t = rng.categorical(&self.cumulative);
        let task = &self.data[t];
        let i = rng.below(task.examples.len() as u64) as usize;
        (task.task_id, &task.examples[i])
    }

    /// The state to store after drawing the batch of `step - 1` (the next step is `step`).
    pub fn state(&self, step: u64) -> SamplerState {
        SamplerState {
            seed: self.config.seed,
            step,
            fingerprint: self.fingerprint,
        }
    }

    /// Checks that `state` was saved by a sampler with this seed and mixture and returns the
    /// step to resume at.
    pub fn resume(&self, state: &SamplerState) -> Result<u64> {
        if state.seed != self.config.seed {
            return Err(invalid(
                "sampler",
                format!(
                    "state has seed {}, sampler {}",
                    state.seed, self.config.seed
                ),
            ));
        }
        if state.fingerprint != self.fingerprint {
            return Err(invalid(
                "sampler",
                "state was saved with a different mixture or batch settings",
            ));
        }
        Ok(state.step)
    }

    /// Batches from `step` on, with their step numbers.
    pub fn iter_from(&self, step: u64) -> impl Iterator<Item = (u64, Batch)> + '_ {
        (step..).map(move |s| (s, self.batch(s)))
    }
}

/// Every example of `data` once, in order, in batches of `batch_size` (the last may be
/// smaller): the evaluation order.
pub fn eval_batches(
    data: &TaskData,
    batch_size: usize,
    seq_len: usize,
    pad_id: i64,
) -> impl Iterator<Item = Result<Batch>> + '_ {
    data.examples.chunks(batch_size.max(1)).map(move |chunk| {
        Batch::from_examples(chunk.iter().map(|e| (data.task_id, e)), seq_len, pad_id)
    })
}
