//! The training loop on the tiny configuration: a NaN weight stops it with the step, the task
//! and the last good checkpoint named; `skip-step` goes on; config errors name their key.

use std::path::{Path, PathBuf};

use taskmoe_train::{EvalPoint, RunConfig, RunData, Silent, Trainer};

fn tiny(name: &str, extra: &[&str]) -> (RunConfig, PathBuf) {
    let out = std::env::temp_dir().join(format!("taskmoe-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut sets = vec![
        format!("output.dir={}", out.display()),
        "output.name=run".to_string(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    (RunConfig::load(Some(&path), &sets).unwrap(), out)
}

fn no_eval(_: &taskmoe_model::MultiTaskModel, _: u64) -> taskmoe_train::Result<EvalPoint> {
    Ok(EvalPoint {
        record: serde_json::json!({}),
        score: None,
    })
}

fn poison(trainer: &Trainer) {
    let vars = trainer.var_store().variables();
    tch::no_grad(|| {
        let _ = vars["embeddings.word_embeddings.weight"]
            .shallow_clone()
            .fill_(f64::NAN);
    });
}

#[test]
fn a_nan_weight_stops_training_at_that_step_naming_task_and_checkpoint() {
    let (cfg, out) = tiny("nan", &[]);
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, Some(3)).unwrap();
    assert_eq!(trainer.state().step, 3);
    poison(&trainer);
    let err = trainer
        .train(&mut no_eval, &mut Silent, None)
        .unwrap_err()
        .to_string();
    // The 4th step (1-based, as in metrics.jsonl) is the first with the NaN weight.
    assert!(err.starts_with("step 4:"), "{err}");
    assert!(err.contains("the loss of task `"), "{err}");
    assert!(
        err.contains("checkpoint-3") && err.contains("not finite"),
        "{err}"
    );
    assert_eq!(trainer.state().step, 3, "no update was applied");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn skip_step_policy_skips_and_goes_on() {
    let (cfg, out) = tiny("skip", &["train.nonfinite=skip-step", "train.steps=5"]);
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, Some(2)).unwrap();
    poison(&trainer);
    trainer.train(&mut no_eval, &mut Silent, None).unwrap();
    assert_eq!(trainer.state().step, 5);
    assert_eq!(trainer.state().skipped_steps, 3);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn config_errors_name_the_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let err = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        RunConfig::load(Some(&path), &sets).unwrap_err().to_string()
    };
    assert!(err(&["train.stepz=1"]).contains("unknown key `train.stepz`"));
    assert!(err(&["train.steps=-1"]).contains("train.steps"));
    assert!(err(&["model.num_heads=3"]).contains("model.num_heads"));
    assert!(err(&["train.keep_last=0"]).contains("train.keep_last"));
    assert!(err(&["train.steps"]).contains("key.path=value"));
    let defaults = RunConfig::load(None, &[]).unwrap();
    assert_eq!(defaults, RunConfig::default());
    // The saved TOML reads back as the same configuration.
    let dir = std::env::temp_dir().join(format!("taskmoe-train-{}-toml", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(&file, defaults.to_toml()).unwrap();
    assert_eq!(RunConfig::load(Some(&file), &[]).unwrap(), defaults);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn paths_are_relative_to_their_origin_and_saved_absolute() {
    let dir = std::env::temp_dir().join(format!("taskmoe-train-{}-paths", std::process::id()));
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let file = dir.join("run.toml");
    std::fs::write(&file, "[data]\nregistry = \"tasks.toml\"\n").unwrap();
    // From the file: relative to the file's folder.
    let cfg = RunConfig::load(Some(&file), &[]).unwrap();
    assert_eq!(
        cfg.data.registry.as_deref(),
        Some(dir.join("tasks.toml").as_path())
    );
    // From --set: relative to the working directory.
    let cfg = RunConfig::load(Some(&file), &["data.tokenizer=tok/tokenizer.json".into()]).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        cfg.data.tokenizer.as_deref(),
        Some(cwd.join("tok/tokenizer.json").as_path())
    );
    // A saved config reads back the same from another folder.
    let saved = sub.join("config.toml");
    std::fs::write(&saved, cfg.to_toml()).unwrap();
    assert_eq!(RunConfig::load(Some(&saved), &[]).unwrap(), cfg);
    // A bare value for a string key stays a string.
    let cfg = RunConfig::load(None, &["output.name=2024".into()]).unwrap();
    assert_eq!(cfg.output.name, "2024");
    std::fs::remove_dir_all(dir).unwrap();
}
