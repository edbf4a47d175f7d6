//! Means, spreads and paired comparisons over seeds, and the decision rule of the claims.
//!
//! Each claim has one **primary contrast** declared before anything runs (task-MoE minus
//! dense, on the metric the claim names; see `verdicts.rs`). The three primary contrasts
//! are decided together: two-sided paired t-tests, **Holm's** step-down correction over the
//! three at family-wise level [`ALPHA`], and
//! - **held** when the Holm-corrected interval lies above 0,
//! - **worse** when it lies below 0 (dense is better),
//! - **no effect** when the two one-sided tests at the same corrected level put the
//!   difference inside `±`[`EQUIVALENCE_MARGIN`] (TOST),
//! - **inconclusive** otherwise; the report then states the minimum detectable effect at 80%
//!   power ([`min_detectable_effect`]) that was out of reach.
//!
//! Every other comparison of a report is descriptive: an uncorrected 95% interval, no verdict.

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

    /// `0.712 ± 0.015` (three decimals); a single value alone, `0.712`; none, `-`.
    pub fn show(&self) -> String {
        match self.n {
            0 => "-".into(),
            // One value has no spread: printing "± 0.000" would claim one.
            1 => format!("{:.3}", self.mean),
            _ => format!("{:.3} ± {:.3}", self.mean, self.std),
        }
    }

    /// The standard error of the mean.
    pub fn sem(&self) -> f64 {
        self.std / (self.n as f64).sqrt()
    }
}

/// A descriptive paired comparison `a - b` over seeds: the mean difference and its
/// uncorrected two-sided 95% Student-t interval. No verdict: only primary contrasts get one
/// ([`decide`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The per-seed differences, summarised.
    pub diff: Summary,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Comparison {
    /// `+0.031 [-0.004, +0.066]`: the mean difference and its 95% interval.
    pub fn show(&self) -> String {
        if self.diff.n < 2 {
            return format!("{:+.3} (one seed, no interval)", self.diff.mean);
        }
        format!(
            "{:+.3} [{:+.3}, {:+.3}]",
            self.diff.mean, self.low, self.high
        )
    }
}

/// Compares `a[i] - b[i]` (pairs share a seed): mean difference and uncorrected 95% interval.
pub fn paired(a: &[f64], b: &[f64]) -> Comparison {
    let diff = Summary::of(&differences(a, b));
    let (low, high) = interval(&diff, 0.05);
    Comparison { diff, low, high }
}

fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    assert_eq!(a.len(), b.len(), "paired values come in pairs");
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// The two-sided `1 - alpha` Student-t interval of the mean of `d` (infinite for one value).
fn interval(d: &Summary, alpha: f64) -> (f64, f64) {
    if d.n < 2 {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    let half = t_quantile(1.0 - alpha / 2.0, (d.n - 1) as f64) * d.sem();
    (d.mean - half, d.mean + half)
}

/// The family-wise error rate of the three primary contrasts.
pub const ALPHA: f64 = 0.05;

/// The equivalence margin of "no effect": one accuracy point.
pub const EQUIVALENCE_MARGIN: f64 = 0.01;

/// The number of primary contrasts Holm's correction runs over: one per claim, whether or not
/// every experiment has run (a missing one counts as not rejected, which keeps the correction
/// valid).
pub const PRIMARY_CONTRASTS: usize = 3;

/// The power the minimum detectable effect is stated at.
pub const POWER: f64 = 0.8;

/// What a primary contrast says about its claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The Holm-corrected interval lies above 0.
    Held,
    /// The Holm-corrected interval lies below 0: the baseline is better.
    Worse,
    /// Equivalent to no difference within ±[`EQUIVALENCE_MARGIN`] (TOST at the corrected
    /// level).
    NoEffect,
    /// None of the above.
    Inconclusive,
}

impl Verdict {
    /// `held`, `worse`, `no effect` or `inconclusive`.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Held => "held",
            Verdict::Worse => "worse",
            Verdict::NoEffect => "no effect",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// One primary contrast, before the decision: per-seed scores of the two arms.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct PrimaryContrast {
    /// The claim (1, 2 or 3).
    pub claim: u8,
    /// What is compared, e.g. `task-moe:per-task - dense, mean test accuracy of the
    /// low-resource tasks at n = 32`.
    pub name: String,
    /// Per-seed scores of the arm the claim favours.
    pub a: Vec<f64>,
    /// Per-seed scores of the baseline, same seeds.
    pub b: Vec<f64>,
}

/// One arm against the claim's baseline on the claim's primary metric, per seed: every arm,
/// the controls included, becomes a row of the forest plot (uncorrected 95% interval; only
/// the primary contrast is decided).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ArmContrast {
    /// The claim (1, 2 or 3).
    pub claim: u8,
    /// The arm compared (`task-moe`, `task-dense`, `task-moe + family routing`, ...).
    pub arm: String,
    /// What is compared, in words.
    pub name: String,
    /// Per-seed scores of the arm.
    pub a: Vec<f64>,
    /// Per-seed scores of the baseline, same seeds.
    pub b: Vec<f64>,
}

/// A decided primary contrast.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// The contrast.
    pub contrast: PrimaryContrast,
    /// The per-seed differences `a - b`, summarised.
    pub diff: Summary,
    /// Two-sided p-value of "no difference" (paired t-test).
    pub p_value: f64,
    /// Holm-adjusted p-value.
    pub p_holm: f64,
    /// The level this contrast is tested at by Holm's step-down (`ALPHA / (m - rank)`).
    pub alpha: f64,
    /// The two-sided `1 - alpha` interval.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
    /// The `1 - 2 alpha` interval of the equivalence test (TOST at level `alpha`).
    pub tost_low: f64,
    /// Its upper end.
    pub tost_high: f64,
    /// The smallest true difference these seeds detect with power [`POWER`] at `alpha`,
    /// given the observed spread.
    pub min_detectable_effect: f64,
    /// The verdict.
    pub verdict: Verdict,
}

impl Decision {
    /// `+0.031 [+0.004, +0.058], p_Holm = 0.021: held`.
    pub fn show(&self) -> String {
        format!(
            "{:+.3} [{:+.3}, {:+.3}] (Holm level {:.4}), p_Holm = {:.3}: {}",
            self.diff.mean,
            self.low,
            self.high,
            self.alpha,
            self.p_holm,
            self.verdict.word()
        )
    }
}

/// Decides the primary contrasts together (Holm over [`PRIMARY_CONTRASTS`], or more if more
/// are given); see the module documentation for the rule. Contrasts with fewer than 2 seeds
/// are inconclusive with infinite intervals.
pub fn decide(contrasts: &[PrimaryContrast]) -> Vec<Decision> {
    let m = contrasts.len().max(PRIMARY_CONTRASTS);
    let stats: Vec<(Summary, f64)> = contrasts
        .iter()
        .map(|c| {
            let d = Summary::of(&differences(&c.a, &c.b));
            (d, p_value(&d))
        })
        .collect();
    // Holm: the i-th smallest p-value is tested at ALPHA / (m - i), stopping at the first
    // failure; adjusted p-values are the running maximum of (m - i) p.
    let mut order: Vec<usize> = (0..contrasts.len()).collect();
    order.sort_by(|&x, &y| stats[x].1.total_cmp(&stats[y].1));
    let mut p_holm = vec![1.0; contrasts.len()];
    let mut alpha = vec![ALPHA / m as f64; contrasts.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * stats[i].1).min(1.0));
        p_holm[i] = running;
        alpha[i] = ALPHA / (m - rank) as f64;
    }
    contrasts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (diff, p) = stats[i];
            // Holm rejects "no difference" exactly when the adjusted p-value is at most ALPHA
            // (every smaller p-value rejected at its own step); the interval at this step's
            // level then excludes 0.
            let rejected = p_holm[i] <= ALPHA;
            let a = alpha[i];
            let (low, high) = interval(&diff, a);
            let (tost_low, tost_high) = interval(&diff, 2.0 * a);
            let verdict = if diff.n < 2 {
                Verdict::Inconclusive
            } else if rejected && diff.mean > 0.0 {
                Verdict::Held
            } else if rejected && diff.mean < 0.0 {
                Verdict::Worse
            } else if tost_low > -EQUIVALENCE_MARGIN && tost_high < EQUIVALENCE_MARGIN {
                Verdict::NoEffect
            } else {
                Verdict::Inconclusive
            };
            Decision {
                contrast: c.clone(),
                diff,
                p_value: p,
                p_holm: p_holm[i],
                alpha: a,
                low,
                high,
                tost_low,
                tost_high,
                min_detectable_effect: min_detectable_effect(diff.n, diff.std, ALPHA / m as f64),
                verdict,
            }
        })
        .collect()
}

/// Two-sided p-value of a paired t-test of mean 0 (1 for fewer than 2 values; 0 for a
/// non-zero mean with zero spread).
fn p_value(d: &Summary) -> f64 {
    if d.n < 2 {
        return 1.0;
    }
    if d.std == 0.0 {
        return if d.mean == 0.0 { 1.0 } else { 0.0 };
    }
    let t = d.mean / d.sem();
    2.0 * (1.0 - t_cdf(t.abs(), (d.n - 1) as f64))
}

/// The smallest true mean difference a paired t-test over `n` seeds with difference spread
/// `sd` detects with probability [`POWER`] at two-sided level `alpha`:
/// `(t_{1 - alpha/2} + t_{POWER}) sd / sqrt(n)` with `n - 1` degrees of freedom.
pub fn min_detectable_effect(n: usize, sd: f64, alpha: f64) -> f64 {
    if n < 2 {
        return f64::INFINITY;
    }
    let df = (n - 1) as f64;
    (t_quantile(1.0 - alpha / 2.0, df) + t_quantile(POWER, df)) * sd / (n as f64).sqrt()
}

/// The fewest seeds whose [`min_detectable_effect`] is at most `effect` for a difference
/// spread `sd` at level `alpha` (capped at 1,000).
pub fn seeds_needed(effect: f64, sd: f64, alpha: f64) -> usize {
    (2..=1000)
        .find(|&n| min_detectable_effect(n, sd, alpha) <= effect)
        .unwrap_or(1000)
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (infinite for 0).
pub fn t_975(df: usize) -> f64 {
    if df == 0 {
        return f64::INFINITY;
    }
    t_quantile(0.975, df as f64)
}

/// The CDF of Student's t with `df` degrees of freedom at `t`.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * incomplete_beta(x, df / 2.0, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p` quantile of Student's t with `df` degrees of freedom, by bisection on [`t_cdf`].
pub fn t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "quantile of p = {p}");
    let (mut lo, mut hi) = (-1e4, 1e4);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The regularised incomplete beta function `I_x(a, b)` (continued fraction, Lentz's method).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(1.0 - x, b, a);
    }
    const TINY: f64 = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..500 {
        let m = m as f64;
        for numerator in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + numerator * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + numerator / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f / a
}

/// `ln Γ(x)` for `x > 0` (Lanczos approximation, g = 7, relative error about 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contrast(claim: u8, a: &[f64], b: &[f64]) -> PrimaryContrast {
        PrimaryContrast {
            claim,
            name: format!("claim {claim}"),
            a: a.to_vec(),
            b: b.to_vec(),
        }
    }

    #[test]
    fn summary_uses_the_sample_deviation() {
        let s = Summary::of(&[1.0, 2.0, 3.0]);
        assert_eq!(s.mean, 2.0);
        assert!((s.std - 1.0).abs() < 1e-12);
        assert_eq!(Summary::of(&[5.0]).std, 0.0);
        assert!(Summary::of(&[]).mean.is_nan());
    }

    #[test]
    fn t_distribution_matches_its_tables() {
        // Two-sided 95% quantiles of standard tables.
        for (df, q) in [
            (1, 12.706),
            (2, 4.303),
            (5, 2.571),
            (15, 2.131),
            (30, 2.042),
        ] {
            assert!((t_975(df) - q).abs() < 1e-3, "df {df}: {}", t_975(df));
        }
        assert!((t_quantile(0.8, 15.0) - 0.866).abs() < 1e-3);
        assert!((t_quantile(0.99, 10.0) - 2.764).abs() < 1e-3);
        assert!((t_cdf(0.0, 7.0) - 0.5).abs() < 1e-12);
        assert!((t_cdf(-2.0, 3.0) + t_cdf(2.0, 3.0) - 1.0).abs() < 1e-12);
        assert!(t_975(10_000) > 1.959 && t_975(10_000) < 1.961);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn holm_decides_the_three_contrasts_together() {
        let seeds = 16;
        let wave = |i: usize| 0.01 * ((i as f64) * 1.7).sin();
        let base: Vec<f64> = (0..seeds).map(|i| 0.7 + wave(i)).collect();
        let shift = |d: f64, noise: f64| -> Vec<f64> {
            (0..seeds)
                .map(|i| base[i] + d + noise * ((i as f64) * 2.3).cos())
                .collect()
        };
        let decisions = decide(&[
            contrast(1, &shift(0.05, 0.01), &base),  // a clear gain
            contrast(2, &shift(0.0, 0.004), &base),  // a tight zero
            contrast(3, &shift(-0.04, 0.01), &base), // a clear loss
        ]);
        let verdicts: Vec<Verdict> = decisions.iter().map(|d| d.verdict).collect();
        assert_eq!(
            verdicts,
            [Verdict::Held, Verdict::NoEffect, Verdict::Worse],
            "{decisions:#?}"
        );
        // Holm's levels are 0.05/3, 0.05/2, 0.05 in p order; the adjusted p-values never fall.
        let mut levels: Vec<f64> = decisions.iter().map(|d| d.alpha).collect();
        levels.sort_by(f64::total_cmp);
        assert!((levels[0] - ALPHA / 3.0).abs() < 1e-12);
        for d in &decisions {
            assert!(d.p_holm >= d.p_value);
            assert!(d.min_detectable_effect.is_finite());
        }

        // A noisy small gain: significant alone at 5% but not after the correction.
        let noisy: Vec<f64> = (0..seeds)
            .map(|i| base[i] + 0.012 + 0.025 * ((i as f64) * 2.3).cos())
            .collect();
        let alone = paired(&noisy, &base);
        let d = &decide(&[contrast(1, &noisy, &base)])[0];
        assert!(d.low <= alone.low, "the corrected interval is wider");
        assert_ne!(d.verdict, Verdict::Held, "{d:#?}");
        // One seed decides nothing.
        let one = &decide(&[contrast(1, &[0.9], &[0.5])])[0];
        assert_eq!(one.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn detectable_effects_shrink_with_seeds() {
        let sd = 0.02;
        let alpha = ALPHA / 3.0;
        let at3 = min_detectable_effect(3, sd, alpha);
        let at16 = min_detectable_effect(16, sd, alpha);
        assert!(at3 > 3.0 * at16, "{at3} vs {at16}");
        let n = seeds_needed(0.02, sd, alpha);
        assert!(min_detectable_effect(n, sd, alpha) <= 0.02);
        assert!(min_detectable_effect(n - 1, sd, alpha) > 0.02);
    }
}
