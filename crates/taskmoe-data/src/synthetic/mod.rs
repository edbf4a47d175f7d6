//! The built-in synthetic multi-task benchmark (DESIGN.md section 6).
//!
//! A generator of text-like classification tasks with known structure, so that the claims of
//! task-aware MoE (low-resource transfer, few-shot transfer to unseen tasks, robustness to
//! unrelated tasks) can be measured in minutes on a CPU:
//!
//! - **Inputs**: sentences of `min_words..=max_words` words drawn uniformly from a vocabulary of
//!   `vocab_size` word tokens ([`SyntheticVocab`]); single sentences or sentence pairs, encoded
//!   BERT-style as `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` with segment ids 0 / 1.
//! - **Skills** ([`Skill`]): lexicon scoring, overlap between the sentences of a pair, word
//!   order, and counting of word classes. A task scores its input with its skill and a weight
//!   vector `w`; the clean label is `score > 0`, and the label is flipped with probability
//!   `label_noise`, so the Bayes accuracy is `1 - label_noise`.
//! - **Families** (MMoE's construction, Ma et al. 2018): the tasks of a family share a skill
//!   and a family vector `w_family ~ N(0, I)`; task `t` has
//!   `w_t = rho * w_family + sqrt(1 - rho^2) * w_own_t` with its own `w_own_t ~ N(0, I)`, so
//!   `corr(w_t, w_family) = rho` and two tasks of a family correlate `rho^2`. `rho` is the
//!   relatedness knob ([`SyntheticConfig::relatedness`]).
//! - **Roles** ([`TaskRole`]): per family, high-resource tasks (many training examples),
//!   low-resource tasks (few), and held-out unseen tasks (marked `held_out` in their spec, with
//!   a training pool for k-shot sets, see [`crate::k_shot_split`]); outside the families,
//!   conflicting tasks (a family's construction with negated weights) and unrelated tasks
//!   (independent weights).
//!
//! Everything is a pure function of the config: word classes, weights and example `i` of a
//! task's split are drawn from generators keyed by `(seed, what, task name, split, i)`. So a
//! task's data does not depend on which other tasks exist, and growing a split only appends
//! examples.

mod config;
mod exact;
mod skills;
mod vocab;

/// The source of the synthetic benchmark's configuration types: `taskmoe config show` prints
/// each key's documentation from it beside the value.
pub const CONFIG_SOURCE: &str = include_str!("config.rs");

pub use config::{ExtraTaskConfig, FamilyConfig, Generator, Relation, SyntheticConfig};
pub use exact::correlation;
pub use skills::Skill;
pub use vocab::{SyntheticVocab, CLS_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS};

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::example::{EncodedExample, Label, TaskData, TextExample};
use crate::mixture::{Mixture, MixtureSpec, MixtureTask};
use crate::registry::TaskRegistry;
use crate::rng::{hash_str, permutation, Rng};
use crate::sampler::{Sampler, SamplerConfig};
use crate::spec::{Metric, OnInvalid, TaskKind, TaskSpec};

/// The part a task plays in the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRole {
    /// A family task with `high_resource_examples` training examples.
    HighResource,
    /// A family task with `low_resource_examples` training examples.
    LowResource,
    /// A held-out family task; its training split is the k-shot pool.
    Unseen,
    /// Negated weights of a family's construction.
    Conflicting,
    /// Independent weights.
    Unrelated,
}

/// The names of the three splits, in key order.
pub const SPLITS: [&str; 3] = ["train", "validation", "test"];

/// One generated example, with the latent quantities that produced its label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticExample {
    /// Word indices of the first sentence.
    pub words_a: Vec<u32>,
    /// Word indices of the second sentence (pair skills).
    pub words_b: Option<Vec<u32>>,
    /// The skill's score.
    pub score: f64,
    /// `score > 0` as 0 / 1, before label noise.
    pub clean_label: i64,
    /// The label after noise.
    pub label: i64,
}

impl SyntheticExample {
    /// Token ids and segment ids with special tokens, as example `id` of its split.
    pub fn encode(&self, vocab: &SyntheticVocab, id: u64) -> EncodedExample {
        let mut input_ids = vec![CLS_ID];
        input_ids.extend(self.words_a.iter().map(|&v| vocab.word_id(v)));
        input_ids.push(SEP_ID);
        let mut token_type_ids = vec![0; input_ids.len()];
        if let Some(b) = &self.words_b {
            input_ids.extend(b.iter().map(|&v| vocab.word_id(v)));
            input_ids.push(SEP_ID);
            token_type_ids.resize(input_ids.len(), 1);
        }
        EncodedExample {
            id,
            input_ids,
            token_type_ids,
            label: Label::Class(self.label),
            source_id: None,
        }
    }

    /// The example as text (`"w12 w7 ..."`), for a `tokenizers` pipeline.
    pub fn render(&self, vocab: &SyntheticVocab) -> TextExample {
        let text = |ws: &[u32]| {
            ws.iter()
                .map(|&v| vocab.word_text(v))
                .collect::<Vec<_>>()
                .join(" ")
        };
        TextExample {
            text_a: text(&self.words_a),
            text_b: self.words_b.as_deref().map(text),
            label: Label::Class(self.label),
            source_id: None,
            line: 0,
        }
    }
}

/// One generated task.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticTask {
    /// Its spec (binary labels `"0"`, `"1"`, metric accuracy, no files).
    pub spec: TaskSpec,
    /// Its role.
    pub role: TaskRole,
    /// Its skill.
    pub skill: Skill,
    /// Its weight vector `w_t`, in the skill's space (one weight per word of its vocabulary,
    /// or per word class; see [`Skill::weight_dim`]).
    pub weights: Vec<f64>,
    /// The weight of every word (all `SyntheticConfig::total_words`, 0 for words the task
    /// never reads): what the score actually uses, `w_t[class(v)]` for class-level skills,
    /// through the task's word permutation for a v2 conflicting task.
    pub word_weights: Vec<f64>,
    /// The word ids its sentences are drawn from.
    pub words: std::ops::Range<u32>,
    /// Subtracted from the raw score before labelling (0 in generator v1, the median of the
    /// reference scores in v2), so `score = raw - threshold` and the clean label is
    /// `score > 0`.
    pub threshold: f64,
    /// Splits `train`, `validation`, `test`, in the order of [`SPLITS`].
    pub splits: [Vec<SyntheticExample>; 3],
}

impl SyntheticTask {
    /// The examples of split `split` (`train`, `validation` or `test`).
    pub fn split(&self, split: &str) -> Option<&[SyntheticExample]> {
        SPLITS
            .iter()
            .position(|s| *s == split)
            .map(|i| self.splits[i].as_slice())
    }
}

/// Inputs whose median score is a v2 task's threshold.
const REFERENCE_INPUTS: usize = 4096;

/// Generator v2: the weights of every task, made family by family from one centred
/// orthonormal basis (the family direction, then one direction per task in plan order, its
/// conflicting tasks last), so that a task's weights depend only on the tasks before it in its
/// family. An unrelated task is a family of one (its own direction).
fn assign_exact_weights(c: &SyntheticConfig, plans: &mut [Plan]) {
    let gaussian = |dim: usize, key: &[u64]| -> Vec<f64> {
        let mut rng = Rng::from_key(key);
        (0..dim).map(|_| rng.normal()).collect()
    };
    let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        match &p.family_vector {
            Some(f) => match groups.iter_mut().find(|g| g.0.as_deref() == Some(f)) {
                Some(g) => g.1.push(i),
                None => groups.push((Some(f.clone()), vec![i])),
            },
            None => groups.push((None, vec![i])),
        }
    }
    for (family, members) in groups {
        let first = &plans[members[0]];
        let dim = first.skill.weight_dim(first.words.len(), c.word_classes);
        let mut draws = Vec::with_capacity(members.len() + 1);
        if let Some(f) = &family {
            draws.push(gaussian(
                dim,
                &[c.seed, hash_str("family-weights"), hash_str(f)],
            ));
        }
        for &m in &members {
            draws.push(gaussian(
                dim,
                &[c.seed, hash_str("task-weights"), hash_str(&plans[m].name)],
            ));
        }
        let basis = exact::centred_orthonormal(&draws);
        let weights = match family {
            Some(_) => exact::family_weights(&basis, first.rho),
            None => {
                let scale = (dim as f64).sqrt();
                vec![basis[0].iter().map(|x| x * scale).collect()]
            }
        };
        for (m, w) in members.into_iter().zip(weights) {
            plans[m].exact_weights = Some(w);
        }
    }
}

/// The generated benchmark: the vocabulary, the word classes and the tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticBenchmark {
    config: SyntheticConfig,
    vocab: SyntheticVocab,
    class_of: Vec<u32>,
    tasks: Vec<SyntheticTask>,
}

/// What the generator needs to know to build one task.
struct Plan {
    name: String,
    family: String,
    role: TaskRole,
    skill: Skill,
    /// The family whose vector the weights mix in (`None` = independent).
    family_vector: Option<String>,
    rho: f64,
    sign: f64,
    train_examples: usize,
    /// The word ids it reads.
    words: std::ops::Range<u32>,
    /// Generator v2: its weights in the skill's space, made for the whole family at once.
    exact_weights: Option<Vec<f64>>,
    /// Generator v2 conflicting tasks: see the words through a seeded permutation.
    permute_words: bool,
}

impl SyntheticBenchmark {
    /// Generates the benchmark `config` describes. Tasks come in order: for each family its
    /// high-resource, low-resource and unseen tasks, then the extra tasks.
    pub fn generate(config: &SyntheticConfig) -> Result<Self> {
        config.validate()?;
        let c = config;
        let vocab = SyntheticVocab::new(c.total_words());
        // Balanced classes: word v gets class perm[v] mod C (the unrelated tasks' words by a
        // permutation of their own).
        let perm = permutation(c.vocab_size, &[c.seed, hash_str("word-classes")]);
        let mut class_of: Vec<u32> = perm.iter().map(|&p| (p % c.word_classes) as u32).collect();
        let own = permutation(
            c.unrelated_vocab_size,
            &[c.seed, hash_str("unrelated-word-classes")],
        );
        class_of.extend(own.iter().map(|&p| (p % c.word_classes) as u32));
        let v2 = c.generator == Generator::V2;
        let family_words = 0..c.vocab_size as u32;
        let unrelated_words = c.vocab_size as u32..c.total_words() as u32;

        let mut plans = Vec::new();
        for f in &c.families {
            let rho = f.relatedness.unwrap_or(c.relatedness);
            let roles = [
                (
                    TaskRole::HighResource,
                    "hi",
                    f.high_resource,
                    c.high_resource_examples,
                ),
                (
                    TaskRole::LowResource,
                    "lo",
                    f.low_resource,
                    c.low_resource_examples,
                ),
                (
                    TaskRole::Unseen,
                    "unseen",
                    f.unseen,
                    c.unseen_train_examples,
                ),
            ];
            for (role, tag, count, train_examples) in roles {
                for i in 0..count {
                    plans.push(Plan {
                        name: format!("{}_{tag}{i}", f.name),
                        family: f.name.clone(),
                        role,
                        skill: f.skill,
                        family_vector: Some(f.name.clone()),
                        rho,
                        sign: 1.0,
                        train_examples,
                        words: family_words.clone(),
                        exact_weights: None,
                        permute_words: false,
                    });
                }
            }
        }
        for t in &c.extra_tasks {
            let (role, skill, family_vector, rho, mut sign) = match &t.relation {
                Relation::Conflicting { family } => {
                    let f = c
                        .families
                        .iter()
                        .find(|f| &f.name == family)
                        .expect("validated");
                    let rho = f.relatedness.unwrap_or(c.relatedness);
                    (
                        TaskRole::Conflicting,
                        f.skill,
                        Some(family.clone()),
                        rho,
                        -1.0,
                    )
                }
                Relation::Unrelated { skill } => (TaskRole::Unrelated, *skill, None, 0.0, 1.0),
            };
            let words = if v2 && role == TaskRole::Unrelated {
                unrelated_words.clone()
            } else {
                family_words.clone()
            };
            if v2 {
                // v2 conflicts by a different grouping of the words, not a sign a head undoes.
                sign = 1.0;
            }
            plans.push(Plan {
                name: t.name.clone(),
                family: t.name.clone(),
                role,
                skill,
                family_vector,
                rho,
                sign,
                train_examples: c.high_resource_examples,
                words,
                exact_weights: None,
                permute_words: v2 && role == TaskRole::Conflicting,
            });
        }
        if v2 {
            assign_exact_weights(c, &mut plans);
        }

        let mut bench = SyntheticBenchmark {
            config: c.clone(),
            vocab,
            class_of,
            tasks: Vec::with_capacity(plans.len()),
        };
        for plan in plans {
            let task = bench.generate_task(plan);
            bench.tasks.push(task);
        }
        // Names must be unique; the registry checks it.
        bench.registry()?;
        Ok(bench)
    }

    fn gaussian_vector(&self, dim: usize, key: &[u64]) -> Vec<f64> {
        let mut rng = Rng::from_key(key);
        (0..dim).map(|_| rng.normal()).collect()
    }

    fn generate_task(&self, mut plan: Plan) -> SyntheticTask {
        let c = &self.config;
        let dim = plan.skill.weight_dim(plan.words.len(), c.word_classes);
        let own = || {
            self.gaussian_vector(
                dim,
                &[c.seed, hash_str("task-weights"), hash_str(&plan.name)],
            )
        };
        let weights: Vec<f64> = match (plan.exact_weights.take(), &plan.family_vector) {
            (Some(w), _) => w,
            (None, None) => own(),
            (None, Some(family)) => {
                let own = own();
                let shared = self
                    .gaussian_vector(dim, &[c.seed, hash_str("family-weights"), hash_str(family)]);
                let own_scale = (1.0 - plan.rho * plan.rho).sqrt();
                shared
                    .iter()
                    .zip(&own)
                    .map(|(f, o)| plan.sign * (plan.rho * f + own_scale * o))
                    .collect()
            }
        };
        let word_weights = self.word_weights(&plan, &weights);
        let task_key = hash_str(&plan.name);
        let draw = |rng: &mut Rng| {
            let (mut a, mut b) =
                plan.skill
                    .draw_input(rng, plan.words.len(), c.min_words, c.max_words);
            let offset = plan.words.start;
            a.iter_mut().for_each(|v| *v += offset);
            if let Some(b) = &mut b {
                b.iter_mut().for_each(|v| *v += offset);
            }
            (a, b)
        };
        let threshold = if c.generator == Generator::V2 {
            let mut rng = Rng::from_key(&[c.seed, hash_str("threshold"), task_key]);
            let reference = (0..REFERENCE_INPUTS)
                .map(|_| {
                    let (a, b) = draw(&mut rng);
                    plan.skill.score_words(&word_weights, &a, b.as_deref())
                })
                .collect();
            exact::median(reference)
        } else {
            0.0
        };
        let sizes = [
            plan.train_examples,
            c.eval_examples,
            c.test_split_examples(),
        ];
        let splits = std::array::from_fn(|s| {
            (0..sizes[s])
                .map(|i| {
                    let mut rng =
                        Rng::from_key(&[c.seed, hash_str("example"), task_key, s as u64, i as u64]);
                    let (a, b) = draw(&mut rng);
                    let score = plan.skill.score_words(&word_weights, &a, b.as_deref()) - threshold;
                    let clean_label = i64::from(score > 0.0);
                    let label = if rng.bernoulli(c.label_noise) {
                        1 - clean_label
                    } else {
                        clean_label
                    };
                    SyntheticExample {
                        words_a: a,
                        words_b: b,
                        score,
                        clean_label,
                        label,
                    }
                })
                .collect()
        });
        let text_fields = if plan.skill.is_pair() {
            vec!["sentence1".to_string(), "sentence2".to_string()]
        } else {
            vec!["sentence".to_string()]
        };
        SyntheticTask {
            spec: TaskSpec {
                name: plan.name,
                family: plan.family,
                kind: TaskKind::Classification,
                labels: vec!["0".into(), "1".into()],
                text_fields,
                label_field: "label".into(),
                id_field: None,
                metrics: vec![Metric::Accuracy],
                format: None,
                on_invalid: OnInvalid::Error,
                held_out: plan.role == TaskRole::Unseen,
                splits: Default::default(),
            },
            role: plan.role,
            skill: plan.skill,
            weights,
            word_weights,
            words: plan.words,
            threshold,
            splits,
        }
    }

    /// The weight of every word for a task with skill-space weights `w`.
    fn word_weights(&self, plan: &Plan, w: &[f64]) -> Vec<f64> {
        let c = &self.config;
        let mut out = vec![0.0; c.total_words()];
        let range = plan.words.start as usize..plan.words.end as usize;
        for v in range.clone() {
            out[v] = match plan.skill {
                Skill::Lexicon | Skill::Overlap => w[v - range.start],
                Skill::Order | Skill::Count => w[self.class_of[v] as usize],
            };
        }
        if plan.permute_words {
            let perm = permutation(
                range.len(),
                &[c.seed, hash_str("conflict-words"), hash_str(&plan.name)],
            );
            let original = out[range.clone()].to_vec();
            for (i, &p) in perm.iter().enumerate() {
                out[range.start + i] = original[p];
            }
        }
        out
    }

    /// The benchmark with the default config (seed 0).
    pub fn default_benchmark() -> Self {
        Self::generate(&SyntheticConfig::default()).expect("the default config is valid")
    }

    /// The config it was generated from.
    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &SyntheticVocab {
        &self.vocab
    }

    /// The class of every word (`class_of[v]` in `0..word_classes`).
    pub fn word_classes(&self) -> &[u32] {
        &self.class_of
    }

    /// The tasks, in registry order.
    pub fn tasks(&self) -> &[SyntheticTask] {
        &self.tasks
    }

    /// The task named `name`.
    pub fn task(&self, name: &str) -> Option<&SyntheticTask> {
        self.tasks.iter().find(|t| t.spec.name == name)
    }

    /// A registry of the tasks' specs; task ids are positions in [`Self::tasks`].
    pub fn registry(&self) -> Result<TaskRegistry> {
        TaskRegistry::new(self.tasks.iter().map(|t| t.spec.clone()).collect())
    }

    /// The longest encoded input any task can produce: `3 + 2 * max_words` with pairs, else
    /// `2 + max_words`. Use it as the batch `seq_len`.
    pub fn max_seq_len(&self) -> usize {
        let pairs = self.tasks.iter().any(|t| t.skill.is_pair());
        if pairs {
            3 + 2 * self.config.max_words
        } else {
            2 + self.config.max_words
        }
    }

    /// Split `split` of the task with id `task_id`, encoded; `None` for an unknown task or
    /// split.
    pub fn task_data(&self, task_id: usize, split: &str) -> Option<TaskData> {
        let task = self.tasks.get(task_id)?;
        let examples = task.split(split)?;
        Some(TaskData {
            task_id,
            examples: examples
                .iter()
                .enumerate()
                .map(|(i, e)| e.encode(&self.vocab, i as u64))
                .collect(),
        })
    }

    /// A [`Sampler`] over the seen tasks' training splits, mixed as `spec` says, drawing
    /// batches of `batch_size` padded to [`Self::max_seq_len`] with `seed`: the batches a
    /// model trained on this benchmark sees. Fails as [`Mixture::new`] and [`Sampler::new`]
    /// do (an invalid mixture spec, a batch size of 0).
    pub fn train_sampler(
        &self,
        spec: &MixtureSpec,
        batch_size: usize,
        seed: u64,
    ) -> Result<Sampler> {
        let (mut tasks, mut data) = (Vec::new(), Vec::new());
        for (task_id, task) in self.registry()?.seen() {
            // Every generated task has a training split; one without would be a generator bug.
            let d = self
                .task_data(task_id, "train")
                .ok_or_else(|| invalid(&task.name, "the synthetic task has no training split"))?;
            tasks.push(MixtureTask {
                name: task.name.clone(),
                task_id,
                num_examples: d.examples.len(),
            });
            data.push(d);
        }
        let config = SamplerConfig {
            batch_size,
            seq_len: self.max_seq_len(),
            pad_id: PAD_ID,
            seed,
        };
        Sampler::new(Mixture::new(spec, tasks)?, data, config)
    }
}
