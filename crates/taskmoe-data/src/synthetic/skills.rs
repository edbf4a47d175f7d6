//! The latent skills of the synthetic benchmark.
//!
//! Each task scores its input with one skill and a task weight vector `w`; the clean label is
//! `score > 0`. Sentences are sequences of word indices `0..vocab_size`; every word belongs to
//! one of `word_classes` classes (a seeded, balanced assignment). All four scores are odd under
//! a symmetry of the input distribution (flipping the sign of `w`, reversing a sentence, or
//! swapping the two sentences of a pair), so clean labels are balanced in expectation.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// A latent skill: how a task turns an input and its weight vector into a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skill {
    /// **Lexicon scoring** (single sentence; `w` has one weight per word, like a sentiment
    /// lexicon): `score = sum_i w[a_i] / sqrt(len(a))`. A bag-of-words skill: a linear model
    /// over word counts can solve it.
    Lexicon,
    /// **Overlap** (sentence pair; one weight per word): `score = sum_{v in S} w[v] /
    /// sqrt(|S|)` over the set `S` of distinct words found in *both* sentences. The generator
    /// copies between 1 and half of the second sentence's words from the first, so `S` is never
    /// empty. The model must match words across the pair, as in paraphrase detection; the
    /// words of one sentence alone do not decide the label.
    Overlap,
    /// **Order** (single sentence; one weight per word class): with relative positions
    /// `r_i = 2 i / (n - 1) - 1` in `[-1, 1]`, `score = sum_i w[class(a_i)] r_i / sqrt(n)`:
    /// positive when the words of positively weighted classes come later than those of
    /// negatively weighted ones. Reversing a sentence flips the label, so word counts alone
    /// carry no signal; the model needs positions.
    Order,
    /// **Counting** (sentence pair; one weight per word class): `score = sum_c w[c]
    /// (count_c(a) - count_c(b)) / sqrt(len(a) + len(b))`: does the first sentence hold more
    /// words of the positively weighted classes than the second? The model must count class
    /// members in each sentence and compare.
    Count,
}

impl Skill {
    /// Every skill, in declaration order.
    pub const ALL: [Skill; 4] = [Skill::Lexicon, Skill::Overlap, Skill::Order, Skill::Count];

    /// Whether the skill reads a sentence pair.
    pub fn is_pair(self) -> bool {
        matches!(self, Skill::Overlap | Skill::Count)
    }

    /// The length of the skill's weight vector: the vocabulary (word-level skills) or the
    /// number of word classes (class-level skills).
    pub fn weight_dim(self, vocab_size: usize, word_classes: usize) -> usize {
        match self {
            Skill::Lexicon | Skill::Overlap => vocab_size,
            Skill::Order | Skill::Count => word_classes,
        }
    }

    /// A lowercase name (`lexicon`, `overlap`, `order`, `count`).
    pub fn name(self) -> &'static str {
        match self {
            Skill::Lexicon => "lexicon",
            Skill::Overlap => "overlap",
            Skill::Order => "order",
            Skill::Count => "count",
        }
    }

    /// Draws the input of one example: sentence lengths uniform in `min_words..=max_words`,
    /// words uniform over the vocabulary; for [`Skill::Overlap`], some words of `b` are copied
    /// from `a` (see there).
    pub fn draw_input(
        self,
        rng: &mut Rng,
        vocab_size: usize,
        min_words: usize,
        max_words: usize,
    ) -> (Vec<u32>, Option<Vec<u32>>) {
        let sentence = |rng: &mut Rng| -> Vec<u32> {
            let n = rng.range_inclusive(min_words, max_words);
            (0..n)
                .map(|_| rng.below(vocab_size as u64) as u32)
                .collect()
        };
        let a = sentence(rng);
        if !self.is_pair() {
            return (a, None);
        }
        let mut b = sentence(rng);
        if self == Skill::Overlap {
            let copies = rng.range_inclusive(1, (b.len() / 2).max(1));
            let mut positions: Vec<usize> = (0..b.len()).collect();
            rng.shuffle(&mut positions);
            for &p in &positions[..copies] {
                b[p] = a[rng.below(a.len() as u64) as usize];
            }
        }
        (a, Some(b))
    }

    /// The score of an input under weights `w` (one per word or per class, see
    /// [`Skill::weight_dim`]); `class_of[v]` is the class of word `v`.
    pub fn score(self, w: &[f64], a: &[u32], b: Option<&[u32]>, class_of: &[u32]) -> f64 {
        match self {
            Skill::Lexicon | Skill::Overlap => self.score_by(|v| w[v as usize], a, b),
            Skill::Order | Skill::Count => {
                self.score_by(|v| w[class_of[v as usize] as usize], a, b)
            }
        }
    }

    /// The score of an input under per-word weights (`word_weights[v]` for word `v`, whatever
    /// the skill: a class-level skill's weights are constant within a class). Equal to
    /// [`Skill::score`] with `word_weights[v] = w[class_of[v]]` for class-level skills.
    pub fn score_words(self, word_weights: &[f64], a: &[u32], b: Option<&[u32]>) -> f64 {
        self.score_by(|v| word_weights[v as usize], a, b)
    }

    fn score_by(self, weight: impl Fn(u32) -> f64, a: &[u32], b: Option<&[u32]>) -> f64 {
        let b = b.unwrap_or(&[]);
        match self {
            Skill::Lexicon => a.iter().map(|&v| weight(v)).sum::<f64>() / (a.len() as f64).sqrt(),
            Skill::Overlap => {
                let mut shared: Vec<u32> = a.iter().copied().filter(|v| b.contains(v)).collect();
                shared.sort_unstable();
                shared.dedup();
                if shared.is_empty() {
                    return 0.0;
                }
                shared.iter().map(|&v| weight(v)).sum::<f64>() / (shared.len() as f64).sqrt()
            }
            Skill::Order => {
                let n = a.len();
                if n < 2 {
                    return 0.0;
                }
                a.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let r = 2.0 * i as f64 / (n - 1) as f64 - 1.0;
                        weight(v) * r
                    })
                    .sum::<f64>()
                    / (n as f64).sqrt()
            }
            Skill::Count => {
                let side = |s: &[u32]| s.iter().map(|&v| weight(v)).sum::<f64>();
                (side(a) - side(b)) / ((a.len() + b.len()) as f64).sqrt()
            }
        }
    }
}
