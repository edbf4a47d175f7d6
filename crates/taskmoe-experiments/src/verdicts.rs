//! The three claims decided together: every report declares one primary contrast
//! (task-MoE minus dense on the metric its claim names, fixed in the code before anything
//! runs); after each experiment, the primary contrasts of every report in the output folder
//! are decided by [`crate::stats::decide`] (Holm over the three claims, TOST for "no
//! effect") into `verdicts.md` and `verdicts.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};
use serde_json::json;

use crate::experiment::Experiment;
use crate::plot::{forest_plot, ForestRow};
use crate::report::{header, md_table};
use crate::stats::{
    decide, min_detectable_effect, paired, seeds_needed, ArmContrast, Decision, PrimaryContrast,
    Summary, ALPHA, EQUIVALENCE_MARGIN, POWER, PRIMARY_CONTRASTS,
};

/// The claim each experiment's primary contrast decides, in words.
pub fn claim_text(claim: u8) -> &'static str {
    match claim {
        1 => "low-resource tasks in a mixture of related and unrelated tasks do better with task-MoE than with dense",
        2 => "unseen tasks learn from few examples better with task-MoE reusing a related task's routing than with dense from the same source",
        _ => "training on unrelated tasks afterwards makes the original tasks forget less with task-MoE than with dense",
    }
}

/// How a report states its primary contrast before the Holm decision: the uncorrected
/// difference, the spread and the minimum detectable effect of its seeds.
pub fn describe(contrast: &PrimaryContrast) -> String {
    let d: Vec<f64> = contrast
        .a
        .iter()
        .zip(&contrast.b)
        .map(|(a, b)| a - b)
        .collect();
    let s = Summary::of(&d);
    let alpha = ALPHA / PRIMARY_CONTRASTS as f64;
    format!(
        "Primary contrast of claim {} (declared before the runs): {}. Per-seed difference \
         {:+.4} ± {:.4} (mean ± std over {} seeds). With this spread, {} seeds detect a true \
         difference of {:.4} with {:.0}% power at the most stringent Holm level {alpha:.4}; a \
         2-point effect needs {} seeds. The decided verdict (Holm over the three claims, TOST at \
         ±{EQUIVALENCE_MARGIN}) is in `../verdicts.md`.\n",
        contrast.claim,
        contrast.name,
        s.mean,
        s.std,
        s.n,
        s.n,
        min_detectable_effect(s.n, s.std, alpha),
        POWER * 100.0,
        seeds_needed(0.02, s.std, alpha),
    )
}

/// Reads the primary contrast of every experiment whose `results.json` is in `out`, decides
/// them, writes `out/verdicts.md`, `out/verdicts.json` and the forest plot `out/forest.svg`
/// (every arm's contrast against its claim's baseline), and returns the markdown.
pub fn write(out: &Path) -> Result<String> {
    let found = read(out)?;
    let decisions = decide(&found.primaries);
    let mut md = markdown(&decisions);
    let rows = forest_rows("", &decisions, &found.arms);
    if !rows.is_empty() {
        let svg = forest_plot(
            "Every arm against its claim's baseline (seed-paired differences)",
            "difference in test accuracy (arm - baseline)",
            &rows,
            Some(EQUIVALENCE_MARGIN),
        );
        let path = out.join("forest.svg");
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        let _ = writeln!(
            md,
            "\n## Forest plot\n\nEvery arm against its claim's baseline: the primary \
             contrasts at their Holm interval with their verdict, every other arm (controls \
             included) at its uncorrected 95% interval, descriptive. The band is the \
             equivalence margin ±{EQUIVALENCE_MARGIN}.\n\n![forest plot](forest.svg)\n"
        );
    }
    let json = json!({
        "provenance": crate::preregistration::provenance_json(),
        "alpha": ALPHA,
        "equivalence_margin": EQUIVALENCE_MARGIN,
        "contrasts_corrected_over": PRIMARY_CONTRASTS,
        "decisions": decisions,
    });
    write_files(out, md, &json)
}

/// What the reports of one output folder hold for the verdicts.
struct Found {
    /// Each report's primary contrast, by claim.
    primaries: Vec<PrimaryContrast>,
    /// Every arm contrast of every report.
    arms: Vec<ArmContrast>,
    /// Each report's provenance (`experiment name`, protocol hash and commit).
    provenance: Vec<(String, serde_json::Value)>,
}

/// Reads the primary and arm contrasts of every experiment whose `results.json` is in `out`.
fn read(out: &Path) -> Result<Found> {
    let mut contrasts = Vec::new();
    let mut arm_contrasts: Vec<ArmContrast> = Vec::new();
    let mut provenance = Vec::new();
    for experiment in Experiment::ALL {
        let path = out.join(experiment.name()).join("results.json");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(p) = value.get("primary").filter(|p| !p.is_null()) {
            let c: PrimaryContrast = serde_json::from_value(p.clone())
                .with_context(|| format!("{}: key `primary`", path.display()))?;
            contrasts.push(c);
        }
        if let Some(a) = value.get("arm_contrasts").filter(|a| !a.is_null()) {
            let arms: Vec<ArmContrast> = serde_json::from_value(a.clone())
                .with_context(|| format!("{}: key `arm_contrasts`", path.display()))?;
            arm_contrasts.extend(arms);
        }
        if let Some(p) = value.get("provenance") {
            provenance.push((experiment.name().to_string(), p.clone()));
        }
    }
    contrasts.sort_by_key(|c| c.claim);
    Ok(Found {
        primaries: contrasts,
        arms: arm_contrasts,
        provenance,
    })
}

/// The verdicts of several benchmarks side by side: for each `(name, folder)` (an experiment
/// output folder), its three claims decided as [`write()`] decides them (Holm within the
/// benchmark), in one table with the provenance of every report, and one forest plot of every
/// arm of every benchmark. Writes `out/verdicts.md`, `out/verdicts.json` and `out/forest.svg`
/// and returns the markdown.
pub fn across(benchmarks: &[(String, PathBuf)], out: &Path) -> Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut rows = Vec::new();
    let mut forest = Vec::new();
    let mut json_benchmarks = Vec::new();
    let mut sources = String::new();
    for (name, dir) in benchmarks {
        let found = read(dir)?;
        if found.primaries.is_empty() {
            bail!(
                "{}: no report with a primary contrast (no */results.json)",
                dir.display()
            );
        }
        let decisions = decide(&found.primaries);
        for d in &decisions {
            rows.push(vec![
                name.clone(),
                d.contrast.claim.to_string(),
                d.diff.n.to_string(),
                format!("{:+.4}", d.diff.mean),
                format!("[{:+.4}, {:+.4}]", d.low, d.high),
                format!("{:.4}", d.p_holm),
                format!("{:.4}", d.min_detectable_effect),
                format!("**{}**", d.verdict.word()),
            ]);
        }
        forest.extend(forest_rows(&format!("{name} · "), &decisions, &found.arms));
        let current = crate::preregistration::protocol_sha256();
        for (experiment, p) in &found.provenance {
            let hash = p["protocol_sha256"].as_str().unwrap_or("?");
            let _ = writeln!(
                sources,
                "- {name}, {experiment}: `{}/results.json`, protocol SHA-256 `{hash}`{}, commit \
                 `{}`",
                dir.join(experiment).display(),
                if hash == current {
                    ""
                } else {
                    " (**not the protocol of this build**)"
                },
                p["commit"].as_str().unwrap_or("?"),
            );
        }
        json_benchmarks.push(json!({
            "name": name,
            "folder": dir,
            "decisions": decisions,
            "provenance": found.provenance.iter().map(|(e, p)| (e.clone(), p.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        }));
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# The three claims on every benchmark\n\nEach benchmark's three primary contrasts \
         are decided together as in its own `verdicts.md` (paired t-tests, Holm over three at \
         family-wise level {ALPHA}, TOST at ±{EQUIVALENCE_MARGIN}). Written by `taskmoe \
         verdicts` from the reports listed below.\n\n{}\n{}",
        md_table(
            &header(&[
                "benchmark",
                "claim",
                "seeds",
                "difference",
                "Holm interval",
                "p (Holm)",
                "detectable (80%)",
                "verdict",
            ]),
            &rows
        ),
        crate::preregistration::provenance_line(),
    );
    let svg = forest_plot(
        "Every arm against its claim's baseline, every benchmark (seed-paired differences)",
        "difference in test accuracy (arm - baseline)",
        &forest,
        Some(EQUIVALENCE_MARGIN),
    );
    std::fs::write(out.join("forest.svg"), svg)
        .with_context(|| format!("writing {}", out.join("forest.svg").display()))?;
    let _ = writeln!(
        md,
        "\n![forest plot](forest.svg)\n\nPrimary contrasts at their Holm interval with their \
         verdict; every other arm at its uncorrected 95% interval (descriptive).\n\n\
         ## Sources\n\n{sources}"
    );
    let json = json!({
        "provenance": crate::preregistration::provenance_json(),
        "alpha": ALPHA,
        "equivalence_margin": EQUIVALENCE_MARGIN,
        "benchmarks": json_benchmarks,
    });
    write_files(out, md, &json)
}

/// Writes `verdicts.md` and `verdicts.json` (with a final newline) into `out`; returns the
/// markdown.
fn write_files(out: &Path, md: String, json: &serde_json::Value) -> Result<String> {
    let md_path = out.join("verdicts.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let json_path = out.join("verdicts.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(md)
}

/// The forest plot's rows (their group headings after `prefix`), claim by claim: the decided
/// primary contrast (Holm interval and verdict) first, then every arm contrast of that claim
/// (uncorrected 95% interval).
pub fn forest_rows(prefix: &str, decisions: &[Decision], arms: &[ArmContrast]) -> Vec<ForestRow> {
    let mut rows = Vec::new();
    for claim in 1..=3u8 {
        let group = match claim {
            1 => "Claim 1: arm - dense, low-resource tasks' mean",
            2 => "Claim 2: arm - dense from the family source, unseen tasks' mean",
            _ => "Claim 3: arm's forgetting - dense's (original tasks)",
        };
        let group = format!("{prefix}{group}");
        for d in decisions.iter().filter(|d| d.contrast.claim == claim) {
            rows.push(ForestRow {
                group: group.clone(),
                label: "task-MoE, primary (Holm interval)".into(),
                estimate: d.diff.mean,
                low: d.low,
                high: d.high,
                verdict: Some(d.verdict.word().to_string()),
            });
        }
        for a in arms.iter().filter(|a| a.claim == claim) {
            if a.a.len() != a.b.len() || a.a.is_empty() {
                continue;
            }
            let c = paired(&a.a, &a.b);
            rows.push(ForestRow {
                group: group.clone(),
                label: a.arm.clone(),
                estimate: c.diff.mean,
                low: c.low,
                high: c.high,
                verdict: None,
            });
        }
    }
    rows
}

fn markdown(decisions: &[Decision]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# The three claims, decided\n\nOne primary contrast per claim (task-MoE minus dense, \
         seed-paired), decided together: two-sided paired t-tests with Holm's correction over \
         {PRIMARY_CONTRASTS} contrasts (family-wise level {ALPHA}; a claim whose experiment has \
         not run counts as not rejected). **held**: Holm rejects \"no difference\" and task-MoE \
         is better; **worse**: rejected and dense is better; **no effect**: the two one-sided \
         tests at the same level place the difference within ±{EQUIVALENCE_MARGIN}; otherwise \
         **inconclusive**, with the minimum detectable effect (80% power) of the seeds used.\n\n{}\n",
        crate::preregistration::provenance_line()
    );
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            vec![
                d.contrast.claim.to_string(),
                d.contrast.name.clone(),
                d.diff.n.to_string(),
                format!("{:+.4}", d.diff.mean),
                format!("[{:+.4}, {:+.4}]", d.low, d.high),
                format!("{:.4}", d.alpha),
                format!("{:.4}", d.p_holm),
                format!("[{:+.4}, {:+.4}]", d.tost_low, d.tost_high),
                format!("{:.4}", d.min_detectable_effect),
                format!("**{}**", d.verdict.word()),
            ]
        })
        .collect();
    let _ = writeln!(
        md,
        "{}",
        md_table(
            &header(&[
                "claim",
                "primary contrast",
                "seeds",
                "difference",
                "Holm interval",
                "Holm level",
                "p (Holm)",
                "TOST interval",
                "detectable (80%)",
                "verdict",
            ]),
            &rows
        )
    );
    for d in decisions {
        let _ = writeln!(
            md,
            "- Claim {} ({}): **{}**.",
            d.contrast.claim,
            claim_text(d.contrast.claim),
            d.verdict.word()
        );
    }
    md
}
