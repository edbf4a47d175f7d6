//! Task mixtures (seqio's rates), low-resource subsampling and k-shot splits.
//!
//! A mixture assigns each task a *rate*; a task is sampled with probability
//! `rate / sum(rates)`. As in seqio (`seqio.utils.rate_num_examples`):
//!
//! - [`MixtureSpec::Explicit`]: the rates are given;
//! - [`MixtureSpec::ExamplesProportional`]: `rate = min(n * scale, cap) ^ (1 / temperature)`
//!   with `n` the task's training examples (`cap` optional). `temperature = 1` without a cap is
//!   plain proportional sampling; a larger temperature flattens it towards uniform;
//! - [`MixtureSpec::Uniform`]: every rate is 1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::example::{EncodedExample, Label};
use crate::rng::{hash_str, permutation};

/// How rates are set; deserializes from TOML such as
/// `{ kind = "examples_proportional", cap = 2000, temperature = 2.0 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MixtureSpec {
    /// Given rates per task name; every task of the mixture needs one (they need not sum to 1).
    Explicit {
        /// Task name to rate (non-negative, not all zero).
        rates: BTreeMap<String, f64>,
    },
    /// `rate = min(n * scale, cap) ^ (1 / temperature)`.
    ExamplesProportional {
        /// Upper bound on the (scaled) example count; `None` = no cap.
        #[serde(default)]
        cap: Option<f64>,
        /// Temperature `T > 0`; default 1.
        #[serde(default = "one")]
        temperature: f64,
        /// Multiplier of the example count before the cap; default 1.
        #[serde(default = "one")]
        scale: f64,
    },
    /// Every task equally often. (A struct variant, so that unknown keys are refused.)
    Uniform {},
}

fn one() -> f64 {
    1.0
}

/// A task as a mixture sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureTask {
    /// Task name.
    pub name: String,
    /// The task's registry id.
    pub task_id: usize,
    /// Number of training examples.
    pub num_examples: usize,
}

/// Tasks with their rates and sampling probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    tasks: Vec<MixtureTask>,
    rates: Vec<f64>,
    probs: Vec<f64>,
}

impl Mixture {
    /// Computes the rates of `tasks` under `spec`.
    pub fn new(spec: &MixtureSpec, tasks: Vec<MixtureTask>) -> Result<Self> {
        if tasks.is_empty() {
            return Err(invalid("mixture", "no tasks"));
        }
        let mut names = std::collections::BTreeSet::new();
        if let Some(t) = tasks.iter().find(|t| !names.insert(t.name.as_str())) {
            return Err(invalid(
                "mixture",
                format!("task `{}` appears twice", t.name),
            ));
        }
        let rates: Vec<f64> = match spec {
            MixtureSpec::Uniform {} => vec![1.0; tasks.len()],
            MixtureSpec::Explicit { rates } => {
                if let Some(extra) = rates.keys().find(|k| !names.contains(k.as_str())) {
                    return Err(invalid(
                        "mixture",
                        format!("a rate is given for `{extra}`, which is not in the mixture"),
                    ));
                }
                tasks
                    .iter()
                    .map(|t| {
                        rates.get(&t.name).copied().ok_or_else(|| {
                            invalid("mixture", format!("no rate for task `{}`", t.name))
                        })
                    })
                    .collect::<Result<_>>()?
            }
            MixtureSpec::ExamplesProportional {
                cap,
                temperature,
                scale,
            } => {
                if !(temperature.is_finite() && *temperature > 0.0) {
                    return Err(invalid(
                        "mixture",
                        format!("temperature {temperature} must be > 0"),
                    ));
                }
                if !(scale.is_finite() && *scale > 0.0) {
                    return Err(invalid("mixture", format!("scale {scale} must be > 0")));
                }
                if let Some(c) = cap {
                    if !(c.is_finite() && *c > 0.0) {
                        return Err(invalid("mixture", format!("cap {c} must be > 0")));
                    }
                }
                tasks
                    .iter()
                    .map(|t| examples_proportional_rate(t.num_examples, *cap, *temperature, *scale))
                    .collect()
            }
        };
        if let Some((t, r)) = tasks
            .iter()
            .zip(&rates)
            .find(|(_, r)| !(r.is_finite() && **r >= 0.0))
        {
            return Err(invalid(
                "mixture",
                format!("rate {r} of `{}` is not >= 0", t.name),
            ));
        }
        let total: f64 = rates.iter().sum();
        if total <= 0.0 {
            return Err(invalid("mixture", "all rates are zero"));
        }
        let probs = rates.iter().map(|r| r / total).collect();
        Ok(Mixture {
            tasks,
            rates,
            probs,
        })
    }

    /// The tasks, in the order given.
    pub fn tasks(&self) -> &[MixtureTask] {
        &self.tasks
    }

    /// The unnormalised rates, one per task.
    pub fn rates(&self) -> &[f64] {
        &self.rates
    }

    /// The sampling probabilities (rates over their sum), one per task.
    pub fn probabilities(&self) -> &[f64] {
        &self.probs
    }
}

/// seqio's `rate_num_examples`: `min(n * scale, cap) ^ (1 / temperature)`.
pub fn examples_proportional_rate(n: usize, cap: Option<f64>, temperature: f64, scale: f64) -> f64 {
    let mut rate = n as f64 * scale;
    if let Some(c) = cap {
        rate = rate.min(c);
    }
    rate.powf(1.0 / temperature)
}

/// A deterministic subsample of `n` examples: the first `n` of a permutation keyed by
/// `(seed, name)`, kept in their original order. Subsamples of one task under one seed are
/// nested (the 100-example version holds the 50-example one), so low-resource sweeps differ
/// only in size. Asking for more examples than exist is an error.
pub fn subsample(
    examples: &[EncodedExample],
    n: usize,
    seed: u64,
    name: &str,
) -> Result<Vec<EncodedExample>> {
    if n > examples.len() {
        return Err(invalid(
            format!("subsample of `{name}`"),
            format!("{n} examples asked, {} exist", examples.len()),
        ));
    }
    let order = permutation(
        examples.len(),
        &[seed, hash_str(name), hash_str("subsample")],
    );
    let mut keep: Vec<usize> = order[..n].to_vec();
    keep.sort_unstable();
    Ok(keep.into_iter().map(|i| examples[i].clone()).collect())
}

/// A k-shot split: `train` holds `k` examples of every class (classification) or `k` examples
/// (regression), drawn deterministically from `(seed, name)`; `rest` holds all the others, in
/// the original order, for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct KShotSplit {
    /// The `k` examples per class.
    pub train: Vec<EncodedExample>,
    /// Everything else.
    pub rest: Vec<EncodedExample>,
}

/// Splits `examples` into `k` per class and the rest (see [`KShotSplit`]). A class with fewer
/// than `k` examples is an error.
pub fn k_shot_split(
    examples: &[EncodedExample],
    k: usize,
    seed: u64,
    name: &str,
) -> Result<KShotSplit> {
    let what = || format!("k-shot split of `{name}`");
    if k == 0 {
        return Err(invalid(what(), "k must be at least 1"));
    }
    if examples.is_empty() {
        return Err(invalid(what(), "no examples"));
    }
    let order = permutation(examples.len(), &[seed, hash_str(name), hash_str("k-shot")]);
    // Group key: the class, or one group for regression.
    let group = |e: &EncodedExample| match e.label {
        Label::Class(c) => c,
        Label::Value(_) | Label::Missing => -1,
    };
    let mut taken: BTreeMap<i64, usize> = examples.iter().map(|e| (group(e), 0)).collect();
    let mut chosen = vec![false; examples.len()];
    for &i in &order {
        let count = taken
            .get_mut(&group(&examples[i]))
            .expect("every group is counted");
        if *count < k {
            *count += 1;
            chosen[i] = true;
        }
    }
    if let Some((g, n)) = taken.iter().find(|(_, &n)| n < k) {
        return Err(invalid(
            what(),
            format!("class {g} has {n} examples, fewer than k = {k}"),
        ));
    }
    let (mut train, mut rest) = (Vec::new(), Vec::new());
    for (i, e) in examples.iter().enumerate() {
        if chosen[i] { &mut train } else { &mut rest }.push(e.clone());
    }
    Ok(KShotSplit { train, rest })
}
