//! Learning-rate schedules at their boundary steps, and the config format.

use taskmoe_optim::{Decay, ScheduleConfig};

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-15, "{a} != {b}");
}

fn schedule(decay: Decay) -> ScheduleConfig {
    ScheduleConfig {
        peak_lr: 1.0,
        warmup_steps: 4,
        total_steps: 14,
        decay,
        min_lr_ratio: 0.1,
    }
}

#[test]
fn warmup_is_linear_and_reaches_the_peak_on_its_last_step() {
    let s = schedule(Decay::Linear);
    close(s.lr(0), 0.25);
    close(s.lr(1), 0.5);
    close(s.lr(3), 1.0);
    close(s.lr(4), 1.0);
}

#[test]
fn linear_decay_boundaries() {
    let s = schedule(Decay::Linear);
    // progress (step - 4) / 10; lr = 0.1 + 0.9 * (1 - progress).
    close(s.lr(9), 0.1 + 0.9 * 0.5);
    close(s.lr(13), 0.1 + 0.9 * 0.1);
    close(s.lr(14), 0.1);
    close(s.lr(1_000_000), 0.1);
}

#[test]
fn cosine_decay_boundaries() {
    let s = schedule(Decay::Cosine);
    close(s.lr(4), 1.0);
    // Half-way: cos(pi / 2) = 0 -> the mean of peak and floor.
    assert!((s.lr(9) - 0.55).abs() < 1e-12);
    close(s.lr(14), 0.1);
    let quarter = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * 0.2).cos());
    close(s.lr(6), quarter);
    // Monotone after warmup.
    assert!((4..20).all(|t| s.lr(t + 1) <= s.lr(t)));
}

#[test]
fn constant_and_no_warmup() {
    let s = ScheduleConfig {
        warmup_steps: 0,
        ..schedule(Decay::Constant)
    };
    close(s.lr(0), 1.0);
    close(s.lr(1_000), 1.0);
    let s = schedule(Decay::Constant);
    close(s.lr(0), 0.25);
    close(s.lr(100), 1.0);
    // warmup == total: floor right after warmup.
    let s = ScheduleConfig {
        warmup_steps: 14,
        ..schedule(Decay::Linear)
    };
    close(s.lr(13), 1.0);
    close(s.lr(14), 0.1);
}

#[test]
fn toml_config_with_defaults_and_validation() {
    let s: ScheduleConfig =
        toml::from_str("peak_lr = 3e-4\nwarmup_steps = 10\ndecay = \"cosine\"").unwrap();
    assert_eq!(s.peak_lr, 3e-4);
    assert_eq!(s.warmup_steps, 10);
    assert_eq!(s.decay, Decay::Cosine);
    assert_eq!(s.total_steps, ScheduleConfig::default().total_steps);
    assert_eq!(s.min_lr_ratio, 0.0);
    s.validate().unwrap();
    assert_eq!(
        toml::from_str::<ScheduleConfig>("").unwrap(),
        ScheduleConfig::default()
    );
    let err = toml::from_str::<ScheduleConfig>("peak_lr = 1.0\nwarmup = 3").unwrap_err();
    assert!(err.to_string().contains("unknown field `warmup`"), "{err}");
    assert!(toml::from_str::<ScheduleConfig>("decay = \"step\"").is_err());

    for bad in [
        ScheduleConfig {
            peak_lr: 0.0,
            ..ScheduleConfig::default()
        },
        ScheduleConfig {
            min_lr_ratio: 1.5,
            ..ScheduleConfig::default()
        },
        ScheduleConfig {
            warmup_steps: 20,
            total_steps: 10,
            ..ScheduleConfig::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    // A constant schedule does not need total_steps.
    ScheduleConfig {
        warmup_steps: 20,
        total_steps: 10,
        decay: Decay::Constant,
        ..ScheduleConfig::default()
    }
    .validate()
    .unwrap();
}
