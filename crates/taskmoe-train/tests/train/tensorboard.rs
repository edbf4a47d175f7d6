//! TensorBoard event files, read back with the crate that wrote them (`tfrecord`): a run's
//! steps, evaluations and configuration are there with the values of `metrics.jsonl`, a resume
//! starts a new file whose session start drops the steps the first process logged beyond its
//! checkpoint, and `output.tensorboard = false` writes none.

use std::path::{Path, PathBuf};

use taskmoe_train::{event_files, read_scalars, EvalPoint, RunConfig, RunData, Silent, Trainer};
use tfrecord::protobuf::event::What;
use tfrecord::protobuf::summary::value::Value as SummaryValue;

fn tiny(name: &str, extra: &[&str]) -> (RunConfig, PathBuf) {
    let out = std::env::temp_dir().join(format!("taskmoe-tb-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut sets = vec![
        format!("output.dir={}", out.display()),
        "output.name=run".to_string(),
        "runtime.threads=1".to_string(),
        "eval.every=4".to_string(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    (RunConfig::load(Some(&path), &sets).unwrap(), out)
}

/// An evaluation record shaped like the CLI's: a split, a mean and a per-task array.
fn scripted_eval(_: &taskmoe_model::MultiTaskModel, step: u64) -> taskmoe_train::Result<EvalPoint> {
    let score = step as f64 / 100.0;
    Ok(EvalPoint {
        record: serde_json::json!({
            "split": "validation",
            "mean": score,
            "tasks": [{"task": "a", "metrics": {"accuracy": score}, "labeled": true}],
        }),
        score: Some(("mean".into(), score, true)),
    })
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_run_writes_its_steps_evaluations_and_configuration_for_tensorboard() {
    let (cfg, out) = tiny("run", &[]);
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer
        .train(&mut scripted_eval, &mut Silent, None)
        .unwrap();
    drop(trainer);
    let run = out.join("run");
    let files = event_files(&run).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");

    let scalars = read_scalars(&run).unwrap();
    let lines = metrics(&run);
    assert_eq!(lines.len(), 12);
    let loss = &scalars["train/loss"];
    assert_eq!(loss.len(), 12);
    for (line, &(step, value)) in lines.iter().zip(loss) {
        assert_eq!(step, line["step"].as_u64().unwrap());
        assert_eq!(value, line["loss"].as_f64().unwrap() as f32);
    }
    let names: Vec<&str> = data.specs.iter().map(|s| s.name.as_str()).collect();
    let task_tags = scalars.keys().filter(|t| t.starts_with("train/loss/"));
    for tag in task_tags.clone() {
        assert!(names.contains(&&tag["train/loss/".len()..]), "{tag}");
    }
    assert!(task_tags.count() > 0);
    // Two MoE blocks of 4 experts: every routing measure per block, loads summing to 1.
    for block in 0..2 {
        for measure in ["gate_entropy", "top1_prob", "load_entropy", "dropped"] {
            let tag = format!("routing/moe{block}/{measure}");
            assert_eq!(scalars[&tag].len(), 12, "{tag}");
        }
        let entropy = scalars[&format!("routing/moe{block}/gate_entropy")][0].1;
        assert!(entropy > 0.0 && entropy <= 4f32.ln() + 1e-5, "{entropy}");
        let load: f32 = (0..4)
            .map(|e| scalars[&format!("routing/moe{block}/load/expert{e}")][0].1)
            .sum();
        assert!((load - 1.0).abs() < 1e-5, "{load}");
    }
    for tag in [
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_s",
        "train/aux/load_balance",
    ] {
        assert_eq!(scalars[tag].len(), 12, "{tag}");
    }
    let lr = lines[3]["lr"].as_f64().unwrap() as f32;
    assert_eq!(scalars["train/lr"][3], (4, lr));
    // Evaluations at 4, 8 and 12 with the record's numbers, by split and task.
    let evals: Vec<(u64, f32)> = [4, 8, 12].iter().map(|&s| (s, s as f32 / 100.0)).collect();
    assert_eq!(scalars["validation/mean"], evals);
    assert_eq!(scalars["validation/tasks/a/metrics/accuracy"], evals);

    // The configuration as a text summary at step 0, the file version first.
    let events: Vec<tfrecord::Event> = tfrecord::EventIter::open(&files[0], Default::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(&events[0].what, Some(What::FileVersion(v)) if v == "brain.Event:2"));
    let config_text = events
        .iter()
        .filter_map(|e| match &e.what {
            Some(What::Summary(s)) => s.value.iter().find(|v| v.tag == "config"),
            _ => None,
        })
        .find_map(|v| match &v.value {
            Some(SummaryValue::Tensor(t)) => Some(String::from_utf8(t.string_val[0].clone())),
            _ => None,
        })
        .expect("a config text summary")
        .unwrap();
    assert!(
        config_text.contains("variant = \"task-moe\""),
        "{config_text}"
    );
    assert!(config_text.contains("tensorboard = true"), "{config_text}");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_resume_opens_a_new_file_and_tensorboard_keeps_the_retrained_steps() {
    let (cfg, out) = tiny("resume", &["checkpoint.every=4", "eval.every=0"]);
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer
        .train(&mut crate::no_eval, &mut Silent, Some(6))
        .unwrap();
    drop(trainer);
    // Steps 5 and 6 came after the last checkpoint (step 4): the resume trains them again,
    // and its session start at step 5 drops the first process's 5 and 6 (its 4 stays).
    let run = out.join("run");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let mut trainer = Trainer::new(&cfg, &data, true).unwrap();
    trainer
        .train(&mut crate::no_eval, &mut Silent, None)
        .unwrap();
    drop(trainer);
    let files = event_files(&run).unwrap();
    assert_eq!(files.len(), 2);
    let events = |path: &Path| -> Vec<tfrecord::Event> {
        tfrecord::EventIter::open(path, Default::default())
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let logged = |events: &[tfrecord::Event]| -> Vec<i64> {
        let has_loss = |e: &&tfrecord::Event| matches!(&e.what, Some(What::Summary(s)) if s.value.iter().any(|v| v.tag == "train/loss"));
        events.iter().filter(has_loss).map(|e| e.step).collect()
    };
    let session_start = |events: &[tfrecord::Event]| -> Vec<i64> {
        let start =
            |e: &&tfrecord::Event| matches!(&e.what, Some(What::SessionLog(l)) if l.status == 1);
        events.iter().filter(start).map(|e| e.step).collect()
    };
    let (first, second) = (events(&files[0]), events(&files[1]));
    assert_eq!(logged(&first), (1..=6).collect::<Vec<i64>>());
    assert_eq!(session_start(&first), [1]);
    assert_eq!(logged(&second), (5..=12).collect::<Vec<i64>>());
    assert_eq!(session_start(&second), [5]);
    let steps: Vec<u64> = read_scalars(&run).unwrap()["train/loss"]
        .iter()
        .map(|&(s, _)| s)
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<u64>>());
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn tensorboard_off_writes_no_event_file() {
    let (cfg, out) = tiny("off", &["output.tensorboard=false", "train.steps=2"]);
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer
        .train(&mut crate::no_eval, &mut Silent, None)
        .unwrap();
    drop(trainer);
    assert!(event_files(&out.join("run")).unwrap().is_empty());
    assert_eq!(metrics(&out.join("run")).len(), 2);
    std::fs::remove_dir_all(out).unwrap();
}
