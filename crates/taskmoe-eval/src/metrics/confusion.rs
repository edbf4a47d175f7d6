//! The confusion matrix the class metrics are computed from.

/// A `K x K` confusion matrix: `counts[true][predicted]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    /// `counts[t][p]` is the number of examples of true class `t` predicted as `p`.
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// The matrix of `predictions` against `labels` (same length assumed) over classes
    /// `0..K`, `K` being one more than the largest class in either.
    pub fn new(predictions: &[usize], labels: &[usize]) -> Self {
        let k = predictions.iter().chain(labels).max().map_or(0, |&m| m + 1);
        let mut counts = vec![vec![0u64; k]; k];
        for (&p, &t) in predictions.iter().zip(labels) {
            counts[t][p] += 1;
        }
        Confusion { counts }
    }

    /// The number of classes `K`.
    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }

    /// True positives, false positives and false negatives of class `c`.
    pub fn tp_fp_fn(&self, c: usize) -> (u64, u64, u64) {
        let tp = self.counts[c][c];
        let predicted: u64 = self.counts.iter().map(|row| row[c]).sum();
        let actual: u64 = self.counts[c].iter().sum();
        (tp, predicted - tp, actual - tp)
    }
}
