//! Helpers of the two training-step benches (`train_step`, `real_step`; each includes this file
//! as `mod step_common`): the one timed step and the heads and flags both build.

use std::time::Instant;

use taskmoe_data::TensorBatch;
use taskmoe_model::{HeadSpec, MultiTaskModel};
use taskmoe_optim::AdamW;
use taskmoe_train::{Objective, Timed};

/// Milliseconds of one training step ([`Objective::step`], the trainer's step), split where
/// backward ended: `(forward + backward, clip + optimizer)`. Asserts the step was applied with
/// a finite loss and gradient norm.
pub fn timed_step(
    model: &MultiTaskModel,
    opt: &mut AdamW,
    objective: &Objective,
    batch: &TensorBatch,
    lr: f64,
) -> (f64, f64) {
    let mut timed = Timed::default();
    let start = Instant::now();
    let outcome = objective.step(model, opt, batch, lr, &mut timed).unwrap();
    let end = Instant::now();
    assert!(
        outcome.skipped.is_none()
            && outcome.values.loss.is_finite()
            && outcome.grad_norm.is_finite()
    );
    let mid = timed.backward_done.expect("the step ran backward");
    (
        (mid - start).as_secs_f64() * 1e3,
        (end - mid).as_secs_f64() * 1e3,
    )
}

/// `tasks` classification heads of `classes` labels, named `task0`, `task1`, ...
pub fn classification_heads(tasks: usize, classes: usize) -> Vec<HeadSpec> {
    (0..tasks)
        .map(|i| HeadSpec::classification(format!("task{i}"), classes))
        .collect()
}

/// The number after `prefix` in the field `field` of the point spec `spec` (`e8` with prefix
/// `e` is 8); a field without it panics, naming both.
pub fn spec_number(spec: &str, field: &str, prefix: char) -> usize {
    field
        .strip_prefix(prefix)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad field `{field}` in spec `{spec}`"))
}

/// The value after `flag` on the command line, if any.
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The whole stdout of a point's process and its `POINT` line split into fields; `None`, after
/// printing the process's stderr under `spec` and `side` (who measured), when it printed none.
pub fn point_fields(
    spec: &str,
    side: &str,
    out: &std::process::Output,
) -> Option<(String, Vec<String>)> {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(line) = text.lines().find(|l| l.starts_with("POINT")) else {
        eprintln!(
            "{spec} ({side}): no result\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    };
    let fields = line.split_whitespace().map(String::from).collect();
    Some((text, fields))
}
