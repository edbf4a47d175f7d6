//! `taskmoe experiment` end to end on the smoke configuration: every experiment runs, writes
//! a readable report folder, reuses finished runs, and rejects bad settings by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, minilm, stderr_of, RemoveOnDrop};

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/experiments/tiny.toml")
}

/// A fresh folder under the temporary directory and the guard that removes it when the test
/// ends, failed ones included (experiment folders of real-text runs hold gigabytes).
fn scratch(name: &str) -> (PathBuf, RemoveOnDrop) {
    let dir = common::scratch(name);
    (dir.clone(), RemoveOnDrop(dir))
}

fn experiment(name: &str, out: &Path, extra: &[&str]) -> Output {
    let config = config();
    Command::new(env!("CARGO_BIN_EXE_taskmoe"))
        .args(["experiment", name, "--config"])
        .arg(&config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// `taskmoe verdicts --bench NAME=DIR ... --out OUT`.
fn run_verdicts(benches: &[(&str, &Path)], out: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskmoe"));
    cmd.arg("verdicts");
    for (name, dir) in benches {
        cmd.arg("--bench").arg(format!("{name}={}", dir.display()));
    }
    cmd.arg("--out").arg(out).output().unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_experiment_writes_a_report_and_reuses_finished_runs() {
    let (out, _remove_all) = scratch("all");
    let first = experiment("all", &out, &[]);
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    let stderr = stderr_of(&first);
    assert!(first.status.success(), "{stderr}\n{stdout}");
    for claim in ["Claim 1", "Claim 2", "Claim 3"] {
        assert!(stdout.contains(claim), "{claim} missing from:\n{stdout}");
    }

    // Low-resource: every arm and setting has one value per seed, within [0, 1].
    let lr = read_json(&out.join("low-resource/results.json"));
    let settings = lr["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 2, "one size plus one relatedness value");
    for s in settings {
        let arms = s["arms"].as_array().unwrap();
        assert_eq!(arms.len(), 4, "single-task, dense, task-dense, task-moe");
        for a in arms {
            let low = a["low_resource_mean"].as_array().unwrap();
            let swept = a["arm"] == "dense" || a["arm"] == "task-moe";
            if !swept && s != &settings[0] {
                // The relatedness sweep runs dense and task-MoE only.
                assert!(low.is_empty(), "{a}");
                continue;
            }
            assert_eq!(low.len(), 2, "two seeds: {a}");
            assert!(low
                .iter()
                .all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap())));
        }
    }
    assert_eq!(
        lr["low_resource_tasks"],
        serde_json::json!(["lexicon_lo0", "count_lo0"])
    );
    let md = std::fs::read_to_string(out.join("low-resource/report.md")).unwrap();
    assert!(md.contains("| single-task |") && md.contains("low-resource-by-size.svg"));
    assert!(out.join("low-resource/low-resource-by-size.svg").is_file());
    assert!(out
        .join("low-resource/low-resource-by-relatedness.svg")
        .is_file());

    // The mixture holds the unrelated task beside the families' (the protocol's claim 1).
    assert!(lr["training_tasks"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("lexicon_unrelated")));

    // Every report declares its primary contrast under the embedded protocol, whose hash it
    // records; every arm's contrast against the claim's baseline is there for the forest plot.
    let protocol = taskmoe_experiments::preregistration::protocol_sha256();
    for name in ["low-resource", "unseen", "unrelated"] {
        let r = read_json(&out.join(format!("{name}/results.json")));
        assert_eq!(r["primary"]["a"].as_array().unwrap().len(), 2, "{name}");
        assert_eq!(r["provenance"]["protocol_sha256"], protocol.as_str());
        let contrasts = r["arm_contrasts"].as_array().unwrap();
        assert!(contrasts.len() >= 2, "{name}: {contrasts:?}");
        let md = std::fs::read_to_string(out.join(format!("{name}/report.md"))).unwrap();
        assert!(md.contains(&protocol), "{name}");
        // Every run was tested at its best of two validation evaluations.
        assert!(md.contains("## Early stopping"), "{name}");
    }
    // The bag-of-words baseline beside the neural arms, one value per seed.
    let bow = &lr["settings"][0]["bag_of_words"]["low_resource_mean"];
    assert_eq!(bow.as_array().unwrap().len(), 2, "{bow}");
    let verdicts = read_json(&out.join("verdicts.json"));
    assert_eq!(verdicts["decisions"].as_array().unwrap().len(), 3);
    // The forest plot: the three primaries and every other arm against its baseline.
    let forest = std::fs::read_to_string(out.join("forest.svg")).unwrap();
    for row in [
        "task-dense",
        "task-moe + unrelated routing",
        "primary (Holm interval)",
    ] {
        assert!(forest.contains(row), "{row} missing from the forest plot");
    }
    assert_eq!(verdicts["provenance"]["protocol_sha256"], protocol.as_str());
    assert!(std::fs::read_to_string(out.join("verdicts.md"))
        .unwrap()
        .contains("Holm"));
    let runs = out.join("low-resource/runs");
    let tested = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("final-test.json")).ok())
        .filter(|text| text.contains("\"checkpoint_step\""))
        .count();
    assert!(tested > 0, "final tests name the step they tested");
    // Every run may train twice its steps and ends by patience (configs/experiments/tiny.toml).
    let job =
        std::fs::read_to_string(out.join("low-resource/configs/n8-seed0-dense.toml")).unwrap();
    assert!(job.contains("patience = 1"), "{job}");

    // Unseen: seven arms, one declared family source for both models and an unrelated one
    // for the negative control, a measured choice per model, seed, task and k.
    let unseen = read_json(&out.join("unseen/results.json"));
    assert_eq!(unseen["arms"].as_array().unwrap().len(), 7);
    assert_eq!(
        unseen["family_sources"],
        serde_json::json!({"lexicon_unseen0": "lexicon_hi0", "count_unseen0": "count_hi0"})
    );
    for (u, control) in unseen["unrelated_sources"].as_object().unwrap() {
        let family = |t: &str| t.split('_').next().unwrap().to_string();
        assert_ne!(family(u), family(control.as_str().unwrap()), "{u}");
    }
    assert_eq!(
        unseen["unseen_tasks"],
        serde_json::json!(["lexicon_unseen0", "count_unseen0"])
    );
    let choices = unseen["source_choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2 * 2 * 2, "model x seed x task at one k");
    for c in choices {
        let chosen = c["chosen"].as_str().unwrap();
        assert!(
            !chosen.contains("unseen"),
            "a source must be a seen task: {c}"
        );
        assert!(c["losses"].as_object().unwrap().contains_key(chosen));
    }
    assert!(out.join("unseen/unseen-learning-curves.svg").is_file());

    // Unrelated: routing heatmaps before and after, per MoE block.
    let unrelated = read_json(&out.join("unrelated/results.json"));
    assert_eq!(
        unrelated["new_tasks"],
        serde_json::json!(["lexicon_unrelated"])
    );
    for stage in ["before", "joint", "sequential"] {
        for block in [0, 1] {
            let svg = out.join(format!("unrelated/routing-{stage}-block{block}.svg"));
            assert!(svg.is_file(), "{} missing", svg.display());
        }
    }

    // Two benchmarks side by side (the same folder twice): six decisions, one forest plot,
    // every report listed as a source under this build's protocol.
    let across = out.join("across");
    let both = run_verdicts(&[("one", &out), ("two", &out)], &across);
    assert!(
        both.status.success(),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let v = read_json(&across.join("verdicts.json"));
    assert_eq!(v["benchmarks"].as_array().unwrap().len(), 2);
    assert_eq!(v["merged_by"]["protocol_sha256"], protocol.as_str());
    assert!(
        v.get("provenance").is_none(),
        "the merging build is not the runs' build"
    );
    for b in v["benchmarks"].as_array().unwrap() {
        let p = b["provenance"].as_object().unwrap();
        assert_eq!(p.len(), 3, "one entry per experiment: {b}");
        assert!(p.values().all(|e| e["commit"].is_string()), "{b}");
    }
    let md = std::fs::read_to_string(across.join("verdicts.md")).unwrap();
    assert_eq!(md.matches("| one |").count(), 3, "{md}");
    assert!(!md.contains("not the protocol of this build"), "{md}");
    assert!(
        md.contains("merged by a build of commit") && md.contains("with each source below"),
        "the table says which commit merged and where the runs' commit is: {md}"
    );
    let sources = md.split("## Sources").nth(1).unwrap_or_default();
    assert_eq!(
        sources.matches(", commit `").count(),
        6,
        "each of the six sources (two benchmarks, three experiments) names the runs' commit: {md}"
    );
    assert!(across.join("forest.svg").is_file());

    // Again: nothing is retrained and the numbers are the same.
    let second = experiment("all", &out, &[]);
    let stderr2 = stderr_of(&second);
    assert!(second.status.success(), "{stderr2}");
    assert!(!stderr2.contains("to train, 0 reused"), "{stderr2}");
    assert!(stderr2.contains("(0 to train,"), "{stderr2}");
    assert_eq!(read_json(&out.join("low-resource/results.json")), lr);
    assert_eq!(read_json(&out.join("unseen/results.json")), unseen);

    // A chunk of the same benchmark in a folder of its own (`first_seed`, for machines that
    // lose their files between sessions): seed 1 alone gives seed 1's numbers of the full
    // run, lists its seed, and merging it with a folder that also holds seed 1 is refused.
    let (chunk, _remove_chunk) = scratch("chunk");
    let one = experiment("all", &chunk, &["--set", "first_seed=1"]);
    let stderr = stderr_of(&one);
    assert!(one.status.success(), "{stderr}");
    for name in ["low-resource", "unseen", "unrelated"] {
        let full = read_json(&out.join(format!("{name}/results.json")));
        let part = read_json(&chunk.join(format!("{name}/results.json")));
        assert_eq!(full["seeds"], serde_json::json!([0, 1]), "{name}");
        assert_eq!(part["seeds"], serde_json::json!([1]), "{name}");
        for side in ["a", "b"] {
            assert_eq!(
                part["primary"][side][0], full["primary"][side][1],
                "{name}: seed 1 alone must equal seed 1 of the full run"
            );
        }
    }
    // The one-seed routing of the chunk's unrelated report is its first seed's, and says so.
    let report = std::fs::read_to_string(chunk.join("unrelated/report.md")).unwrap();
    assert!(
        report.contains("| base (seed 1; added tasks untrained) |")
            && report.contains("## Routing heatmaps (task-MoE, seed 1)")
            && !report.contains("seed 0"),
        "{report}"
    );
    let overlap = run_verdicts(&[("one", &out), ("one", &chunk)], &out.join("merged"));
    let text = stderr_of(&overlap);
    assert!(!overlap.status.success());
    assert!(text.contains("seed 1 is in both"), "{text}");
}

#[test]
fn bad_settings_are_named() {
    let (out, _remove_bad) = scratch("bad");
    let unknown = experiment("low-resource", &out, &["--set", "low_resource.sizez=[4]"]);
    let text = stderr_of(&unknown);
    assert!(!unknown.status.success());
    assert!(text.contains("low_resource.sizez"), "{text}");

    let task = experiment(
        "low-resource",
        &out,
        &["--set", "low_resource.tasks=[\"nope\"]"],
    );
    let text = stderr_of(&task);
    assert!(!task.status.success());
    assert!(text.contains("`nope`"), "{text}");

    let arm = experiment(
        "low-resource",
        &out,
        &["--set", "low_resource.variants=[\"task-moe:token\"]"],
    );
    let text = stderr_of(&arm);
    assert!(!arm.status.success());
    assert!(text.contains("low_resource.variants"), "{text}");

    let range = experiment("low-resource", &out, &["--set", "first_seed=2"]);
    let text = stderr_of(&range);
    assert!(!range.status.success());
    assert!(text.contains("first_seed"), "{text}");

    let name = experiment("sideways", &out, &[]);
    let text = stderr_of(&name);
    // Experiment names are a clap value enum: the error lists the choices.
    assert!(!name.status.success());
    assert!(
        text.contains("'sideways'") && text.contains("low-resource, unseen, unrelated, all"),
        "{text}"
    );
}

#[test]
fn the_unseen_experiment_runs_on_real_tasks_named_in_a_config() {
    let (out, _remove_glue) = scratch("glue-unseen");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/experiments/glue.toml");
    let init = format!("init.from={}", minilm().display());
    let output = Command::new(env!("CARGO_BIN_EXE_taskmoe"))
        .args(["experiment", "unseen", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .args(["--seeds", "1", "--jobs", "2", "--run-set", &init])
        .args([
            "--run-set",
            "train.steps=2",
            "--run-set",
            "checkpoint.every=2",
        ])
        .args([
            "--run-set",
            "schedule.warmup_steps=1",
            "--run-set",
            "runtime.threads=1",
        ])
        .args(["--set", "unseen.k=[4]", "--set", "unseen.steps=2"])
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    let unseen = read_json(&out.join("unseen/results.json"));
    assert_eq!(unseen["unseen_tasks"], serde_json::json!(["sst2"]));
    // STS-B is a regression task: only RTE has a head like SST-2's, so it is always chosen.
    for c in unseen["source_choices"].as_array().unwrap() {
        assert_eq!(c["chosen"], "rte", "{c}");
        assert_eq!(c["losses"].as_object().unwrap().len(), 1, "{c}");
    }
}

/// Run folders under `dir/runs` with a complete checkpoint and no final test yet.
fn interrupted_runs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("runs")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|run| !run.path().join("final-test.json").exists())
        .filter(|run| {
            std::fs::read_dir(run.path()).is_ok_and(|files| {
                files.flatten().any(|f| {
                    f.file_name().to_string_lossy().starts_with("checkpoint-")
                        && f.path().join("COMPLETE.json").is_file()
                })
            })
        })
        .map(|run| run.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_killed_experiment_resumes_its_interrupted_runs_exactly_and_reuses_finished_ones() {
    use std::os::unix::process::CommandExt;
    let (out, _remove_killed) = scratch("killed");
    // Runs long enough to be caught between checkpoints.
    let longer = [
        "--run-set",
        "train.steps=300",
        "--run-set",
        "checkpoint.every=10",
        "--run-set",
        "schedule.warmup_steps=2",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskmoe"))
        .args(["experiment", "low-resource", "--config"])
        .arg(config())
        .arg("--out")
        .arg(&out)
        .args(longer)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let dir = out.join("low-resource");
    let started = std::time::Instant::now();
    while interrupted_runs(&dir).is_empty() {
        assert!(
            started.elapsed().as_secs() < 300,
            "no run reached a checkpoint in 300 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before a kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // kill -9 the experiment and its training processes at once.
    let group = format!("-{}", child.id());
    let killed = Command::new("kill")
        .args(["-s", "KILL", "--", &group])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();
    let caught = interrupted_runs(&dir);
    let listing: Vec<String> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .flatten()
        .map(|r| {
            let files: Vec<String> = std::fs::read_dir(r.path())
                .unwrap()
                .flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect();
            format!("{}: {files:?}", r.file_name().to_string_lossy())
        })
        .collect();
    assert!(!caught.is_empty(), "{listing:#?}");

    let again = experiment("low-resource", &out, &longer);
    let stderr = stderr_of(&again);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("resumed ("), "no run resumed:\n{stderr}");
    assert!(stderr.contains("done in about"), "no ETA:\n{stderr}");
    // A resumed run ends where the same configuration trained in one go ends.
    let id = &caught[0];
    let alone = out.join("alone");
    let status = Command::new(env!("CARGO_BIN_EXE_taskmoe"))
        .args(["train", "--config"])
        .arg(dir.join("configs").join(format!("{id}.toml")))
        .arg("--set")
        .arg(format!("output.dir={}", alone.display()))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let tasks = |path: PathBuf| read_json(&path)["tasks"].clone();
    assert_eq!(
        tasks(dir.join("runs").join(id).join("final-test.json")),
        tasks(alone.join(id).join("final-test.json")),
        "{id}"
    );
}
