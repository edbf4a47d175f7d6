//! The trainer state file and the non-finite policy.

use serde::{Deserialize, Serialize};
use taskmoe_train::{NonFinitePolicy, StepAction, TrainError, TrainerState};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct FakeSampler {
    seed: u64,
    step: u64,
    fingerprint: String,
}

#[test]
fn trainer_state_round_trips_exactly() {
    let mut state = TrainerState::new(1234);
    state.step = 500;
    state.elapsed_secs = 12.345_678_901_234;
    state.examples_seen = 16_000;
    state.skipped_steps = 2;
    let sampler = FakeSampler {
        seed: 1234,
        step: 500,
        fingerprint: "ab12".into(),
    };
    state.set_sampler(&sampler).unwrap();
    state.update_best("validation/loss", 0.4, false).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trainer_state.json");
    state.write(&path).unwrap();
    let back = TrainerState::read(&path).unwrap();
    assert_eq!(back, state);
    assert_eq!(back.sampler::<FakeSampler>().unwrap(), sampler);
    assert!(back.sampler::<u64>().is_err());

    // Unknown fields and other versions are refused.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("{", "{\n  \"lr\": 0.1,", 1)).unwrap();
    let err = TrainerState::read(&path).unwrap_err();
    assert!(
        matches!(err, TrainError::Json { .. }) && err.to_string().contains("unknown field `lr`")
    );
    std::fs::write(&path, text.replace("\"version\": 1", "\"version\": 2")).unwrap();
    assert!(TrainerState::read(&path)
        .unwrap_err()
        .to_string()
        .contains("version 2"));
}

#[test]
fn best_metric_follows_the_direction() {
    let mut state = TrainerState::new(0);
    state.step = 10;
    assert!(state.update_best("acc", 0.6, true).unwrap());
    state.step = 20;
    assert!(!state.update_best("acc", 0.5, true).unwrap());
    assert!(
        !state.update_best("acc", 0.6, true).unwrap(),
        "ties keep the earlier step"
    );
    assert!(state.update_best("acc", 0.7, true).unwrap());
    let best = state.best.clone().unwrap();
    assert_eq!((best.value, best.step), (0.7, 20));
    assert!(
        state.update_best("loss", 3.0, false).unwrap(),
        "another metric replaces it"
    );
    assert!(state.update_best("loss", 2.0, false).unwrap());
    assert!(!state.update_best("loss", 2.5, false).unwrap());
    assert!(state.update_best("loss", f64::NAN, false).is_err());
}

#[test]
fn non_finite_policy() {
    #[derive(Deserialize)]
    struct Cfg {
        on_non_finite: NonFinitePolicy,
    }
    let cfg: Cfg = toml::from_str("on_non_finite = \"skip-step\"").unwrap();
    assert_eq!(cfg.on_non_finite, NonFinitePolicy::SkipStep);
    assert!(toml::from_str::<Cfg>("on_non_finite = \"skip_step\"").is_err());
    assert_eq!(NonFinitePolicy::default(), NonFinitePolicy::Error);
    assert_eq!(
        serde_json::to_string(&NonFinitePolicy::Error).unwrap(),
        "\"error\""
    );

    let skip = NonFinitePolicy::SkipStep;
    assert_eq!(skip.check(3, "loss", 1.5).unwrap(), StepAction::Apply);
    assert_eq!(skip.check(3, "loss", f64::NAN).unwrap(), StepAction::Skip);
    let err = NonFinitePolicy::Error
        .check(7, "gradient norm", f64::INFINITY)
        .unwrap_err();
    assert_eq!(err.to_string(), "step 7: gradient norm is not finite (inf)");
    assert_eq!(
        NonFinitePolicy::Error.check(7, "loss", -2.0).unwrap(),
        StepAction::Apply
    );
}
