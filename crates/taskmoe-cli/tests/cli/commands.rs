//! The `taskmoe` binary end to end on a tiny configuration: train, evaluate, resume after a
//! kill, and the errors a user sees for bad configurations and damaged checkpoints.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{
    command, fails, minilm, ok, on_run, scratch, stderr_of, taskmoe, tiny_config, train_tiny,
    train_tiny_steps,
};

/// `(step, loss)` of every line of a run's metrics.jsonl, the loss as written.
fn losses(run: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].to_string())
        })
        .collect()
}

#[test]
fn train_then_eval_reproduces_the_final_table() {
    let out = scratch("e2e");
    let table = ok(train_tiny(&out, &["--set", "output.name=run"])
        .output()
        .unwrap());
    assert!(
        table.contains("lexicon_hi0") && table.contains("majority"),
        "{table}"
    );
    let run = out.join("run");
    for f in [
        "metrics.jsonl",
        "eval.jsonl",
        "final-test.json",
        "final-test-predictions.jsonl",
        "final-test-routing.json",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    assert_eq!(losses(&run).len(), 12);
    // keep_last = 2: steps 9 and 12 remain, and the best by validation (checkpoint.keep_best;
    // evaluations at steps 6 and 12).
    assert!(run.join("checkpoint-12").exists() && run.join("checkpoint-9").exists());
    assert!(!run.join("checkpoint-3").exists());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoint-12/trainer_state.json")).unwrap(),
    )
    .unwrap();
    let best = state["best"]["step"].as_u64().unwrap();
    assert!(
        run.join(format!("checkpoint-{best}")).exists(),
        "best {best}"
    );
    assert_eq!(run.join("checkpoint-6").exists(), best == 6);

    let eval = ok(on_run("eval", &run, &["--split", "test"]));
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let final_scores = read(run.join("final-test.json"));
    let eval_scores = read(run.join("eval-test-step12.json"));
    assert!(
        !run.join("checkpoint-12/eval-test.json").exists(),
        "eval writes outside the rotated checkpoints"
    );
    assert_eq!(
        final_scores["tasks"], eval_scores["tasks"],
        "eval reproduces the final numbers"
    );
    assert!(eval.contains("step 12"), "{eval}");
    let routing = read(run.join("final-test-routing.json"));
    assert_eq!(routing.as_array().unwrap().len(), 2, "two MoE blocks");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn killed_and_resumed_run_matches_the_uninterrupted_one() {
    let out = scratch("resume");
    let steps = "train.steps=30";
    ok(
        train_tiny(&out, &["--set", "output.name=straight", "--set", steps])
            .output()
            .unwrap(),
    );

    // Start the same run, kill it once checkpoint-6 exists, resume.
    let mut child = train_tiny(&out, &["--set", "output.name=killed", "--set", steps])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = out.join("killed");
    let started = Instant::now();
    while !killed.join("checkpoint-6").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint-6"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("checkpoint-30").exists(), "killed mid-run");
    ok(train_tiny(
        &out,
        &["--set", "output.name=killed", "--set", steps, "--resume"],
    )
    .output()
    .unwrap());

    let (a, b) = (losses(&out.join("straight")), losses(&killed));
    assert_eq!(a.len(), 30);
    assert_eq!(
        a, b,
        "per-step losses after kill and resume equal the uninterrupted run"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_second_train_without_resume_is_refused() {
    let out = scratch("refuse");
    ok(train_tiny_steps(&out, "r", 3));
    let err = fails(train_tiny_steps(&out, "r", 3));
    assert!(err.contains("--resume"), "{err}");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn bad_configurations_fail_with_the_key_named() {
    let out = scratch("config");
    let cases: [(&[&str], &str); 6] = [
        (&["--set", "train.stepz=3"], "train.stepz"),
        (
            &["--set", "train.schedule.peak_lr=0.1"],
            "`train.schedule.peak_lr` moved to `schedule.peak_lr`",
        ),
        (&["--set", "data.tasks=[\"nope\"]"], "unknown task `nope`"),
        (
            &[
                "--set",
                "data.mixture={ kind = \"explicit\", rates = { lexicon_hi0 = -1.0 } }",
                "--set",
                "data.tasks=[\"lexicon_hi0\"]",
            ],
            "lexicon_hi0",
        ),
        (&["--set", "model.moe.router.k=9"], "model.moe.router.k"),
        (&["--set", "runtime.device=tpu"], "runtime.device"),
    ];
    for (args, expected) in cases {
        let err = fails(train_tiny(&out, args).output().unwrap());
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_file_in_the_old_train_layout_is_refused_and_migrates_to_the_same_run() {
    let out = scratch("migrate");
    let old = out.join("old.toml");
    std::fs::write(
        &old,
        "[train]\nsteps = 700\neval_every = 0\nthreads = 1\n\n[train.schedule]\npeak_lr = 0.01\n",
    )
    .unwrap();
    let path = old.to_str().unwrap();
    let err = fails(
        command(&["config", "show", "--config", path])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("`train.eval_every` moved to `eval.every`")
            && err.contains("`train.threads` moved to `runtime.threads`")
            && err.contains("`train.schedule` moved to `schedule`")
            && err.contains("taskmoe config migrate"),
        "{err}"
    );
    let printed = ok(command(&["config", "migrate", path]).output().unwrap());
    assert!(
        printed.contains("[schedule]") && printed.contains("[eval]"),
        "{printed}"
    );
    ok(command(&["config", "migrate", path, "--write"])
        .output()
        .unwrap());
    assert!(out.join("old.toml.old").is_file());
    let new = ok(command(&["config", "show", "--bare", "--config", path])
        .output()
        .unwrap());
    let expected = ok(command(&[
        "config",
        "show",
        "--bare",
        "--set",
        "train.steps=700",
        "--set",
        "eval.every=0",
        "--set",
        "runtime.threads=1",
        "--set",
        "schedule.peak_lr=0.01",
    ])
    .output()
    .unwrap());
    assert_eq!(new, expected);
    // The documented tree is the same configuration with each key's doc above it.
    let shown = ok(command(&["config", "show", "--config", path])
        .output()
        .unwrap());
    assert!(
        shown.contains("# Optimizer steps. Default 4000.\nsteps = 700"),
        "{shown}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_truncated_checkpoint_is_skipped_for_the_previous_one() {
    let out = scratch("truncated");
    ok(train_tiny_steps(&out, "t", 6));
    let run = out.join("t");
    let newest = run.join("checkpoint-6/model.safetensors");
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let eval = ok(command(&["eval", "--run", run.to_str().unwrap()])
        .output()
        .unwrap());
    assert!(
        eval.contains("checkpoint-3") && eval.contains("step 3"),
        "{eval}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn inspect_shows_every_variant() {
    let f = tiny_config();
    let text = ok(command(&["inspect", "--config", f.to_str().unwrap()])
        .output()
        .unwrap());
    for v in [
        "== dense",
        "== token-moe",
        "== task-moe",
        "active per token",
        "FLOPs",
    ] {
        assert!(text.contains(v), "{v}: {text}");
    }
}

#[test]
fn inspect_counts_lora_experts_and_their_trainable_parameters() {
    let f = tiny_config();
    let text = ok(command(&[
        "inspect",
        "--config",
        f.to_str().unwrap(),
        "--set",
        "model.moe.expert_kind=\"lora\"",
        "--set",
        "model.moe.lora_rank=4",
    ])
    .output()
    .unwrap());
    for v in ["LoRA experts of rank 4", "trainable", "expert base FFNs"] {
        assert!(text.contains(v), "{v}: {text}");
    }
}

#[test]
fn single_task_baseline_trains_one_model_per_task() {
    let out = scratch("single");
    let table = ok(train_tiny(
        &out,
        &[
            "--set",
            "output.name=st",
            "--set",
            "model.variant=single-task",
            "--set",
            "data.tasks=[\"lexicon_hi0\", \"count_lo0\"]",
            "--set",
            "train.steps=3",
        ],
    )
    .output()
    .unwrap());
    assert!(
        table.contains("lexicon_hi0") && table.contains("count_lo0"),
        "{table}"
    );
    for task in ["lexicon_hi0", "count_lo0"] {
        assert!(
            out.join("st").join(task).join("checkpoint-3").exists(),
            "{task}"
        );
    }
    assert!(out.join("st/final-test.json").exists());
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn glue_example_fine_tunes_an_upcycled_minilm() {
    let out = scratch("glue");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = root.join("configs/glue-minilm.toml");
    let registry = root.join("configs/glue-example/tasks.toml");
    let output = command(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--set",
        &format!("init.from={}", minilm().display()),
        "--set",
        &format!("data.registry={}", registry.display()),
        "--set",
        &format!("output.dir={}", out.display()),
        "--set",
        "output.name=glue",
        "--set",
        "train.steps=2",
        "--set",
        "schedule.warmup_steps=1",
        "--set",
        "data.batch_size=4",
    ])
    .output()
    .unwrap();
    let stderr = stderr_of(&output);
    let table = ok(output);
    for task in ["rte", "sst2", "stsb"] {
        assert!(table.contains(task), "{task}: {table}");
    }
    assert!(stderr.contains("upcycled MoE blocks [1, 3, 5]"), "{stderr}");
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("glue/checkpoint-2/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        card["model"]["d_model"], 384,
        "architecture taken from MiniLM"
    );
    // A copy of the checkpoint predicts with its own tokenizer.json (Inference reads only
    // `data.seq_len` and `runtime.threads` of config.toml, so the pretrained folder it names
    // need not exist).
    let copy = out.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(out.join("glue/checkpoint-2")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    assert!(copy.join("tokenizer.json").exists());
    let input = out.join("pairs.tsv");
    std::fs::write(
        &input,
        "index\tsentence1\tsentence2\n7\tA man is eating.\tSomeone eats.\n",
    )
    .unwrap();
    let prediction = ok(
        command(&["predict", "--checkpoint", copy.to_str().unwrap(), "--input"])
            .arg(&input)
            .args(["--task", "rte"])
            .output()
            .unwrap(),
    );
    let row: serde_json::Value = serde_json::from_str(prediction.trim()).unwrap();
    assert_eq!(row["id"], "7");
    assert!(
        ["entailment", "not_entailment"].contains(&row["label"].as_str().unwrap()),
        "{row}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn the_gpu_check_runs_on_the_cpu_at_tiny_sizes() {
    // `--tiny` alone is the seconds-long smoke test the README names.
    let started = Instant::now();
    let out = ok(command(&["check", "--device", "cpu", "--tiny"])
        .output()
        .unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "check --tiny took {:?}",
        started.elapsed()
    );
    assert!(
        out.starts_with("| check | setting | result | target | verdict |"),
        "{out}"
    );
    assert!(out.contains("logits fp32"), "{out}");
    assert!(out.contains("logits bf16"), "{out}");
    assert_eq!(out.matches("MoE layer vs dense FFN").count(), 2, "{out}");
    assert!(out.contains("tokens/s"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn cuda_on_a_cpu_only_libtorch_names_the_library_and_auto_falls_back() {
    let out = command(&["check", "--device", "cuda", "--tiny"])
        .output()
        .unwrap();
    if out.status.success() {
        return; // a machine with a CUDA libtorch and a GPU
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("libtorch_cuda.so"), "{err}");

    let dir = scratch("auto-bf16");
    let out = train_tiny(
        &dir,
        &[
            "--set",
            "runtime.device=auto",
            "--set",
            "runtime.precision=\"bf16\"",
            "--set",
            "train.steps=3",
        ],
    )
    .output()
    .unwrap();
    let note = stderr_of(&out);
    ok(out);
    assert!(
        note.contains("device auto:") && note.contains("using the CPU"),
        "{note}"
    );
    let run = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let logged = losses(&run);
    assert_eq!(logged.len(), 3);
    assert!(logged
        .iter()
        .all(|(_, l)| l.parse::<f64>().is_ok_and(f64::is_finite)));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn search_tries_each_axis_on_the_tuning_seeds_and_flags_an_edge_choice() {
    let out = scratch("search");
    let fixture = tiny_config();
    let text = ok(command(&[
        "search",
        "--config",
        fixture.to_str().unwrap(),
        "--set",
        "train.steps=6",
        "--set",
        "eval.every=0",
        "--axis",
        "schedule.peak_lr=1e-3,3e-3",
        "--axis",
        "optim.router_lr_scale=1,4,16",
        "--seeds",
        "1",
        "--jobs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ])
    .output()
    .unwrap());
    assert!(text.contains("## `schedule.peak_lr`"), "{text}");
    assert!(text.contains("## `optim.router_lr_scale`"), "{text}");
    // Five points; the base (peak_lr = 1e-3, router_lr_scale = 1) is one run shared by both.
    let runs = std::fs::read_dir(out.join("runs")).unwrap().count();
    assert_eq!(runs, 4, "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("search.json")).unwrap()).unwrap();
    assert_eq!(json["seeds"], serde_json::json!([1000]));
    let axes = json["axes"].as_array().unwrap();
    assert_eq!(axes.len(), 2);
    let scale = &axes[1];
    let chosen = scale["chosen"].as_u64().unwrap();
    assert_eq!(scale["on_edge"].as_bool().unwrap(), chosen != 1, "{scale}");
    for point in scale["points"].as_array().unwrap() {
        let v = point["validation"][0].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{point}");
    }
    let base = std::fs::read_to_string(out.join("base.toml")).unwrap();
    assert!(base.contains("steps = 6"), "{base}");
    // A key that does not exist is named.
    let err = fails(
        command(&[
            "search",
            "--config",
            fixture.to_str().unwrap(),
            "--axis",
            "schedule.peak_rate=1e-3,3e-3",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap(),
    );
    assert!(err.contains("peak_rate"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn families_trains_every_default_arm_on_the_report_seeds_and_tables_them() {
    let out = scratch("families");
    let fixture = tiny_config();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "families",
            "--config",
            fixture.to_str().unwrap(),
            "--set",
            "train.steps=4",
            "--set",
            "eval.every=0",
            "--seeds",
            "1",
            "--jobs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let text = ok(
        command(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>())
            .output()
            .unwrap(),
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("families.json")).unwrap()).unwrap();
    assert_eq!(json["seeds"], serde_json::json!([0]));
    let names: Vec<&str> = json["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["arm"]["name"].as_str().unwrap())
        .collect();
    for family in [
        "dense",
        "token",
        "per-task",
        "task-level",
        "mmoe",
        "cgc",
        "expert-choice",
    ] {
        assert!(names.contains(&family), "{family} missing from {names:?}");
        assert!(text.contains(&format!("| {family} |")), "{text}");
    }
    for arm in json["arms"].as_array().unwrap() {
        let test = arm["test_mean"][0].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&test), "{arm}");
        assert!(arm["parameters"].as_u64().unwrap() >= arm["active_per_token"].as_u64().unwrap());
    }
    // An arm of one's own, and a malformed one named.
    let own = args(&["--arm", "wide: model.moe.router.k=2"]);
    let text = ok(command(&own.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap());
    assert!(
        text.contains("| wide |") && !text.contains("| mmoe |"),
        "{text}"
    );
    let bad = args(&["--arm", "no-colon model.moe.router.k=2"]);
    let err = fails(
        command(&bad.iter().map(String::as_str).collect::<Vec<_>>())
            .output()
            .unwrap(),
    );
    assert!(err.contains("no-colon"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn compare_puts_runs_side_by_side_and_pairs_run_sets_given_as_patterns() {
    let out = scratch("compare");
    let runs = [
        ("task-moe", 0, "task-moe-seed0"),
        ("task-moe", 1, "task-moe-seed1"),
        ("dense", 0, "dense-seed0"),
        ("dense", 1, "dense-seed1"),
        ("task-moe", 0, "again-task-moe-seed0"),
    ];
    for (variant, seed, name) in runs {
        ok(train_tiny(
            &out,
            &[
                "--set",
                &format!("model.variant={variant}"),
                "--set",
                &format!("train.seed={seed}"),
                "--set",
                &format!("output.name={name}"),
                "--set",
                "train.steps=2",
            ],
        )
        .output()
        .unwrap());
    }
    let run = |name: &str| out.join(name).to_string_lossy().into_owned();
    let side_by_side = ok(
        command(&["compare", &run("task-moe-seed0"), &run("dense-seed0")])
            .output()
            .unwrap(),
    );
    assert!(
        side_by_side.contains("run 2 (vs run 1)") && side_by_side.contains("| mean |"),
        "{side_by_side}"
    );
    // Patterns passed as they are (no shell here): taskmoe expands them, pairs by seed.
    let report = out.join("report");
    let paired = ok(command(&[
        "compare",
        "--a",
        &run("task-moe-seed*"),
        "--b",
        &run("dense-seed*"),
        "--out",
        report.to_str().unwrap(),
    ])
    .output()
    .unwrap());
    assert!(
        paired.contains("seed 0") && paired.contains("seed 1") && paired.contains("a - b [95% CI]"),
        "{paired}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("compare.json")).unwrap())
            .unwrap();
    assert_eq!(json["pairs"].as_array().unwrap().len(), 2);
    let err = fails(
        command(&["compare", &run("token-moe-seed*")])
            .output()
            .unwrap(),
    );
    assert!(err.contains("matches no run folder"), "{err}");
    let err = fails(
        command(&["compare", "--a", &run("dense-seed0")])
            .output()
            .unwrap(),
    );
    assert!(err.contains("--b"), "{err}");
    // The same configuration trained twice computes the same thing; another seed does not.
    let same = ok(command(&[
        "compare",
        "--identical",
        &run("task-moe-seed0"),
        &run("again-task-moe-seed0"),
        "--out",
        report.to_str().unwrap(),
    ])
    .output()
    .unwrap());
    assert!(
        same.contains("**Outputs identical**") && same.contains("model.safetensors"),
        "{same}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("compare.json")).unwrap())
            .unwrap();
    assert_eq!(json["identical"], serde_json::json!(true));
    let err = fails(
        command(&["compare", "--identical", &run("task-moe-seed0")])
            .output()
            .unwrap(),
    );
    assert!(err.contains("takes two run folders, got 1"), "{err}");
    let err = fails(
        command(&[
            "compare",
            "--identical",
            &run("task-moe-seed0"),
            &run("task-moe-seed1"),
        ])
        .output()
        .unwrap(),
    );
    assert!(err.contains("differ in"), "{err}");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn affinity_measures_a_fresh_model_and_a_trained_run() {
    let out = scratch("affinity");
    let f = tiny_config();
    // The model as training would start it: nothing written without --out, no run left.
    let init = ok(command(&[
        "affinity",
        "--init",
        "--config",
        f.to_str().unwrap(),
        "--set",
        &format!("output.dir={}", out.display()),
        "--examples",
        "32",
    ])
    .output()
    .unwrap());
    for group in ["shared", "experts", "router 0", "router 1", "family ARI"] {
        assert!(init.contains(group), "{group}: {init}");
    }
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "--init left files"
    );

    ok(train_tiny(&out, &["--set", "output.name=run"])
        .output()
        .unwrap());
    let run = out.join("run");
    ok(on_run("affinity", &run, &["--split", "validation"]));
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("affinity-validation-step12.json")).unwrap(),
    )
    .unwrap();
    let tasks = json["tasks"].as_array().unwrap().len();
    assert!(tasks >= 2, "{json}");
    assert_eq!(
        json["config"]["train"]["steps"], 12,
        "the resolved configuration"
    );
    assert_eq!(json["split"], "validation");
    for group in json["groups"].as_array().unwrap() {
        let cosine = group["cosine"].as_array().unwrap();
        assert_eq!(cosine.len(), tasks);
        assert_eq!(group["centred_cosine"].as_array().unwrap().len(), tasks);
    }

    // A configuration is for --init only; a missing run folder is named.
    let err = fails(taskmoe(&["affinity", "--config", f.to_str().unwrap()]));
    assert!(err.contains("--init"), "{err}");
    let err = fails(taskmoe(&["affinity", "--run", "/nonexistent/run"]));
    assert!(err.contains("/nonexistent/run"), "{err}");
    std::fs::remove_dir_all(out).unwrap();
}
