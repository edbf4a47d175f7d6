//! Means, spreads and paired comparisons over seeds, and the verdict rule of the reports.

use serde::Serialize;

/// Mean and sample standard deviation of values over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (`n - 1` in the denominator); 0 for one value.
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl Summary {
    /// Summarises `values` (NaN mean for none).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Summary {
                mean: f64::NAN,
                std: f64::NAN,
                n,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Summary { mean, std, n }
    }

    /// `0.712 ± 0.015` (three decimals).
    pub fn show(&self) -> String {
        if self.n == 0 {
            return "-".into();
        }
        format!("{:.3} ± {:.3}", self.mean, self.std)
    }
}

/// What a comparison says about a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The 95% interval of the difference lies above 0.
    Held,
    /// The 95% interval lies below the margin: no advantage of at least the margin.
    Failed,
    /// The interval contains both 0 and the margin (or there is one seed).
    Inconclusive,
}

impl Verdict {
    /// `held`, `failed` or `inconclusive`.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Held => "held",
            Verdict::Failed => "failed",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A paired comparison `a - b` over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The per-seed differences, summarised.
    pub diff: Summary,
    /// Lower end of the two-sided 95% Student-t interval of the mean difference.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// The verdict for "a is better than b by at least `margin`" (see [`Verdict`]).
    pub verdict: Verdict,
}

impl Comparison {
    /// `+0.031 [-0.004, +0.066] (inconclusive)`.
    pub fn show(&self) -> String {
        format!("{} ({})", self.interval(), self.verdict.word())
    }

    /// `+0.031 [-0.004, +0.066]`: the mean difference and its 95% interval.
    pub fn interval(&self) -> String {
        if self.diff.n < 2 {
            return format!("{:+.3} (one seed, no interval)", self.diff.mean);
        }
        format!(
            "{:+.3} [{:+.3}, {:+.3}]",
            self.diff.mean, self.low, self.high
        )
    }
}

/// The margin below which an advantage does not count: one accuracy point.
pub const MARGIN: f64 = 0.01;

/// The fewest seed pairs a verdict other than `Inconclusive` needs: with two, a discrete metric
/// on a small test set easily gives two equal differences and a zero-width interval.
pub const MIN_PAIRS: usize = 3;

/// Compares `a[i] - b[i]` (pairs share a seed). `Held` when the 95% interval of the mean
/// difference is above 0, `Failed` when it is below [`MARGIN`] (a is not better by a point),
/// else `Inconclusive`; with fewer than [`MIN_PAIRS`] pairs, always `Inconclusive` (the
/// interval is still reported from two pairs on).
pub fn paired(a: &[f64], b: &[f64]) -> Comparison {
    assert_eq!(a.len(), b.len(), "paired values come in pairs");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let diff = Summary::of(&d);
    if diff.n < 2 {
        return Comparison {
            diff,
            low: f64::NEG_INFINITY,
            high: f64::INFINITY,
            verdict: Verdict::Inconclusive,
        };
    }
    let half = t_975(diff.n - 1) * diff.std / (diff.n as f64).sqrt();
    let (low, high) = (diff.mean - half, diff.mean + half);
    let verdict = if diff.n < MIN_PAIRS {
        Verdict::Inconclusive
    } else if low > 0.0 {
        Verdict::Held
    } else if high < MARGIN {
        Verdict::Failed
    } else {
        Verdict::Inconclusive
    };
    Comparison {
        diff,
        low,
        high,
        verdict,
    }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        _ => 1.96 + 2.4 / df as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_the_sample_deviation() {
        let s = Summary::of(&[1.0, 2.0, 3.0]);
        assert_eq!(s.mean, 2.0);
        assert!((s.std - 1.0).abs() < 1e-12);
        assert_eq!(Summary::of(&[5.0]).std, 0.0);
        assert!(Summary::of(&[]).mean.is_nan());
    }

    #[test]
    fn verdicts_follow_the_interval() {
        // Consistent gains of ~5 points: held.
        let c = paired(&[0.80, 0.82, 0.81], &[0.75, 0.77, 0.76]);
        assert_eq!(c.verdict, Verdict::Held);
        assert!((c.diff.mean - 0.05).abs() < 1e-9);
        // Consistent losses: failed.
        assert_eq!(
            paired(&[0.70, 0.71, 0.72], &[0.75, 0.77, 0.76]).verdict,
            Verdict::Failed
        );
        // Noisy: inconclusive.
        assert_eq!(
            paired(&[0.80, 0.70, 0.78], &[0.75, 0.77, 0.74]).verdict,
            Verdict::Inconclusive
        );
        // One or two seeds are never enough, however consistent.
        assert_eq!(paired(&[0.9], &[0.5]).verdict, Verdict::Inconclusive);
        let two = paired(&[0.75, 0.75], &[0.5, 0.5]);
        assert_eq!((two.low, two.verdict), (0.25, Verdict::Inconclusive));
    }

    #[test]
    fn t_quantiles() {
        assert_eq!(t_975(2), 4.303);
        assert!(t_975(1000) > 1.96 && t_975(1000) < 1.97);
    }
}
