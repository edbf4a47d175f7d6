//! `taskmoe compare --identical`: two run folders compared file by file. The folders are
//! written here by hand (a configuration, logs, results, a checkpoint of safetensors), so each
//! kind of difference is made on purpose and nothing is trained.

use std::path::{Path, PathBuf};

use taskmoe_experiments::identical::identical;
use tch::Tensor;

/// A run folder `name` under `root`: a configuration, a metrics log with wall-clock fields,
/// a final result, and `checkpoint-4` with a model of two tensors and a trainer state.
fn run_folder(root: &Path, name: &str, seed: u64, time: f64, weight: f32) -> PathBuf {
    let dir = root.join(name);
    let checkpoint = dir.join("checkpoint-4");
    std::fs::create_dir_all(&checkpoint).unwrap();
    let config = format!(
        "# saved in: {}\n[train]\nseed = {seed}\n\n[output]\nname = \"{name}\"\n",
        dir.display()
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let metrics: String = (1..=4)
        .map(|step| {
            format!(
                "{{\"step\":{step},\"time\":{},\"elapsed_s\":{time},\"loss\":{}}}\n",
                time + step as f64,
                1.0 / step as f64
            )
        })
        .collect();
    std::fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    std::fs::write(
        dir.join("final-test.json"),
        "{\"mean\": 0.75, \"tasks\": {\"a\": 0.75}}",
    )
    .unwrap();
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
    let state = format!("{{\"step\": 4, \"elapsed_secs\": {time}}}");
    std::fs::write(checkpoint.join("trainer_state.json"), state).unwrap();
    std::fs::write(
        checkpoint.join("COMPLETE.json"),
        format!("{{\"time\": {time}}}"),
    )
    .unwrap();
    dir
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskmoe-identical-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check<'a>(
    identity: &'a taskmoe_experiments::identical::RunIdentity,
    file: &str,
) -> &'a taskmoe_experiments::identical::FileCheck {
    identity
        .files
        .iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("{file} not compared: {:?}", identity.files))
}

#[test]
fn runs_that_differ_only_in_wall_clock_and_folder_are_identical() {
    let root = scratch("same");
    let a = run_folder(&root, "a", 0, 10.0, 1.0);
    let b = run_folder(&root, "b", 0, 99.5, 1.0);
    let identity = identical(&a, &b).unwrap();
    assert!(identity.identical(), "{}", identity.markdown());
    let files: Vec<&str> = identity.files.iter().map(|f| f.file.as_str()).collect();
    // Logs, results and checkpoint files; not the plot, not the manifest or configuration.
    assert_eq!(
        files,
        [
            "checkpoint-4/model.safetensors",
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
        .contains("**Outputs identical**: 4 of 4 files"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_changed_weight_log_line_or_missing_file_is_named_and_the_configuration_listed() {
    let root = scratch("differ");
    let a = run_folder(&root, "a", 0, 10.0, 1.0);
    let b = run_folder(&root, "b", 1, 10.0, 1.25);
    let metrics = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    std::fs::write(
        b.join("metrics.jsonl"),
        metrics.replace("\"loss\":0.5", "\"loss\":0.5000001"),
    )
    .unwrap();
    std::fs::remove_file(b.join("final-test.json")).unwrap();
    std::fs::write(b.join("eval-test-step4.json"), "{}").unwrap();
    let identity = identical(&a, &b).unwrap();
    assert!(!identity.identical());
    assert_eq!(identity.differing(), 4, "{}", identity.markdown());
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
    assert!(check(&identity, "checkpoint-4/trainer_state.json").identical);
    // The seed is listed, not counted; the folder name (output.*) is not listed.
    assert_eq!(identity.config_differences, ["`train.seed`: 0 against 1"]);
    assert!(identity
        .markdown()
        .contains("**Outputs differ** in 4 of 5 files"));
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn tensors_equal_in_files_whose_metadata_differ_are_identical_and_a_non_run_is_refused() {
    let root = scratch("meta");
    let a = run_folder(&root, "a", 0, 10.0, 1.0);
    let b = run_folder(&root, "b", 0, 10.0, 1.0);
    // The same tensors under another header: other bytes, equal tensors.
    let model = b.join("checkpoint-4/model.safetensors");
    taskmoe_model::set_metadata(&model, &[("written_by", "another build")]).unwrap();
    let identity = identical(&a, &b).unwrap();
    let check = check(&identity, "checkpoint-4/model.safetensors");
    assert!(check.identical, "{}", check.detail);
    assert_eq!(check.detail, "2 tensors equal (the files' metadata differ)");
    let err = identical(&a, &root).unwrap_err().to_string();
    assert!(
        err.contains("is not a run folder") && err.contains("config.toml"),
        "{err}"
    );
    std::fs::remove_dir_all(root).unwrap();
}
