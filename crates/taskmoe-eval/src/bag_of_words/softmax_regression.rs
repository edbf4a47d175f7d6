//! Multinomial logistic (softmax) regression with an L2 penalty, fitted full-batch by L-BFGS.
//!
//! The objective is the mean cross-entropy plus `penalty / 2 * |W|^2` (the bias is not
//! penalised). It is strictly convex in `W`, so the fit from zero is unique up to the
//! tolerance; the gradient is written out (`X^T (P - Y) / n + penalty W`), no autograd.
//! L-BFGS keeps [`HISTORY`] correction pairs and takes Armijo backtracking steps from a unit
//! step. Everything is f64 on the CPU, and nothing is random.

use std::collections::VecDeque;

use tch::{Device, Kind, Tensor};

use super::tfidf::Features;

/// Correction pairs L-BFGS keeps.
const HISTORY: usize = 10;
/// Armijo's sufficient-decrease constant.
const ARMIJO: f64 = 1e-4;
/// The smallest step the line search tries before it gives up.
const MIN_STEP: f64 = 1e-12;
/// A relative change of the objective below this ends the fit (it no longer moves in f64).
const LOSS_TOLERANCE: f64 = 1e-15;

/// When a fit stops.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stopping {
    /// Most L-BFGS iterations.
    pub(super) max_iterations: usize,
    /// The fit has converged once every gradient entry is at most this in absolute value.
    pub(super) gradient_tolerance: f64,
}

/// How a fit ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct FitReport {
    /// L-BFGS iterations taken.
    pub(super) iterations: usize,
    /// Whether the gradient or the objective's change fell below its tolerance (not the
    /// iteration limit or a failed line search).
    pub(super) converged: bool,
}

/// A fitted model: `softmax(X W + b)`.
#[derive(Debug)]
pub(super) struct SoftmaxRegression {
    /// `[columns, classes]`
    weights: Tensor,
    /// `[classes]`
    bias: Tensor,
}

impl SoftmaxRegression {
    /// Fits to `x` with labels `labels` (class indices below `classes`).
    pub(super) fn fit(
        x: &Features,
        labels: &[i64],
        classes: i64,
        penalty: f64,
        stopping: Stopping,
    ) -> (Self, FitReport) {
        let options = (Kind::Double, Device::Cpu);
        let onehot = Tensor::from_slice(labels)
            .one_hot(classes)
            .to_kind(Kind::Double); // (n, classes)
        let objective = Objective {
            x,
            onehot: &onehot,
            classes,
            penalty,
        };
        let mut theta = Tensor::zeros([(x.columns + 1) * classes], options);
        let (mut loss, mut grad) = objective.eval(&theta);
        let mut history: VecDeque<(Tensor, Tensor, f64)> = VecDeque::new();
        let mut report = FitReport {
            iterations: 0,
            converged: false,
        };
        while report.iterations < stopping.max_iterations {
            if max_abs(&grad) <= stopping.gradient_tolerance {
                report.converged = true;
                break;
            }
            report.iterations += 1;
            let mut direction = -two_loop(&grad, &history);
            let mut slope = dot(&grad, &direction);
            if slope >= 0.0 {
                // Not a descent direction (curvature went bad): restart from steepest descent.
                history.clear();
                direction = -&grad;
                slope = dot(&grad, &direction);
            }
            let mut step = 1.0;
            let accepted = loop {
                let candidate = &theta + &direction * step;
                let (new_loss, new_grad) = objective.eval(&candidate);
                if new_loss <= loss + ARMIJO * step * slope {
                    break Some((candidate, new_loss, new_grad));
                }
                step *= 0.5;
                if step < MIN_STEP {
                    break None;
                }
            };
            let Some((candidate, new_loss, new_grad)) = accepted else {
                break;
            };
            let s = &candidate - &theta;
            let y = &new_grad - &grad;
            let sy = dot(&s, &y);
            if sy > 1e-12 * dot(&y, &y).max(f64::MIN_POSITIVE) {
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back((s, y, 1.0 / sy));
            }
            let change = (loss - new_loss).abs();
            (theta, loss, grad) = (candidate, new_loss, new_grad);
            if change <= LOSS_TOLERANCE * loss.abs().max(1.0) {
                report.converged = true;
                break;
            }
        }
        let (weights, bias) = objective.split(&theta);
        (SoftmaxRegression { weights, bias }, report)
    }

    /// The most probable class of each row of `x` (the lowest index on a tie).
    pub(super) fn predict(&self, x: &Features) -> Vec<usize> {
        let logits = x.times(&self.weights) + &self.bias;
        let classes = logits.argmax(1, false);
        Vec::<i64>::try_from(&classes)
            .expect("argmax gives int64")
            .into_iter()
            .map(|c| c as usize)
            .collect()
    }
}

/// The penalised mean cross-entropy over one feature matrix.
struct Objective<'a> {
    x: &'a Features,
    /// `[n, classes]`
    onehot: &'a Tensor,
    classes: i64,
    penalty: f64,
}

impl Objective<'_> {
    /// `theta = [W flattened row-major; b]` -> `(W [columns, classes], b [classes])`.
    fn split(&self, theta: &Tensor) -> (Tensor, Tensor) {
        let w_len = self.x.columns * self.classes;
        (
            theta
                .narrow(0, 0, w_len)
                .view([self.x.columns, self.classes]),
            theta.narrow(0, w_len, self.classes),
        )
    }

    /// The objective and its gradient (flattened like `theta`) at `theta`.
    fn eval(&self, theta: &Tensor) -> (f64, Tensor) {
        let (w, b) = self.split(theta);
        let n = self.x.examples.max(1) as f64;
        let log_p = (self.x.times(&w) + &b).log_softmax(1, Kind::Double); // (n, classes)
        let nll = -(&log_p * self.onehot).sum(Kind::Double).double_value(&[]) / n;
        let loss = nll + 0.5 * self.penalty * w.square().sum(Kind::Double).double_value(&[]);
        let residual = (log_p.exp() - self.onehot) / n; // (n, classes)
        let grad_w = self.x.transpose_times(&residual) + &w * self.penalty;
        let grad_b = residual.sum_dim_intlist(0, false, Kind::Double);
        (loss, Tensor::cat(&[grad_w.view([-1]), grad_b], 0))
    }
}

/// L-BFGS's two-loop recursion: the inverse-Hessian estimate times `grad`.
fn two_loop(grad: &Tensor, history: &VecDeque<(Tensor, Tensor, f64)>) -> Tensor {
    let mut q = grad.copy();
    let mut alphas = Vec::with_capacity(history.len());
    for (s, y, rho) in history.iter().rev() {
        let alpha = rho * dot(s, &q);
        q -= y * alpha;
        alphas.push(alpha);
    }
    if let Some((s, y, _)) = history.back() {
        q *= dot(s, y) / dot(y, y);
    }
    for ((s, y, rho), alpha) in history.iter().zip(alphas.into_iter().rev()) {
        let beta = rho * dot(y, &q);
        q += s * (alpha - beta);
    }
    q
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.dot(b).double_value(&[])
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use taskmoe_data::{EncodedExample, Label};

    use super::super::tfidf::Vocabulary;
    use super::*;

    /// Three classes over overlapping tokens (not separable), so the optimum is interior.
    fn data() -> (Features, Vec<i64>) {
        let rows: [(&[i64], i64); 9] = [
            (&[1, 2], 0),
            (&[1, 3], 0),
            (&[2, 4], 0),
            (&[3, 4], 1),
            (&[3, 5], 1),
            (&[1, 5], 1),
            (&[5, 6], 2),
            (&[6, 2], 2),
            (&[4, 6, 6], 2),
        ];
        let examples: Vec<EncodedExample> = rows
            .iter()
            .enumerate()
            .map(|(i, (ids, label))| EncodedExample {
                id: i as u64,
                input_ids: ids.to_vec(),
                token_type_ids: vec![0; ids.len()],
                label: Label::Class(*label),
                source_id: None,
            })
            .collect();
        let vocab = Vocabulary::fit(&examples, &BTreeSet::new());
        let labels = rows.iter().map(|(_, l)| *l).collect();
        (vocab.transform(&examples), labels)
    }

    #[test]
    fn the_fit_is_a_stationary_point_of_the_objective() {
        let (x, labels) = data();
        let stopping = Stopping {
            max_iterations: 500,
            gradient_tolerance: 1e-8,
        };
        for penalty in [1e-3, 1e-1] {
            let (model, report) = SoftmaxRegression::fit(&x, &labels, 3, penalty, stopping);
            assert!(report.converged, "{report:?}");
            let onehot = Tensor::from_slice(&labels).one_hot(3).to_kind(Kind::Double);
            let objective = Objective {
                x: &x,
                onehot: &onehot,
                classes: 3,
                penalty,
            };
            let theta = Tensor::cat(&[model.weights.view([-1]), model.bias.shallow_clone()], 0);
            let (_, grad) = objective.eval(&theta);
            assert!(
                max_abs(&grad) < 1e-7,
                "penalty {penalty}: {}",
                max_abs(&grad)
            );
        }
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let (x, labels) = data();
        let onehot = Tensor::from_slice(&labels).one_hot(3).to_kind(Kind::Double);
        let objective = Objective {
            x: &x,
            onehot: &onehot,
            classes: 3,
            penalty: 0.3,
        };
        let len = (x.columns + 1) * 3;
        let theta = Tensor::arange(len, (Kind::Double, Device::Cpu)).sin();
        let (_, grad) = objective.eval(&theta);
        let grad = Vec::<f64>::try_from(&grad).unwrap();
        let h = 1e-6;
        for i in 0..len {
            let bump = Tensor::zeros([len], (Kind::Double, Device::Cpu)).index_fill(
                0,
                &Tensor::from_slice(&[i]),
                h,
            );
            let (up, _) = objective.eval(&(&theta + &bump));
            let (down, _) = objective.eval(&(&theta - &bump));
            let numeric = (up - down) / (2.0 * h);
            assert!(
                (numeric - grad[i as usize]).abs() < 1e-7,
                "{i}: {numeric} vs {}",
                grad[i as usize]
            );
        }
    }
}
