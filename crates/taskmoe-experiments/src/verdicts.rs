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
    if s.n < 2 {
        return format!(
            "Primary contrast of claim {} (declared before the runs): {}. Difference {:+.4} on \
             one seed: no spread, so no interval and no detectable effect; it decides nothing \
             until seeds are added (other chunks of this benchmark are merged by `taskmoe \
             verdicts`).\n",
            contrast.claim, contrast.name, s.mean
        );
    }
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

/// What the reports of one benchmark hold for the verdicts (one output folder, or the merged
/// chunks of one).
struct Found {
    /// Each report's primary contrast, by claim.
    primaries: Vec<PrimaryContrast>,
    /// Every arm contrast of every report.
    arms: Vec<ArmContrast>,
    /// Each report's provenance (`experiment name`, protocol hash and commit) and the
    /// `results.json` files it was read from.
    provenance: Vec<(String, serde_json::Value, Vec<PathBuf>)>,
}

/// The keys of a `results.json` that record choices made on the tuning seeds: chunks of one
/// benchmark must agree on them to be merged.
const CHOICE_KEYS: [&str; 2] = ["chosen_temperature", "learning_rates"];

/// What one experiment's `results.json` holds for the verdicts.
struct ExperimentResults {
    experiment: &'static str,
    path: PathBuf,
    primary: Option<PrimaryContrast>,
    arms: Vec<ArmContrast>,
    provenance: serde_json::Value,
    /// The seeds behind the per-seed lists (`None` in reports written before chunks existed).
    seeds: Option<Vec<u64>>,
    /// The tuning seeds' choices ([`CHOICE_KEYS`]).
    choices: serde_json::Value,
}

/// Reads the results of every experiment whose `results.json` is in `out`.
fn read_folder(out: &Path) -> Result<Vec<ExperimentResults>> {
    let mut found = Vec::new();
    for experiment in Experiment::ALL {
        let path = out.join(experiment.name()).join("results.json");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let key = |k: &str| value.get(k).filter(|v| !v.is_null()).cloned();
        let primary = key("primary")
            .map(serde_json::from_value)
            .transpose()
            .with_context(|| format!("{}: key `primary`", path.display()))?;
        let arms = key("arm_contrasts")
            .map(serde_json::from_value)
            .transpose()
            .with_context(|| format!("{}: key `arm_contrasts`", path.display()))?
            .unwrap_or_default();
        let seeds = key("seeds")
            .map(serde_json::from_value)
            .transpose()
            .with_context(|| format!("{}: key `seeds`", path.display()))?;
        let choices = CHOICE_KEYS
            .iter()
            .filter_map(|k| key(k).map(|v| (k.to_string(), v)))
            .collect::<serde_json::Map<_, _>>();
        found.push(ExperimentResults {
            experiment: experiment.name(),
            primary,
            arms,
            provenance: key("provenance").unwrap_or(serde_json::Value::Null),
            seeds,
            choices: choices.into(),
            path,
        });
    }
    Ok(found)
}

/// Reads the primary and arm contrasts of every experiment whose `results.json` is in `out`.
fn read(out: &Path) -> Result<Found> {
    read_chunks(&[out.to_path_buf()])
}

/// Reads the reports of one benchmark run in chunks (one output folder per seed range) and
/// merges their per-seed lists in seed order. Chunks merge only when they hold the same
/// experiments, were written by the same build under the same protocol with the same settings
/// ([`run_settings`]), made the same choices on the tuning seeds, compare the same arms and
/// cover disjoint seeds; otherwise the error names both files.
fn read_chunks(dirs: &[PathBuf]) -> Result<Found> {
    let mut chunks = Vec::with_capacity(dirs.len());
    for dir in dirs {
        chunks.push(read_folder(dir)?);
    }
    let mut found = Found {
        primaries: Vec::new(),
        arms: Vec::new(),
        provenance: Vec::new(),
    };
    for experiment in Experiment::ALL {
        let name = experiment.name();
        let parts: Vec<ExperimentResults> = chunks
            .iter_mut()
            .filter_map(|chunk| {
                let i = chunk.iter().position(|r| r.experiment == name)?;
                Some(chunk.swap_remove(i))
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        if parts.len() != dirs.len() {
            bail!(
                "{} has {name}/results.json but {} of the {} chunks given do not: the chunks \
                 of a benchmark must hold the same experiments",
                parts[0].path.display(),
                dirs.len() - parts.len(),
                dirs.len()
            );
        }
        let merged = merge(parts)?;
        if let Some(p) = merged.primary {
            found.primaries.push(p);
        }
        found.arms.extend(merged.arms);
        found
            .provenance
            .push((name.to_string(), merged.provenance, merged.paths));
    }
    found.primaries.sort_by_key(|c| c.claim);
    Ok(found)
}

/// Settings keys that may differ between chunks of one benchmark: which seeds, how many runs
/// at a time, and where the base run's file was written (inside the chunk's folder).
const CHUNK_KEYS: [&str; 4] = ["seeds", "first_seed", "jobs", "run_config"];

/// What must be equal for the chunks of a benchmark to merge, read beside `results`: the
/// experiment settings (`settings.toml`) without [`CHUNK_KEYS`], and the resolved base run
/// (`base-run.resolved.toml`).
fn run_settings(results: &Path) -> Result<(toml::Table, String)> {
    let dir = results.parent().unwrap_or(Path::new("."));
    let read = |name: &str| -> Result<String> {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (a chunk's settings, compared before merging)",
                path.display()
            )
        })
    };
    let settings_path = dir.join("settings.toml");
    let mut settings: toml::Table = toml::from_str(&read("settings.toml")?)
        .with_context(|| format!("parsing {}", settings_path.display()))?;
    for key in CHUNK_KEYS {
        settings.remove(key);
    }
    Ok((settings, read("base-run.resolved.toml")?))
}

/// One experiment's results merged over chunks.
struct Merged {
    primary: Option<PrimaryContrast>,
    arms: Vec<ArmContrast>,
    provenance: serde_json::Value,
    paths: Vec<PathBuf>,
}

/// Merges one experiment's results from several chunks (see [`read_chunks`]).
fn merge(mut parts: Vec<ExperimentResults>) -> Result<Merged> {
    if parts.len() == 1 {
        let p = parts.pop().expect("one part");
        return Ok(Merged {
            primary: p.primary,
            arms: p.arms,
            provenance: p.provenance,
            paths: vec![p.path],
        });
    }
    for p in &parts {
        let Some(seeds) = &p.seeds else {
            bail!(
                "{}: no `seeds` list (written before reports recorded their seeds), so its \
                 per-seed numbers cannot be merged with another chunk's",
                p.path.display()
            );
        };
        let n = p.primary.as_ref().map_or(seeds.len(), |c| c.a.len());
        if n != seeds.len() {
            bail!(
                "{}: {} seeds listed but the primary contrast has {n} per-seed values",
                p.path.display(),
                seeds.len()
            );
        }
    }
    parts.sort_by_key(|p| p.seeds.as_ref().and_then(|s| s.first().copied()));
    let first = &parts[0];
    let mut seen = std::collections::BTreeMap::new();
    for p in &parts {
        for &seed in p.seeds.as_ref().expect("checked above") {
            if let Some(other) = seen.insert(seed, &p.path) {
                bail!(
                    "seed {seed} is in both {} and {}: chunks must cover disjoint seeds",
                    other.display(),
                    p.path.display()
                );
            }
        }
        let differ = |what: &str| -> Result<()> {
            bail!(
                "{} and {} differ in {what}: chunks merge only when one build ran them all \
                 with the same choices",
                first.path.display(),
                p.path.display()
            )
        };
        if p.provenance != first.provenance {
            differ("provenance (protocol hash or build commit)")?;
        }
        if p.choices != first.choices {
            differ("the choices made on the tuning seeds")?;
        }
        if run_settings(&p.path)? != run_settings(&first.path)? {
            differ("their settings (settings.toml without the seeds, jobs and the path of the base run, or base-run.resolved.toml)")?;
        }
        if p.primary.as_ref().map(|c| (c.claim, &c.name))
            != first.primary.as_ref().map(|c| (c.claim, &c.name))
        {
            differ("their primary contrast")?;
        }
        let arm_names = |r: &ExperimentResults| -> Vec<(u8, String, String)> {
            r.arms
                .iter()
                .map(|a| (a.claim, a.arm.clone(), a.name.clone()))
                .collect()
        };
        if arm_names(p) != arm_names(first) {
            differ("their arms")?;
        }
    }
    let mut merged = Merged {
        primary: first.primary.clone().map(|mut c| {
            c.a.clear();
            c.b.clear();
            c
        }),
        arms: first
            .arms
            .iter()
            .cloned()
            .map(|mut a| {
                a.a.clear();
                a.b.clear();
                a
            })
            .collect(),
        provenance: first.provenance.clone(),
        paths: Vec::new(),
    };
    for p in parts {
        if let (Some(m), Some(c)) = (merged.primary.as_mut(), p.primary) {
            m.a.extend(c.a);
            m.b.extend(c.b);
        }
        for (m, a) in merged.arms.iter_mut().zip(p.arms) {
            m.a.extend(a.a);
            m.b.extend(a.b);
        }
        merged.paths.push(p.path);
    }
    Ok(merged)
}

/// The verdicts of several benchmarks side by side: for each `(name, folder)` (an experiment
/// output folder), its three claims decided as [`write()`] decides them (Holm within the
/// benchmark), in one table with the provenance of every report, and one forest plot of every
/// arm of every benchmark. A name given with several folders is one benchmark run in chunks
/// (disjoint seed ranges, `first_seed`): their per-seed results are merged first (same build,
/// protocol and tuning choices, or an error). Writes `out/verdicts.md`, `out/verdicts.json`
/// (the merging build's protocol and commit under `merged_by`; each benchmark's runs' under
/// its `provenance`, per experiment) and `out/forest.svg` and returns the markdown.
pub fn across(benchmarks: &[(String, PathBuf)], out: &Path) -> Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut grouped: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for (name, dir) in benchmarks {
        match grouped.iter_mut().find(|(n, _)| n == name) {
            Some((_, dirs)) => dirs.push(dir.clone()),
            None => grouped.push((name.clone(), vec![dir.clone()])),
        }
    }
    let mut rows = Vec::new();
    let mut forest = Vec::new();
    let mut json_benchmarks = Vec::new();
    let mut sources = String::new();
    for (name, dirs) in &grouped {
        let found = read_chunks(dirs)?;
        let folders = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if found.primaries.is_empty() {
            bail!("{folders}: no report with a primary contrast (no */results.json)");
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
        for (experiment, p, paths) in &found.provenance {
            let hash = p["protocol_sha256"].as_str().unwrap_or("?");
            let files = paths
                .iter()
                .map(|f| format!("`{}`", f.display()))
                .collect::<Vec<_>>()
                .join(" + ");
            let _ = writeln!(
                sources,
                "- {name}, {experiment}: {files}, protocol SHA-256 `{hash}`{}, commit `{}`",
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
            "folders": dirs,
            "decisions": decisions,
            "provenance": found.provenance.iter().map(|(e, p, _)| (e.clone(), p.clone())).collect::<std::collections::BTreeMap<_, _>>(),
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
        crate::preregistration::merge_provenance_line(),
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
    // The merging build's protocol and commit under their own name: the runs' build is in
    // each benchmark's `provenance` (one build per benchmark, checked when its chunks merge).
    let json = json!({
        "merged_by": crate::preregistration::provenance_json(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake experiment output folder: every experiment's `results.json` with a primary and
    /// one arm contrast over `seeds`, the values `base + seed / 100`.
    fn chunk(dir: &Path, seeds: &[u64], commit: &str, temperature: f64) {
        for (claim, experiment) in Experiment::ALL.iter().enumerate() {
            let a: Vec<f64> = seeds.iter().map(|&s| 0.8 + s as f64 / 100.0).collect();
            let b: Vec<f64> = seeds.iter().map(|&s| 0.7 + s as f64 / 100.0).collect();
            let claim = claim as u8 + 1;
            let value = json!({
                "primary": {"claim": claim, "name": "task-moe - dense", "a": a, "b": b},
                "arm_contrasts": [{"claim": claim, "arm": "task-dense", "name": "task-dense - dense", "a": b, "b": b}],
                "provenance": {"protocol_sha256": "p", "commit": commit},
                "chosen_temperature": {"dense": temperature},
                "seeds": seeds,
            });
            let d = dir.join(experiment.name());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("results.json"), value.to_string()).unwrap();
            let settings = format!(
                "seeds = {}\nfirst_seed = {}\njobs = 2\nrun_config = \"{}\"\npatience = 3\n",
                seeds.last().unwrap() + 1,
                seeds[0],
                dir.join("base-run.toml").display()
            );
            std::fs::write(d.join("settings.toml"), settings).unwrap();
            std::fs::write(d.join("base-run.resolved.toml"), "[train]\nsteps = 300\n").unwrap();
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("taskmoe-verdicts-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn one_seed_is_described_without_an_interval() {
        let c = PrimaryContrast {
            claim: 2,
            name: "x".into(),
            a: vec![0.8],
            b: vec![0.7],
        };
        let text = describe(&c);
        assert!(text.contains("one seed") && !text.contains("inf"), "{text}");
    }

    #[test]
    fn chunks_of_disjoint_seeds_merge_in_seed_order() {
        let root = scratch("merge");
        let (early, late) = (root.join("early"), root.join("late"));
        chunk(&early, &[0, 1], "abc", 2.0);
        chunk(&late, &[2, 3, 4], "abc", 2.0);
        // Given late first: merged in seed order all the same.
        let found = read_chunks(&[late.clone(), early.clone()]).unwrap();
        assert_eq!(found.primaries.len(), 3);
        for p in &found.primaries {
            let want: Vec<f64> = (0..5).map(|s| 0.8 + s as f64 / 100.0).collect();
            assert_eq!(p.a, want, "claim {}", p.claim);
            assert_eq!(p.b.len(), 5);
        }
        assert!(found.arms.iter().all(|a| a.a.len() == 5 && a.b.len() == 5));
        assert!(found
            .provenance
            .iter()
            .all(|(_, _, files)| files.len() == 2));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn chunks_that_overlap_or_differ_in_build_or_choices_are_refused_by_name() {
        let root = scratch("refuse");
        let base = root.join("base");
        chunk(&base, &[0, 1], "abc", 2.0);
        let refused = |dir: &Path, seeds: &[u64], commit: &str, t: f64| -> String {
            let _ = std::fs::remove_dir_all(dir);
            chunk(dir, seeds, commit, t);
            match read_chunks(&[base.clone(), dir.to_path_buf()]) {
                Ok(_) => panic!("merged {}", dir.display()),
                Err(e) => e.to_string(),
            }
        };
        let e = refused(&root.join("overlap"), &[1, 2], "abc", 2.0);
        assert!(e.contains("seed 1 is in both"), "{e}");
        let e = refused(&root.join("build"), &[2, 3], "def", 2.0);
        assert!(e.contains("provenance") && e.contains("build"), "{e}");
        let e = refused(&root.join("choice"), &[2, 3], "abc", 1.0);
        assert!(e.contains("tuning seeds"), "{e}");
        // Settings that change what is measured (not the seeds, jobs or folder) are refused.
        let other = root.join("settings");
        chunk(&other, &[2, 3], "abc", 2.0);
        let path = other.join("low-resource/settings.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("patience = 3", "patience = 5")).unwrap();
        let e = read_chunks(&[base.clone(), other.clone()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("their settings"), "{e}");
        std::fs::write(&path, text).unwrap();
        let run = other.join("unseen/base-run.resolved.toml");
        std::fs::write(&run, "[train]\nsteps = 301\n").unwrap();
        let e = read_chunks(&[base.clone(), other])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("base-run.resolved.toml"), "{e}");
        // A report written before reports listed their seeds cannot be placed.
        let old = root.join("old");
        chunk(&old, &[2, 3], "abc", 2.0);
        let path = old.join("unseen/results.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("seeds");
        std::fs::write(&path, v.to_string()).unwrap();
        let e = read_chunks(&[base.clone(), old]).err().unwrap().to_string();
        assert!(
            e.contains("unseen/results.json") && e.contains("seeds"),
            "{e}"
        );
        // A chunk without one of the experiments.
        let partial = root.join("partial");
        chunk(&partial, &[2, 3], "abc", 2.0);
        std::fs::remove_dir_all(partial.join("unrelated")).unwrap();
        let e = read_chunks(&[base.clone(), partial])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("same experiments"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
