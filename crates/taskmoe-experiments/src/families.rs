//! The router-family table (`taskmoe families`): every gating family trained on one run
//! configuration with the same data, budget and seeds, side by side.
//!
//! Each arm is a name and the overrides that make the base configuration that family
//! ([`default_arms`] lists the built-in ones). Every arm runs on the report seeds `0..n` (the
//! experiments' seeds, not the tuning seeds of `taskmoe search`: this table reports, it
//! chooses nothing). Per arm the table gives, mean ± std over seeds: the mean test score over
//! all tasks and over the low-resource ones (task names with `_lo`, the convention of both the
//! synthetic and the WordNet benchmarks), the family routing measures (test split, mean over
//! MoE blocks), parameters and active parameters per token (`taskmoe inspect`'s accounting)
//! and the median training throughput. Nothing is tuned here; a family that loses to dense is
//! shown losing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use taskmoe_model::param_report;
use taskmoe_router::RouterKind;
use taskmoe_train::{RunConfig, RunData};

use crate::error::{bail, Context, ExperimentError, Result};
use crate::report::{header, md_table};
use crate::results::RunResult;
use crate::runner::{Job, Runner};
use crate::stats::Summary;

/// One family: a name and the overrides that turn the base configuration into it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FamilyArm {
    /// The name in the table (`mmoe`).
    pub name: String,
    /// The overrides (`key=value`, as `--set` takes them).
    pub sets: Vec<String>,
}

impl FromStr for FamilyArm {
    type Err = ExperimentError;

    /// `name: key=value key=value ...` (an arm with no override is the base itself).
    fn from_str(s: &str) -> Result<Self> {
        let Some((name, sets)) = s.split_once(':') else {
            bail!("arm `{s}` is not `name: key=value key=value ...`");
        };
        let sets: Vec<String> = sets.split_whitespace().map(str::to_string).collect();
        if name.trim().is_empty() || sets.iter().any(|s| !s.contains('=')) {
            bail!("arm `{s}` has an empty name or an override without `=`");
        }
        Ok(FamilyArm {
            name: name.trim().to_string(),
            sets,
        })
    }
}

/// The built-in arms for a base configuration with `num_tasks` tasks (every task the routers
/// hold a slot for, held-out ones included): `dense`, the
/// task-agnostic `token` router, `per-task` and `task-level` (the paper's), and the families
/// of issue #30 at the base's number of experts `E` and `k`: `mmoe` (every expert, `k = E`),
/// `cgc` (one expert per task plus `E` shared, a dense mixture over its own and the shared:
/// `k = 1 + E`), `dselect-k` (`k = 2` selectors; only when `E` is a power of two) and
/// `per-task, lora experts` (per-task routing over LoRA experts of one frozen FFN per
/// block: its pretrained FFN under `init.from`, else its random initialisation),
/// `task-representation` (routing from each task's running mean state) and `expert-choice`
/// (`k` slots per token on average). The arms keep the base's other router
/// keys (balance, mutual information, gate start).
pub fn default_arms(base: &RunConfig, num_tasks: usize) -> Vec<FamilyArm> {
    let r = &base.model.moe.router;
    let (e, k) = (r.num_experts, r.k);
    let arm = |name: &str, sets: &[String]| FamilyArm {
        name: name.into(),
        sets: sets.to_vec(),
    };
    let kind = |kind: RouterKind| {
        vec![
            "model.variant=task-moe".to_string(),
            format!("model.moe.router.kind={}", kind.name()),
        ]
    };
    let with = |mut sets: Vec<String>, more: &[String]| {
        sets.extend(more.iter().cloned());
        sets
    };
    let mut arms = vec![
        arm("dense", &["model.variant=dense".into()]),
        arm(
            "token",
            &[
                "model.variant=token-moe".into(),
                "model.moe.router.kind=token".into(),
            ],
        ),
        arm("per-task", &kind(RouterKind::PerTask)),
        arm("task-level", &kind(RouterKind::TaskLevel)),
        arm(
            "mmoe",
            &with(kind(RouterKind::Mmoe), &[format!("model.moe.router.k={e}")]),
        ),
        arm(
            "cgc",
            &with(
                kind(RouterKind::Cgc),
                &[
                    "model.moe.router.task_experts=1".into(),
                    format!("model.moe.router.num_experts={}", num_tasks + e),
                    format!("model.moe.router.k={}", 1 + e),
                ],
            ),
        ),
    ];
    if e.is_power_of_two() {
        arms.push(arm(
            "dselect-k",
            &with(kind(RouterKind::DselectK), &["model.moe.router.k=2".into()]),
        ));
    }
    arms.push(arm(
        "per-task, lora experts",
        &with(
            kind(RouterKind::PerTask),
            &["model.moe.expert_kind=lora".into()],
        ),
    ));
    arms.push(arm(
        "task-representation",
        &kind(RouterKind::TaskRepresentation),
    ));
    arms.push(arm(
        "expert-choice",
        &with(
            kind(RouterKind::ExpertChoice),
            &[format!("model.moe.router.k={k}")],
        ),
    ));
    arms
}

/// What to run: the base configuration, its overrides, the arms, the seeds.
#[derive(Clone, Debug)]
pub struct FamiliesSpec {
    /// The base run configuration file (none: the built-in default run).
    pub config: Option<PathBuf>,
    /// Overrides of the base, before any arm's (`key=value`).
    pub set: Vec<String>,
    /// The arms; empty: [`default_arms`].
    pub arms: Vec<FamilyArm>,
    /// Report seeds `0..seeds`.
    pub seeds: u64,
    /// Runs trained at the same time.
    pub jobs: usize,
}

/// One arm over the seeds.
#[derive(Clone, Debug, Serialize)]
pub struct ArmResult {
    /// The arm.
    pub arm: FamilyArm,
    /// The run folder of each seed.
    pub runs: Vec<PathBuf>,
    /// Mean test score over the run's tasks, per seed.
    pub test_mean: Vec<f64>,
    /// Mean test score over the low-resource tasks (`_lo` in the name), per seed; empty
    /// without such tasks.
    pub low_resource_mean: Vec<f64>,
    /// Routing overlap within minus across families, mean over MoE blocks, per seed.
    pub within_minus_across: Vec<f64>,
    /// Family ARI, mean over MoE blocks, per seed.
    pub family_ari: Vec<f64>,
    /// Trained parameters.
    pub parameters: u64,
    /// Parameters one token of one task uses.
    pub active_per_token: u64,
    /// Median training throughput (tokens per second over the logged steps), per seed.
    pub tokens_per_s: Vec<f64>,
}

/// A finished table.
#[derive(Clone, Debug, Serialize)]
pub struct FamiliesReport {
    /// The command that ran it.
    pub command: String,
    /// The resolved base configuration (TOML).
    pub base: String,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Every arm, in order.
    pub arms: Vec<ArmResult>,
}

fn resolve(spec: &FamiliesSpec, arm: &FamilyArm, seed: Option<u64>) -> Result<RunConfig> {
    let mut sets = spec.set.clone();
    sets.extend(arm.sets.iter().cloned());
    if let Some(seed) = seed {
        sets.push(format!("train.seed={seed}"));
    }
    RunConfig::load(spec.config.as_deref(), &sets)
        .with_context(|| format!("resolving arm `{}` with {sets:?}", arm.name))
}

/// Trains every arm on every seed with the `taskmoe` executable `exe` into `out` (`configs/`,
/// `runs/`, `logs/`, then `families.md`, `families.json` and `base.toml`). Finished runs whose
/// configuration has not changed are reused.
pub fn families(
    exe: &Path,
    out: &Path,
    spec: &FamiliesSpec,
    command: &str,
) -> Result<FamiliesReport> {
    if spec.seeds == 0 {
        bail!("the family table needs at least one seed");
    }
    let base = RunConfig::load(spec.config.as_deref(), &spec.set)
        .context("resolving the base configuration")?;
    let data = RunData::load(&base).context("loading the base configuration's data")?;
    let heads = data.heads();
    let arms = match spec.arms.is_empty() {
        true => default_arms(&base, data.specs.len()),
        false => spec.arms.clone(),
    };
    let seeds: Vec<u64> = (0..spec.seeds).collect();
    let mut jobs = Vec::new();
    for arm in &arms {
        for &seed in &seeds {
            jobs.push(Job {
                id: format!("{}-seed{seed}", arm.name),
                config: resolve(spec, arm, Some(seed))?,
            });
        }
    }
    let runner = Runner::new(exe.to_path_buf(), out, spec.jobs);
    let dirs = runner.run("families", &jobs)?;
    let mut results = Vec::new();
    for (i, arm) in arms.iter().enumerate() {
        let cfg = resolve(spec, arm, None)?;
        let params = param_report(&cfg.model, &heads, data.seq_len);
        let mut result = ArmResult {
            arm: arm.clone(),
            runs: Vec::new(),
            test_mean: Vec::new(),
            low_resource_mean: Vec::new(),
            within_minus_across: Vec::new(),
            family_ari: Vec::new(),
            parameters: params.total,
            active_per_token: params.active_per_token,
            tokens_per_s: Vec::new(),
        };
        for dir in &dirs[i * seeds.len()..(i + 1) * seeds.len()] {
            let run = RunResult::read(dir)?;
            let all: Vec<String> = run.scores.keys().cloned().collect();
            result.test_mean.push(run.mean(&all)?);
            let low: Vec<String> = all.iter().filter(|t| t.contains("_lo")).cloned().collect();
            if !low.is_empty() {
                result.low_resource_mean.push(run.mean(&low)?);
            }
            let (gap, ari) = run.family_measures();
            result.within_minus_across.extend(gap);
            result.family_ari.extend(ari);
            result.tokens_per_s.push(median_tokens_per_s(dir)?);
            result.runs.push(dir.clone());
        }
        results.push(result);
    }
    let report = FamiliesReport {
        command: command.to_string(),
        base: base.to_toml(),
        seeds,
        arms: results,
    };
    write_report(out, &report)?;
    Ok(report)
}

/// The median `tokens_per_s` over the steps of `dir/metrics.jsonl`.
fn median_tokens_per_s(dir: &Path) -> Result<f64> {
    let path = dir.join("metrics.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut rates: Vec<f64> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {} is not JSON", path.display(), n + 1))?;
        rates.extend(
            value
                .get("tokens_per_s")
                .and_then(serde_json::Value::as_f64),
        );
    }
    if rates.is_empty() {
        bail!("{}: no step logs `tokens_per_s`", path.display());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

impl FamiliesReport {
    /// The markdown report: the command, seeds, the table and the base configuration.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# Router families\n\nCommand: `{}`. Seeds {:?}; mean ± std over seeds. Test \
             split; low-resource = tasks named `_lo`; routing measures are the mean over MoE \
             blocks (first choices); throughput is the median over the logged training steps, \
             on whatever else the machine was doing.\n\n",
            self.command, self.seeds
        );
        let show = |v: &[f64]| match v.is_empty() {
            true => "-".to_string(),
            false => Summary::of(v).show(),
        };
        let rows: Vec<Vec<String>> = self
            .arms
            .iter()
            .map(|a| {
                vec![
                    a.arm.name.clone(),
                    show(&a.test_mean),
                    show(&a.low_resource_mean),
                    show(&a.within_minus_across),
                    show(&a.family_ari),
                    a.parameters.to_string(),
                    a.active_per_token.to_string(),
                    format!("{:.0}", Summary::of(&a.tokens_per_s).mean),
                    a.runs.len().to_string(),
                ]
            })
            .collect();
        md.push_str(&md_table(
            &header(&[
                "family",
                "test mean",
                "low-resource mean",
                "within - across overlap",
                "family ARI",
                "parameters",
                "active / token",
                "tokens/s",
                "seeds",
            ]),
            &rows,
        ));
        md.push_str("\nOverrides of each arm:\n\n");
        for a in &self.arms {
            let _ = writeln!(md, "- `{}`: `{}`", a.arm.name, a.arm.sets.join(" "));
        }
        let _ = write!(md, "\n## Base configuration\n\n```toml\n{}```\n", self.base);
        md
    }
}

fn write_report(out: &Path, report: &FamiliesReport) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    for (name, text) in [
        ("families.md", report.markdown()),
        ("families.json", json + "\n"),
        ("base.toml", report.base.clone()),
    ] {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
