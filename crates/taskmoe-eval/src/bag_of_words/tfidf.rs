//! TF-IDF features of encoded examples over one task's training vocabulary, stored sparse.
//!
//! A column per token id seen in the training split (special tokens left out), sublinear term
//! frequency `1 + ln tf`, smoothed inverse document frequency `ln((1 + n) / (1 + df)) + 1` of
//! the training split (scikit-learn's `TfidfVectorizer(sublinear_tf=True)`), and every row
//! scaled to unit L2 norm. Ids not in the training vocabulary are dropped.

use std::collections::{BTreeMap, BTreeSet};

use tch::{Device, Kind, Tensor};

use taskmoe_data::EncodedExample;

/// The ids that frame every training example: the id at the first position of all of them and
/// the id at the last position of all of them (`[CLS]` and `[SEP]` of a BERT-style encoding,
/// `<s>` and `</s>` of a RoBERTa-style one). A separator inside a pair is the same id as the
/// final one. An id that is not at that position in every example is not taken.
pub(super) fn framing_ids(train: &[EncodedExample]) -> BTreeSet<i64> {
    let common = |pick: fn(&[i64]) -> Option<&i64>| -> Option<i64> {
        let mut ids = train.iter().map(|e| pick(&e.input_ids).copied());
        let first = ids.next()??;
        ids.all(|id| id == Some(first)).then_some(first)
    };
    [common(<[i64]>::first), common(<[i64]>::last)]
        .into_iter()
        .flatten()
        .collect()
}

/// The training vocabulary with each token's column and inverse document frequency.
#[derive(Debug, Clone)]
pub(super) struct Vocabulary {
    /// Token id -> column, in id order.
    columns: BTreeMap<i64, usize>,
    /// `ln((1 + n) / (1 + df)) + 1` per column.
    idf: Vec<f64>,
}

impl Vocabulary {
    /// The ids of `train` other than `excluded`, with their document frequencies there.
    pub(super) fn fit(train: &[EncodedExample], excluded: &BTreeSet<i64>) -> Self {
        let mut df: BTreeMap<i64, usize> = BTreeMap::new();
        for example in train {
            let distinct: BTreeSet<i64> = example
                .input_ids
                .iter()
                .copied()
                .filter(|id| !excluded.contains(id))
                .collect();
            for id in distinct {
                *df.entry(id).or_default() += 1;
            }
        }
        let n = train.len() as f64;
        let idf = df
            .values()
            .map(|&d| ((1.0 + n) / (1.0 + d as f64)).ln() + 1.0)
            .collect();
        let columns = df.keys().enumerate().map(|(c, &id)| (id, c)).collect();
        Vocabulary { columns, idf }
    }

    /// The number of columns.
    pub(super) fn len(&self) -> usize {
        self.idf.len()
    }

    /// The L2-normalised TF-IDF rows of `examples`; a row with no vocabulary token is zero.
    pub(super) fn transform(&self, examples: &[EncodedExample]) -> Features {
        let (mut rows, mut cols, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for (r, example) in examples.iter().enumerate() {
            let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
            for id in &example.input_ids {
                if let Some(&c) = self.columns.get(id) {
                    *counts.entry(c).or_default() += 1;
                }
            }
            let row: Vec<(usize, f64)> = counts
                .into_iter()
                .map(|(c, tf)| (c, (1.0 + (tf as f64).ln()) * self.idf[c]))
                .collect();
            let norm = row.iter().map(|(_, v)| v * v).sum::<f64>().sqrt();
            for (c, v) in row {
                rows.push(r as i64);
                cols.push(c as i64);
                values.push(v / norm);
            }
        }
        Features {
            rows: Tensor::from_slice(&rows),
            cols: Tensor::from_slice(&cols),
            values: Tensor::from_slice(&values).unsqueeze(1),
            examples: examples.len() as i64,
            columns: self.len() as i64,
        }
    }
}

/// A sparse `[examples, columns]` feature matrix as its non-zero entries (f64, CPU).
///
/// Memory is linear in the non-zeros (at most the examples' token count), never
/// `examples x columns`.
#[derive(Debug)]
pub(super) struct Features {
    /// Row of each non-zero. `[nnz]`
    rows: Tensor,
    /// Column of each non-zero. `[nnz]`
    cols: Tensor,
    /// Value of each non-zero. `[nnz, 1]`
    values: Tensor,
    /// The number of rows.
    pub(super) examples: i64,
    /// The number of columns.
    pub(super) columns: i64,
}

impl Features {
    /// `X W`. `w: [columns, k]` -> `[examples, k]`
    pub(super) fn times(&self, w: &Tensor) -> Tensor {
        let k = w.size()[1];
        let terms = w.index_select(0, &self.cols) * &self.values; // (nnz, k)
        Tensor::zeros([self.examples, k], (Kind::Double, Device::Cpu))
            .index_add(0, &self.rows, &terms)
    }

    /// `X^T G`. `g: [examples, k]` -> `[columns, k]`
    pub(super) fn transpose_times(&self, g: &Tensor) -> Tensor {
        let k = g.size()[1];
        let terms = g.index_select(0, &self.rows) * &self.values; // (nnz, k)
        Tensor::zeros([self.columns, k], (Kind::Double, Device::Cpu))
            .index_add(0, &self.cols, &terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskmoe_data::Label;

    fn example(ids: &[i64]) -> EncodedExample {
        EncodedExample {
            id: 0,
            input_ids: ids.to_vec(),
            token_type_ids: vec![0; ids.len()],
            label: Label::Class(0),
            source_id: None,
        }
    }

    #[test]
    fn framing_ids_are_the_ids_every_example_starts_and_ends_with() {
        let train = [example(&[2, 7, 8, 3]), example(&[2, 9, 3, 7, 3])];
        assert_eq!(framing_ids(&train), BTreeSet::from([2, 3]));
        // No common first id: only the last one is framing.
        let train = [example(&[2, 7, 3]), example(&[5, 9, 3])];
        assert_eq!(framing_ids(&train), BTreeSet::from([3]));
    }

    #[test]
    fn rows_are_sublinear_tf_idf_with_unit_norm() {
        // n = 2; id 7 in both (df 2, idf 1), id 8 in one (df 1, idf ln(3/2) + 1).
        let train = [example(&[7, 7, 8]), example(&[7])];
        let vocab = Vocabulary::fit(&train, &BTreeSet::new());
        assert_eq!(vocab.len(), 2);
        let x = vocab.transform(&[example(&[7, 7, 8, 42])]);
        let dense = x.times(&Tensor::eye(2, (Kind::Double, Device::Cpu)));
        let a = 1.0 + 2f64.ln();
        let b = 1.5f64.ln() + 1.0;
        let norm = (a * a + b * b).sqrt();
        let got = Vec::<f64>::try_from(dense.view([-1])).unwrap();
        assert!((got[0] - a / norm).abs() < 1e-12, "{got:?}");
        assert!((got[1] - b / norm).abs() < 1e-12, "{got:?}");
        // The transpose product is the transpose.
        let back = x.transpose_times(&Tensor::ones([1, 1], (Kind::Double, Device::Cpu)));
        let back = Vec::<f64>::try_from(back.view([-1])).unwrap();
        assert!((back[0] - got[0]).abs() < 1e-12 && (back[1] - got[1]).abs() < 1e-12);
    }
}
