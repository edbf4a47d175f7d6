//! The training loop on the tiny configuration: a NaN weight stops it with the step, the task
//! and the last good checkpoint named; `skip-step` goes on, warns and is capped; the best
//! checkpoint survives rotation; a locked run folder refuses a second trainer; config errors
//! name their key.

use crate::no_eval;
use std::path::{Path, PathBuf};

use taskmoe_train::{
    list_checkpoints, EvalPoint, Progress, RunConfig, RunData, Silent, StepLog, TrainError, Trainer,
};

/// Collects the messages a training run reports.
#[derive(Default)]
struct Messages(Vec<String>);

impl Progress for Messages {
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: &StepLog) {}
    fn message(&mut self, text: &str) {
        self.0.push(text.to_string());
    }
    fn finish(&mut self) {}
}

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
    assert!(err(&["checkpoint.keep_last=0"]).contains("checkpoint.keep_last"));
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

/// Multiplies the task heads' weights by `factor`: the logits, and the loss, explode while
/// staying finite.
fn blow_up_heads(trainer: &Trainer, factor: f64) {
    let vars = trainer.var_store().variables();
    let heads: Vec<_> = vars
        .iter()
        .filter(|(n, _)| n.starts_with("heads"))
        .collect();
    assert!(!heads.is_empty(), "{:?}", vars.keys().collect::<Vec<_>>());
    tch::no_grad(|| {
        for (_, v) in heads {
            let _ = v.shallow_clone().g_mul_scalar_(factor);
        }
    });
}

#[test]
fn an_exploding_finite_loss_is_treated_like_a_nan() {
    let (cfg, out) = tiny("spike", &["train.steps=20"]);
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, Some(11)).unwrap();
    assert_eq!(trainer.state().recent_losses.len(), 11);
    blow_up_heads(&trainer, 1e9);
    let err = trainer.train(&mut no_eval, &mut Silent, None).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, TrainError::LossSpike { step: 12, .. })
            && text.contains("train.loss_spike_factor")
            && text.contains("checkpoint-9"),
        "{text}"
    );
    drop(trainer);
    std::fs::remove_dir_all(&out).unwrap();

    // Under skip-step the update is skipped with the reason, the weights stay as they were.
    let (cfg, out) = tiny(
        "spikeskip",
        &["train.steps=14", "train.nonfinite=skip-step"],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, Some(11)).unwrap();
    blow_up_heads(&trainer, 1e9);
    let before = trainer.var_store().variables()["embeddings.word_embeddings.weight"].copy();
    let mut messages = Messages::default();
    trainer.train(&mut no_eval, &mut messages, Some(1)).unwrap();
    assert_eq!(trainer.state().skipped_steps, 1);
    let after = &trainer.var_store().variables()["embeddings.word_embeddings.weight"];
    assert!(before.equal(after), "a skipped step changes no weight");
    assert!(
        messages
            .0
            .iter()
            .any(|m| m.contains("update skipped") && m.contains("running median")),
        "{:?}",
        messages.0
    );
    drop(trainer);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn skipped_steps_are_warned_logged_as_nan_and_capped() {
    let (cfg, out) = tiny(
        "skipcap",
        &[
            "train.nonfinite=skip-step",
            "train.steps=10",
            "train.max_skipped_steps=3",
        ],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, Some(2)).unwrap();
    poison(&trainer);
    let mut messages = Messages::default();
    let err = trainer
        .train(&mut no_eval, &mut messages, None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::TooManySkipped {
                step: 6,
                skipped: 4,
                max: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("train.max_skipped_steps = 3"),
        "{err}"
    );
    let warnings: Vec<&String> = messages
        .0
        .iter()
        .filter(|m| m.contains("update skipped") && m.contains("is not finite"))
        .collect();
    assert_eq!(warnings.len(), 4, "{:?}", messages.0);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for (i, line) in lines.iter().enumerate() {
        assert!(line["time"].as_f64().unwrap() > 1.7e9, "wall time: {line}");
        assert!(line["elapsed_s"].as_f64().unwrap() > 0.0, "{line}");
        if i >= 2 {
            assert_eq!(line["loss"], "NaN", "non-finite values are written as such");
            assert_eq!(line["skipped"], true);
        } else {
            assert!(line["loss"].as_f64().unwrap().is_finite());
        }
    }
    std::fs::remove_dir_all(out).unwrap();
}

/// Trains 8 steps, evaluating every 2 with the scripted scores, a checkpoint every 4 and one
/// kept; returns the steps of the checkpoints left.
fn checkpoints_left(name: &str, keep_best: bool) -> Vec<u64> {
    let (cfg, out) = tiny(
        name,
        &[
            "train.steps=8",
            "eval.every=2",
            "checkpoint.every=4",
            "checkpoint.keep_last=1",
            &format!("checkpoint.keep_best={keep_best}"),
        ],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    let mut scripted = |_: &taskmoe_model::MultiTaskModel, step: u64| {
        let score = match step {
            2 => 0.5,
            4 => 0.3,
            6 => 0.9,
            _ => 0.1,
        };
        Ok(EvalPoint {
            record: serde_json::json!({ "score": score }),
            score: Some(("validation/mean".into(), score, true)),
        })
    };
    trainer.train(&mut scripted, &mut Silent, None).unwrap();
    assert_eq!(trainer.state().best.as_ref().unwrap().step, 6);
    drop(trainer);
    let left = list_checkpoints(out.join("run"))
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    std::fs::remove_dir_all(out).unwrap();
    left
}

#[test]
fn the_best_checkpoint_is_written_and_kept_beside_keep_last() {
    // Step 6 sets the best score off the checkpoint cadence: it gets a checkpoint, which
    // rotation keeps beside the newest one.
    assert_eq!(checkpoints_left("best", true), vec![6, 8]);
    assert_eq!(checkpoints_left("nobest", false), vec![8]);
}

#[test]
fn a_locked_run_folder_refuses_a_second_trainer() {
    let (cfg, out) = tiny("lock", &[]);
    let data = RunData::load(&cfg).unwrap();
    let first = Trainer::new(&cfg, &data, false).unwrap();
    let err = Trainer::new(&cfg, &data, false).err().unwrap().to_string();
    assert!(
        err.contains("in use by another process")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(first);
    Trainer::new(&cfg, &data, false).expect("the lock is released with its holder");
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_checkpoint_loads_for_inference_from_its_own_files() {
    let (cfg, out) = tiny("inference", &["train.steps=3"]);
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, None).unwrap();
    let dir = trainer.last_checkpoint().unwrap().to_path_buf();
    drop(trainer);
    for file in [taskmoe_train::TASKS_FILE, taskmoe_train::VOCAB_TXT] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    // A copy whose config.toml names a pretrained folder that does not exist (as on another
    // machine): the run config no longer loads, the checkpoint still does.
    let config = std::fs::read_to_string(dir.join(taskmoe_train::RUN_CONFIG_FILE)).unwrap();
    assert!(config.contains("[init]\n"));
    let stale = config.replace("[init]\n", "[init]\nfrom = \"/nonexistent/bert\"\n");
    let copy = taskmoe_train::CheckpointWriter::new(out.join("copy"), None)
        .unwrap()
        .write(3, |files| -> std::io::Result<()> {
            for item in std::fs::read_dir(&dir)? {
                let item = item?;
                let name = item.file_name().to_string_lossy().into_owned();
                if name == taskmoe_train::MANIFEST_FILE {
                    continue;
                }
                let bytes = if name == taskmoe_train::RUN_CONFIG_FILE {
                    stale.clone().into_bytes()
                } else {
                    std::fs::read(item.path())?
                };
                std::fs::write(files.dir().join(&name), bytes)?;
            }
            Ok(())
        })
        .unwrap();
    assert!(RunConfig::load(Some(&copy.file(taskmoe_train::RUN_CONFIG_FILE)), &[]).is_err());
    let inf = taskmoe_train::Inference::load(&copy, tch::Device::Cpu).unwrap();
    assert_eq!(inf.specs.len(), data.specs.len());
    assert_eq!(inf.specs[0].labels, vec!["0", "1"]);
    assert_eq!(inf.threads, 1, "tiny.toml's runtime.threads");
    // The copied vocabulary tokenizes the synthetic text to the generated ids.
    let (ids, _) = inf.tokenizer.encode("w0 w3", None).unwrap();
    assert_eq!(ids, vec![2, 5, 8, 3]);
    assert!(inf
        .task_id("nope")
        .unwrap_err()
        .to_string()
        .contains("lexicon_hi0"));
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn train_only_freezes_the_rest_and_still_learns_what_it_trains() {
    let (cfg, out) = tiny(
        "train-only",
        &["train.train_only=[\"router\", \"heads\"]", "train.steps=6"],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    let before: Vec<(String, tch::Tensor)> = trainer
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    trainer.train(&mut no_eval, &mut Silent, None).unwrap();
    let after = trainer.var_store().variables();
    let (mut moved, mut frozen) = (0, 0);
    for (name, old) in &before {
        let changed = after[name].ne_tensor(old).any().int64_value(&[]) != 0;
        let trained = name.contains("router") || name.contains("heads");
        if trained {
            moved += usize::from(changed);
        } else {
            assert!(!changed, "{name} is frozen but moved");
            frozen += 1;
        }
    }
    assert!(moved > 0 && frozen > 0, "moved {moved}, frozen {frozen}");
    let _ = std::fs::remove_dir_all(&out);

    let (bad, out) = tiny(
        "train-only-bad",
        &["train.train_only=[\"nothing-like-this\"]"],
    );
    let data = RunData::load(&bad).unwrap();
    let err = Trainer::new(&bad, &data, false).err().unwrap().to_string();
    assert!(
        err.contains("train.train_only") && err.contains("nothing-like-this"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn restore_best_loads_the_best_validation_checkpoint() {
    let (cfg, out) = tiny(
        "restore-best",
        &[
            "train.steps=6",
            "eval.every=2",
            "checkpoint.every=6",
            "eval.test_checkpoint=\"best\"",
        ],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    // A made-up validation score that is best at step 2 and worse afterwards.
    let mut eval = |_: &taskmoe_model::MultiTaskModel, step: u64| {
        Ok(EvalPoint {
            record: serde_json::json!({ "step": step }),
            score: Some(("validation/mean".into(), -(step as f64 - 2.0).abs(), true)),
        })
    };
    trainer.train(&mut eval, &mut Silent, None).unwrap();
    let last = trainer.var_store().variables()["embeddings.word_embeddings.weight"].copy();
    assert_eq!(trainer.restore_best().unwrap(), Some(2));
    let restored = trainer.var_store().variables()["embeddings.word_embeddings.weight"].copy();
    let step2 = tch::Tensor::read_safetensors(out.join("run/checkpoint-2/model.safetensors"))
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "embeddings.word_embeddings.weight")
        .unwrap()
        .1;
    assert!(restored.equal(&step2));
    assert!(
        !restored.equal(&last),
        "training moved the weights after step 2"
    );
    let _ = std::fs::remove_dir_all(&out);

    // `best` without evaluations to choose by is refused, naming the key.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let err = RunConfig::load(
        Some(&path),
        &[
            "eval.test_checkpoint=\"best\"".to_string(),
            "eval.every=0".to_string(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("eval.test_checkpoint"), "{err}");
}

#[test]
fn the_step_benchmarks_time_is_the_step_the_trainer_takes() {
    // No dropout and no router noise: the step is a function of the weights and the batch.
    let (cfg, out) = tiny(
        "onestep",
        &[
            "model.dropout=0.0",
            "model.attention_dropout=0.0",
            "model.moe.router.noise_std=0.0",
            "train.steps=5",
        ],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    // A twin of the trainer's model and optimizer, stepped by `Objective::step` as the
    // benchmarks and `taskmoe check` do, on the trainer's first batch.
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    // Building draws from the global generator (overwritten by the copy below): under the lock,
    // so the draws never land inside another test's trainer step (router noise).
    let model = {
        let _rng = taskmoe_device::lock_global_rng();
        taskmoe_model::MultiTaskModel::new(&vs.root(), &cfg.model, &data.heads()).unwrap()
    };
    let mut twin = vs;
    twin.copy(trainer.var_store()).unwrap();
    let mut opt =
        taskmoe_optim::AdamW::new(twin.variables().into_iter().collect(), cfg.optim.adamw())
            .unwrap();
    let names: Vec<String> = data.specs.iter().map(|s| s.name.clone()).collect();
    let objective = taskmoe_train::Objective::new(&cfg, &names, tch::Device::Cpu);
    let batch = data
        .sampler(&cfg)
        .unwrap()
        .batch(0)
        .to_tensors(tch::Device::Cpu)
        .unwrap();
    let lr = cfg.optimizer_schedule().lr(0);
    let outcome = objective
        .step(&model, &mut opt, &batch, lr, &mut taskmoe_train::Unguarded)
        .unwrap();
    assert!(outcome.skipped.is_none());

    trainer.train(&mut no_eval, &mut Silent, Some(1)).unwrap();
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(out.join("run/metrics.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["loss"].as_f64().unwrap(), outcome.values.loss);
    assert_eq!(line["grad_norm"].as_f64().unwrap(), outcome.grad_norm);
    // Same loss, same gradients, same update: every weight equal after the step.
    let trained = trainer.var_store().variables();
    for (name, value) in twin.variables() {
        assert!(
            value.equal(&trained[&name]),
            "{name} differs after one step"
        );
    }
    drop(trainer);
    std::fs::remove_dir_all(out).unwrap();
}

/// `table` in the `[train]` layout before the sections (taskmoe 0.1): every key of
/// [`MOVED_KEYS`] put back where it was.
fn old_layout(mut table: toml::Table) -> toml::Table {
    fn take(t: &mut toml::Table, path: &str) -> Option<toml::Value> {
        match path.split_once('.') {
            None => t.remove(path),
            Some((head, rest)) => take(t.get_mut(head)?.as_table_mut()?, rest),
        }
    }
    // The clipping norm sat in `[train]`, the rest of `[optim]` in `[train.optimizer]`.
    let mut moved: Vec<(&str, &str)> = taskmoe_train::MOVED_KEYS.to_vec();
    moved.sort_by_key(|(_, new)| std::cmp::Reverse(new.len()));
    for (old, new) in moved {
        if let Some(value) = take(&mut table, new) {
            let (_, leaf) = old.split_once('.').unwrap();
            let train = table["train"].as_table_mut().unwrap();
            train.insert(leaf.to_string(), value);
        }
    }
    for section in ["init", "optim", "schedule", "checkpoint", "eval", "runtime"] {
        if table
            .get(section)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.is_empty())
        {
            table.remove(section);
        }
    }
    table
}

#[test]
fn a_checkpoint_saved_in_the_old_train_layout_loads_and_resumes() {
    let (cfg, out) = tiny("old-layout", &["train.steps=6", "checkpoint.every=3"]);
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, Some(3)).unwrap();
    let dir = trainer.last_checkpoint().unwrap().to_path_buf();
    drop(trainer);
    let saved: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join(taskmoe_train::RUN_CONFIG_FILE)).unwrap())
            .unwrap();
    let old = toml::to_string_pretty(&old_layout(saved)).unwrap();
    assert!(
        old.contains("eval_every = 6") && old.contains("[train.schedule]"),
        "{old}"
    );

    // The same checkpoint, its config.toml in the old layout, in a run folder of its own.
    let run = out.join("old");
    let copy = taskmoe_train::CheckpointWriter::new(&run, None)
        .unwrap()
        .write(3, |files| -> std::io::Result<()> {
            for item in std::fs::read_dir(&dir)? {
                let name = item?.file_name().to_string_lossy().into_owned();
                if name == taskmoe_train::MANIFEST_FILE {
                    continue;
                }
                let bytes = match name == taskmoe_train::RUN_CONFIG_FILE {
                    true => old.clone().into_bytes(),
                    false => std::fs::read(dir.join(&name))?,
                };
                std::fs::write(files.dir().join(&name), bytes)?;
            }
            Ok(())
        })
        .unwrap();

    // A user's file in the old layout is refused, naming each new key.
    let err = RunConfig::load(Some(&copy.file(taskmoe_train::RUN_CONFIG_FILE)), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`train.eval_every` moved to `eval.every`")
            && err.contains("`train.schedule` moved to `schedule`")
            && err.contains("taskmoe config migrate"),
        "{err}"
    );
    // The checkpoint's own record loads: for inference, with its data, and to resume.
    let inf = taskmoe_train::Inference::load(&copy, tch::Device::Cpu).unwrap();
    assert_eq!(
        inf.threads, 1,
        "runtime.threads read from the old train.threads"
    );
    let trained = taskmoe_train::TrainedRun::load(copy, &[], Some(tch::Device::Cpu)).unwrap();
    assert_eq!(trained.config.eval, cfg.eval);
    let resumed_cfg = RunConfig {
        output: taskmoe_train::OutputConfig {
            dir: out.clone(),
            name: "old".into(),
            ..cfg.output.clone()
        },
        ..cfg.clone()
    };
    let mut resumed = Trainer::new(&resumed_cfg, &data, true).unwrap();
    assert_eq!(resumed.state().step, 3);
    resumed.train(&mut no_eval, &mut Silent, None).unwrap();
    assert_eq!(resumed.state().step, 6);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn bias_balancing_trains_resumes_exactly_and_stays_out_of_the_optimizer() {
    let sets = [
        "train.steps=6",
        "checkpoint.every=3",
        "model.moe.router.bias_update_rate=0.01",
        "model.moe.router.load_balance_coef=0",
    ];
    let bias = |t: &Trainer| {
        let vars = t.var_store().variables();
        let mut names: Vec<&String> = vars.keys().filter(|n| n.ends_with("expert_bias")).collect();
        names.sort();
        assert_eq!(names.len(), 2, "one bias per MoE block");
        names
            .into_iter()
            .flat_map(|n| Vec::<f32>::try_from(&vars[n]).unwrap())
            .collect::<Vec<f32>>()
    };
    let losses = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("run/metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string())
            .collect()
    };
    let (cfg, straight_out) = tiny("bias-straight", &sets);
    let data = RunData::load(&cfg).unwrap();
    let mut straight = Trainer::new(&cfg, &data, false).unwrap();
    assert!(
        straight
            .optimizer()
            .names()
            .all(|n| !n.ends_with("expert_bias")),
        "the selection bias is not an optimizer parameter"
    );
    straight.train(&mut no_eval, &mut Silent, None).unwrap();
    let straight_bias = bias(&straight);
    assert!(
        straight_bias.iter().any(|&b| b != 0.0),
        "six steps moved the bias: {straight_bias:?}"
    );
    drop(straight);

    let (cfg, out) = tiny("bias-resumed", &sets);
    let resumed = crate::stopped_at_3_and_resumed(&cfg, &data);
    assert_eq!(bias(&resumed), straight_bias);
    assert_eq!(losses(&out), losses(&straight_out));
    std::fs::remove_dir_all(out).unwrap();
    std::fs::remove_dir_all(straight_out).unwrap();
}

#[test]
fn without_the_final_optimizer_earlier_checkpoints_resume_and_the_last_finishes() {
    let (cfg, out) = tiny(
        "final-optimizer",
        &["checkpoint.final_optimizer=false", "checkpoint.every=6"],
    );
    let data = RunData::load(&cfg).unwrap();
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut no_eval, &mut Silent, Some(6)).unwrap();
    let run = out.join("run");
    let optimizer = |step: u64| {
        run.join(format!("checkpoint-{step}"))
            .join(taskmoe_train::OPTIMIZER_FILE)
            .is_file()
    };
    assert!(
        optimizer(6),
        "an intermediate checkpoint keeps the optimizer state"
    );
    drop(trainer);
    // Stopped at step 6: resumes exactly from there and ends without the optimizer state.
    let mut resumed = Trainer::new(&cfg, &data, true).unwrap();
    assert_eq!(resumed.state().step, 6);
    resumed.train(&mut no_eval, &mut Silent, None).unwrap();
    assert!(!optimizer(12), "the last checkpoint holds the weights only");
    drop(resumed);
    // Stopped after its last checkpoint (before its final test): resumes with nothing left
    // to train.
    let done = Trainer::new(&cfg, &data, true).unwrap();
    assert_eq!(done.state().step, 12);
    drop(done);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn patience_ends_a_run_that_stopped_improving_and_a_resume_keeps_it_ended() {
    // Validation every 2 steps of 12; scores improve at steps 2 and 4, then stay below the
    // best: with patience 2 the run ends at step 8, checkpointed there.
    let (cfg, out) = tiny(
        "patience",
        &[
            "eval.every=2",
            "eval.patience=2",
            "checkpoint.every=100",
            "checkpoint.keep_last=1",
        ],
    );
    let data = RunData::load(&cfg).unwrap();
    let scores = |step: u64| match step {
        2 => 0.5,
        4 => 0.6,
        6 => 0.6, // equal is not better
        _ => 0.55,
    };
    let mut evaluated = Vec::new();
    let mut hook = |_: &taskmoe_model::MultiTaskModel, step: u64| {
        evaluated.push(step);
        Ok(taskmoe_train::EvalPoint {
            record: serde_json::json!({}),
            score: Some(("validation/mean".into(), scores(step), true)),
        })
    };
    let mut trainer = Trainer::new(&cfg, &data, false).unwrap();
    trainer.train(&mut hook, &mut Silent, None).unwrap();
    assert_eq!(evaluated, vec![2, 4, 6, 8]);
    let state = trainer.state().clone();
    assert_eq!(state.step, 8);
    assert_eq!(state.stopped_early_at, Some(8));
    assert_eq!(state.best.as_ref().map(|b| b.step), Some(4));
    let run = out.join("run");
    assert!(
        run.join("checkpoint-8").is_dir(),
        "the stopping step is checkpointed"
    );
    assert!(
        run.join("checkpoint-4").is_dir(),
        "the best checkpoint is kept"
    );
    drop(trainer);
    // Resumed, it trains nothing more.
    let mut resumed = Trainer::new(&cfg, &data, true).unwrap();
    assert_eq!(resumed.state().step, 8);
    resumed.train(&mut no_eval, &mut Silent, None).unwrap();
    assert_eq!(resumed.state().step, 8);
    drop(resumed);
    // Without evaluations there is nothing to wait on: refused, naming the key.
    let err = RunConfig::load(
        Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")),
        &["eval.every=0".into(), "eval.patience=3".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("eval.patience"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}
