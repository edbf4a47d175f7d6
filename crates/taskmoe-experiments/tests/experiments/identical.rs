//! `taskmoe compare --identical`: two run folders compared file by file. The folders are
//! written here by hand (a configuration, logs, results, a checkpoint of safetensors), so each
//! kind of difference is made on purpose and nothing is trained.

use std::path::{Path, PathBuf};

use taskmoe_experiments::identical::{identical, FileCheck, RunIdentity};

use crate::scratch;
use tch::Tensor;

/// A run folder `name` under `root`: a configuration, a metrics log with wall-clock fields
/// (and a task called `time`, whose loss is data), a final result, and `checkpoint-4` with a
/// model of two tensors, an optimizer state and a trainer state.
fn run_folder(root: &Path, name: &str, seed: u64, time: f64, weight: f32) -> PathBuf {
    let dir = root.join(name);
    let checkpoint = dir.join("checkpoint-4");
    std::fs::create_dir_all(&checkpoint).unwrap();
    let config = format!(
        "# saved in: {}\n[train]\nseed = {seed}\n\n[output]\nname = \"{name}\"\n",
        dir.display()
    );
    std::fs::write(dir.join("config.toml"), &config).unwrap();
    std::fs::write(checkpoint.join("config.toml"), &config).unwrap();
    let metrics: String = (1..=4)
        .map(|step| {
            format!(
                "{{\"step\":{step},\"time\":{},\"elapsed_s\":{time},\"loss\":{},\
                 \"task_losses\":{{\"time\":0.25}}}}\n",
                time + step as f64,
                1.0 / step as f64
            )
        })
        .collect();
    std::fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    let result = "{\"mean\": 0.75, \"tasks\": {\"a\": 0.75}}";
    std::fs::write(dir.join("final-test.json"), result).unwrap();
    std::fs::write(
        dir.join("learning-curves.svg"),
        format!("<svg>{time}</svg>"),
    )
    .unwrap();
    let tensors = [
        ("head.weight", Tensor::from_slice(&[weight, 2.0, 3.0])),
        ("head.bias", Tensor::from_slice(&[0.5f32])),
    ];
    Tensor::write_safetensors(&tensors, checkpoint.join("model.safetensors")).unwrap();
    let moments = [("exp_avg.head.bias", Tensor::from_slice(&[0.0f32]))];
    Tensor::write_safetensors(&moments, checkpoint.join("optimizer.safetensors")).unwrap();
    std::fs::write(checkpoint.join("tasks.toml"), "[[task]]\nname = \"a\"\n").unwrap();
    let state = format!("{{\"step\": 4, \"elapsed_secs\": {time}, \"best\": {{\"value\": 0.1}}}}");
    std::fs::write(checkpoint.join("trainer_state.json"), state).unwrap();
    std::fs::write(
        checkpoint.join("COMPLETE.json"),
        format!("{{\"time\": {time}}}"),
    )
    .unwrap();
    dir
}

/// The check of `file`; a panic when it was not compared.
fn check<'a>(identity: &'a RunIdentity, file: &str) -> &'a FileCheck {
    identity
        .files
        .iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("{file} not compared: {:?}", identity.files))
}

/// Rewrites `file` of run `dir` with `from` replaced by `to` (which must occur).
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    assert!(text.contains(from), "{from} not in {file}");
    std::fs::write(dir.join(file), text.replacen(from, to, 1)).unwrap();
}

#[test]
fn runs_that_differ_only_in_wall_clock_and_folder_are_identical() {
    let root = scratch("same");
    let a = run_folder(&root, "a", 0, 10.0, 1.0);
    let b = run_folder(&root, "b", 0, 99.5, 1.0);
    let identity = identical(&a, &b).unwrap();
    assert!(identity.identical, "{}", identity.markdown());
    let files: Vec<&str> = identity.files.iter().map(|f| f.file.as_str()).collect();
    // Logs, results and checkpoint files; not the plot, not the manifest or configuration.
    assert_eq!(
        files,
        [
            "checkpoint-4/model.safetensors",
            "checkpoint-4/optimizer.safetensors",
            "checkpoint-4/tasks.toml",
            "checkpoint-4/trainer_state.json",
            "final-test.json",
            "metrics.jsonl",
        ]
    );
    assert!(check(&identity, "metrics.jsonl").detail.contains("4 lines"));
    assert!(
        identity.config_differences.is_empty(),
        "{:?}",
        identity.config_differences
    );
    assert!(identity
        .markdown()
        .contains("**Outputs identical**: 6 of 6 files"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_changed_weight_log_line_or_missing_file_is_named_and_the_configuration_listed() {
    let root = scratch("differ");
    let a = run_folder(&root, "a", 0, 10.0, 1.0);
    let b = run_folder(&root, "b", 1, 10.0, 1.25);
    edit(&b, "metrics.jsonl", "\"loss\":0.5", "\"loss\":0.5000001");
    std::fs::remove_file(b.join("final-test.json")).unwrap();
    std::fs::write(b.join("eval-test-step4.json"), "{}").unwrap();
    edit(&b, "checkpoint-4/tasks.toml", "\"a\"", "\"b\"");
    let identity = identical(&a, &b).unwrap();
    assert!(!identity.identical);
    assert_eq!(identity.differing(), 5, "{}", identity.markdown());
    let model = check(&identity, "checkpoint-4/model.safetensors");
    assert!(!model.identical);
    assert!(
        model.detail.contains("1 of 2 tensors differ")
            && model.detail.contains("2.500e-1 in head.weight"),
        "{}",
        model.detail
    );
    assert_eq!(
        check(&identity, "metrics.jsonl").detail,
        "line 2: loss: 0.5 against 0.5000001"
    );
    assert_eq!(check(&identity, "final-test.json").detail, "only in a");
    assert_eq!(check(&identity, "eval-test-step4.json").detail, "only in b");
    assert!(!check(&identity, "checkpoint-4/tasks.toml").identical);
    assert!(check(&identity, "checkpoint-4/trainer_state.json").identical);
    // The seed is listed, not counted; the folder name (output.*) is not listed.
    assert_eq!(identity.config_differences, ["`train.seed`: 0 against 1"]);
    assert!(identity
        .markdown()
        .contains("**Outputs differ** in 5 of 7 files"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn json_numbers_are_compared_exactly_and_only_top_level_wall_clock_keys_are_left_out() {
    let root = scratch("json");
    let a = run_folder(&root, "a", 0, 10.0, 1.0);
    // One unit in the last place of an f64, in a file whose time fields differ anyway.
    let b = run_folder(&root, "b", 0, 20.0, 1.0);
    edit(
        &b,
        "checkpoint-4/trainer_state.json",
        "\"value\": 0.1",
        "\"value\": 0.10000000000000002",
    );
    // A task called `time` is data: its loss is compared.
    edit(&b, "metrics.jsonl", "{\"time\":0.25}", "{\"time\":0.5}");
    // A line cut short, as by a run killed while writing it, is a difference.
    let eval = "{\"step\":4,\"time\":1.0,\"mean\":0.5}\n";
    std::fs::write(a.join("eval.jsonl"), eval).unwrap();
    std::fs::write(b.join("eval.jsonl"), format!("{eval}{{\"step\":8,\"ti")).unwrap();
    std::fs::write(
        a.join("final-test-predictions.jsonl"),
        "{\"p\":1}\n{\"p\":2}\n",
    )
    .unwrap();
    std::fs::write(b.join("final-test-predictions.jsonl"), "{\"p\":1}\n").unwrap();
    let identity = identical(&a, &b).unwrap();
    assert_eq!(
        check(&identity, "checkpoint-4/trainer_state.json").detail,
        "best.value: 0.1 against 0.10000000000000002"
    );
    assert_eq!(
        check(&identity, "metrics.jsonl").detail,
        "line 1: task_losses.time: 0.25 against 0.5"
    );
    let eval = &check(&identity, "eval.jsonl").detail;
    assert!(eval.starts_with("line 2 of b does not parse"), "{eval}");
    assert_eq!(
        check(&identity, "final-test-predictions.jsonl").detail,
        "2 lines against 1"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn tensors_are_compared_by_their_bits_under_any_header() {
    let root = scratch("tensors");
    let a = run_folder(&root, "a", 0, 10.0, 1.0);
    let b = run_folder(&root, "b", 0, 10.0, 1.0);
    // The same tensors under another header: other bytes, equal tensors.
    let model = b.join("checkpoint-4/model.safetensors");
    taskmoe_model::set_metadata(&model, &[("written_by", "another build")]).unwrap();
    // NaN equals the same NaN; -0.0 is not 0.0; a tensor on one side only is named.
    let optimizer = |dir: &Path, zero: f32, extra: bool| {
        let mut tensors = vec![
            ("exp_avg.head.bias", Tensor::from_slice(&[zero])),
            ("exp_avg_sq.head.bias", Tensor::from_slice(&[f32::NAN])),
        ];
        if extra {
            tensors.push(("step", Tensor::from(4i64)));
        }
        let path = dir.join("checkpoint-4/optimizer.safetensors");
        Tensor::write_safetensors(&tensors, path).unwrap();
    };
    optimizer(&a, 0.0, false);
    optimizer(&b, -0.0, true);
    // 0-d tensors (an optimizer's step count) are compared by their bits too.
    for (dir, step) in [(&a, 4i64), (&b, 5)] {
        let path = dir.join("checkpoint-4/scalars.safetensors");
        Tensor::write_safetensors(&[("step", Tensor::from(step))], path).unwrap();
    }
    let identity = identical(&a, &b).unwrap();
    assert_eq!(
        check(&identity, "checkpoint-4/model.safetensors").detail,
        "2 tensors equal (the files' metadata differ)"
    );
    assert_eq!(
        check(&identity, "checkpoint-4/optimizer.safetensors").detail,
        "only in b: step; 1 of 2 tensors differ, the largest absolute difference 0.000e0 in \
         exp_avg.head.bias"
    );
    assert_eq!(
        check(&identity, "checkpoint-4/scalars.safetensors").detail,
        "1 of 1 tensors differ, the largest absolute difference 1.000e0 in step"
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_single_task_run_is_compared_task_by_task_and_a_non_run_is_refused() {
    let root = scratch("single");
    let (a, b) = (root.join("a"), root.join("b"));
    for (dir, weight) in [(&a, 1.0), (&b, 1.0)] {
        run_folder(dir, "task_x", 0, 10.0, weight);
        run_folder(dir, "task_y", 0, 10.0, weight);
        std::fs::write(dir.join("final-test.json"), "{\"mean\": 0.5}").unwrap();
    }
    edit(&b, "task_y/final-test.json", "0.75", "0.7");
    edit(&b, "task_y/config.toml", "seed = 0", "seed = 3");
    let identity = identical(&a, &b).unwrap();
    assert_eq!(identity.files.len(), 13, "{}", identity.markdown());
    assert!(check(&identity, "final-test.json").identical);
    assert!(check(&identity, "task_x/checkpoint-4/model.safetensors").identical);
    assert_eq!(
        check(&identity, "task_y/final-test.json").detail,
        "mean: 0.75 against 0.7"
    );
    assert_eq!(
        identity.config_differences,
        ["task_y: `train.seed`: 0 against 3"]
    );
    let err = identical(&a, &root.join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not a run folder") && err.contains("config.toml"),
        "{err}"
    );
    // Two runs with nothing written yet: nothing to compare is an error, not "identical".
    let (c, d) = (root.join("c"), root.join("d"));
    for dir in [&c, &d] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.toml"), "[train]\nseed = 0\n").unwrap();
    }
    let err = identical(&c, &d).unwrap_err().to_string();
    assert!(err.contains("holds an output to compare"), "{err}");
    std::fs::remove_dir_all(root).unwrap();
}
