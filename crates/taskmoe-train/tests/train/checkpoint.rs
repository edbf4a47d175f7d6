//! Atomic checkpoint directories: completeness, truncation, rotation, stale temporaries, and a
//! full optimizer + trainer-state round trip through a checkpoint.

use std::fs;
use std::path::Path;

use taskmoe_optim::{AdamW, AdamWConfig};
use taskmoe_train::{
    checkpoint_dir, latest_verified, list_checkpoints, resolve_checkpoint, Checkpoint,
    CheckpointWriter, TrainError, TrainerState, MANIFEST_FILE, TRAINER_STATE_FILE,
};
use tch::{Kind, Tensor};

fn write_simple(writer: &CheckpointWriter, step: u64) -> Checkpoint {
    writer
        .write(step, |files| {
            files.write_bytes("model.bin", &vec![step as u8; 100 + step as usize])?;
            files.write_json(
                TRAINER_STATE_FILE,
                &TrainerState {
                    step,
                    ..TrainerState::new(7)
                },
            )
        })
        .unwrap()
}

fn steps(run: &Path) -> Vec<u64> {
    list_checkpoints(run)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

#[test]
fn writes_a_complete_directory_with_a_manifest() {
    let run = tempfile::tempdir().unwrap();
    let writer = CheckpointWriter::new(run.path(), None).unwrap();
    let ckpt = write_simple(&writer, 10);
    assert_eq!(ckpt.dir, checkpoint_dir(run.path(), 10));
    assert_eq!(ckpt.dir.file_name().unwrap(), "checkpoint-10");
    let names: Vec<&str> = ckpt
        .manifest
        .files
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, vec!["model.bin", TRAINER_STATE_FILE]);
    assert_eq!(ckpt.manifest.files[0].size, 110);
    assert_eq!(ckpt.manifest.files[0].sha256.len(), 64);
    assert_eq!(Checkpoint::open(&ckpt.dir).unwrap(), ckpt);
    ckpt.verify_hashes().unwrap();
    let state = TrainerState::read(ckpt.file(TRAINER_STATE_FILE)).unwrap();
    assert_eq!(state.step, 10);
    // Nothing temporary is left.
    let entries: Vec<_> = fs::read_dir(run.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn the_manifest_records_the_sha256() {
    let run = tempfile::tempdir().unwrap();
    let writer = CheckpointWriter::new(run.path(), None).unwrap();
    let ckpt = writer
        .write(0, |f| f.write_bytes("abc.txt", b"abc"))
        .unwrap();
    // FIPS 180-2, appendix B.1.
    assert_eq!(
        ckpt.manifest.files[0].sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let text = fs::read_to_string(ckpt.file(MANIFEST_FILE)).unwrap();
    assert!(text.contains("\"size\": 3"), "{text}");
}

#[test]
fn the_newest_usable_checkpoint_skips_truncated_unmarked_and_altered_ones() {
    let run = tempfile::tempdir().unwrap();
    let writer = CheckpointWriter::new(run.path(), None).unwrap();
    for step in [1, 2, 3] {
        write_simple(&writer, step);
    }
    assert_eq!(newest(run.path()), 3);

    // Truncate a file of the newest: the previous one is chosen.
    let model = checkpoint_dir(run.path(), 3).join("model.bin");
    fs::OpenOptions::new()
        .write(true)
        .open(&model)
        .unwrap()
        .set_len(50)
        .unwrap();
    let err = Checkpoint::open(checkpoint_dir(run.path(), 3)).unwrap_err();
    assert!(
        err.to_string()
            .contains("model.bin has 50 bytes, the manifest records 103"),
        "{err}"
    );
    assert_eq!(newest(run.path()), 2);

    // Without its manifest, checkpoint 2 does not count either.
    fs::remove_file(checkpoint_dir(run.path(), 2).join(MANIFEST_FILE)).unwrap();
    assert_eq!(newest(run.path()), 1);

    // A manifest copied into another step's directory is refused.
    let fake = checkpoint_dir(run.path(), 9);
    fs::create_dir(&fake).unwrap();
    fs::copy(
        checkpoint_dir(run.path(), 1).join(MANIFEST_FILE),
        fake.join(MANIFEST_FILE),
    )
    .unwrap();
    assert_eq!(newest(run.path()), 1);

    // The one policy takes a run folder or a checkpoint folder.
    assert_eq!(resolve_checkpoint(run.path()).unwrap().step, 1);
    let one = checkpoint_dir(run.path(), 1);
    assert_eq!(resolve_checkpoint(&one).unwrap().step, 1);

    // Same size, other content: the size check passes, the hash check does not, so no
    // checkpoint is usable and the error names each one with its reason.
    let ckpt = Checkpoint::open(&one).unwrap();
    fs::write(ckpt.file("model.bin"), vec![0xffu8; 101]).unwrap();
    assert!(matches!(
        ckpt.verify_hashes(),
        Err(TrainError::IncompleteCheckpoint { .. })
    ));
    assert!(latest_verified(run.path()).unwrap().checkpoint.is_none());
    let err = resolve_checkpoint(run.path()).unwrap_err().to_string();
    assert!(
        err.contains("checkpoint-1: model.bin: SHA-256 differs") && err.contains("checkpoint-3"),
        "{err}"
    );
    assert!(resolve_checkpoint(&one).is_err());

    let empty = tempfile::tempdir().unwrap();
    assert!(latest_verified(empty.path()).unwrap().checkpoint.is_none());
    assert!(latest_verified(empty.path().join("absent"))
        .unwrap()
        .checkpoint
        .is_none());
    let err = resolve_checkpoint(empty.path()).unwrap_err().to_string();
    assert!(err.contains("holds no checkpoint-* folder"), "{err}");
}

/// The step of the newest usable checkpoint of `run`.
fn newest(run: &Path) -> u64 {
    latest_verified(run).unwrap().checkpoint.unwrap().step
}

#[test]
fn the_protected_best_checkpoint_counts_among_the_newest_and_survives_beyond_them() {
    let run = tempfile::tempdir().unwrap();
    let mut writer = CheckpointWriter::new(run.path(), Some(2)).unwrap();
    write_simple(&writer, 1);
    write_simple(&writer, 2);
    // The newest is the best: still only two kept.
    writer.protect(Some(3));
    write_simple(&writer, 3);
    assert_eq!(steps(run.path()), vec![2, 3]);
    // An older best stays beside the two newest.
    write_simple(&writer, 4);
    write_simple(&writer, 5);
    assert_eq!(steps(run.path()), vec![3, 4, 5]);
}

#[test]
fn keeps_the_last_n_complete_checkpoints() {
    let run = tempfile::tempdir().unwrap();
    let writer = CheckpointWriter::new(run.path(), Some(2)).unwrap();
    write_simple(&writer, 100);
    write_simple(&writer, 200);
    assert_eq!(steps(run.path()), vec![100, 200]);
    write_simple(&writer, 300);
    assert_eq!(steps(run.path()), vec![200, 300]);

    // A broken newer one does not push a good one out: 300 truncated, 400 written -> keep the
    // complete 200 and 400, delete the broken 300.
    let model = checkpoint_dir(run.path(), 300).join("model.bin");
    fs::write(&model, b"short").unwrap();
    write_simple(&writer, 400);
    assert_eq!(steps(run.path()), vec![200, 400]);

    // Ordering is numeric, not lexicographic.
    write_simple(&writer, 1000);
    assert_eq!(steps(run.path()), vec![400, 1000]);
    assert!(CheckpointWriter::new(run.path(), Some(0)).is_err());
}

#[test]
fn a_failing_callback_leaves_existing_checkpoints_and_no_temporaries() {
    let run = tempfile::tempdir().unwrap();
    let writer = CheckpointWriter::new(run.path(), Some(1)).unwrap();
    write_simple(&writer, 1);
    let err = writer
        .write(
            2,
            |files| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                files.write_bytes("model.bin", b"partial")?;
                Err("disk full".into())
            },
        )
        .unwrap_err();
    assert!(matches!(err, TrainError::WriteCallback { .. }));
    assert!(err.to_string().contains("disk full"));
    assert_eq!(steps(run.path()), vec![1]);
    assert_eq!(fs::read_dir(run.path()).unwrap().count(), 1);

    // Reserved and nested names are refused.
    assert!(writer
        .write(3, |f| f.write_bytes(MANIFEST_FILE, b"{}"))
        .is_err());
    assert!(writer
        .write(3, |f| f.write_bytes("sub/model.bin", b"x"))
        .is_err());
    assert!(writer
        .write(3, |f| fs::create_dir(f.dir().join("nested")))
        .is_err());
    assert_eq!(steps(run.path()), vec![1]);
}

#[test]
fn stale_temporaries_are_cleaned_and_a_step_can_be_rewritten() {
    let run = tempfile::tempdir().unwrap();
    // A pid above any pid_max: its writer is gone.
    let stale = run.path().join(".tmp-checkpoint-5-2147483000");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("model.bin"), b"half").unwrap();
    // pid 1 is alive: another live process's temporary folder is left alone.
    let live = run.path().join(".tmp-checkpoint-7-1");
    fs::create_dir(&live).unwrap();
    let writer = CheckpointWriter::new(run.path(), None).unwrap();
    assert!(!stale.exists());
    assert!(live.exists(), "a live process's temporary folder is kept");
    fs::remove_dir(&live).unwrap();

    write_simple(&writer, 5);
    let again = writer
        .write(5, |files| files.write_bytes("model.bin", b"new"))
        .unwrap();
    assert_eq!(again.manifest.files.len(), 1);
    assert_eq!(fs::read(again.file("model.bin")).unwrap(), b"new");
    assert_eq!(fs::read_dir(run.path()).unwrap().count(), 1);
}

#[test]
fn optimizer_and_trainer_state_round_trip_through_a_checkpoint() {
    let w = Tensor::from_slice(&[1.0f32, -2.0, 0.5]).set_requires_grad(true);
    let mut opt = AdamW::new(
        vec![("w".into(), w.shallow_clone())],
        AdamWConfig::default(),
    )
    .unwrap();
    for _ in 0..2 {
        opt.zero_grad();
        (&w * &w).sum(Kind::Float).backward();
        opt.step(0.1).unwrap();
    }
    let mut state = TrainerState::new(42);
    state.step = opt.num_steps();
    state
        .update_best("validation/accuracy", 0.75, true)
        .unwrap();

    let run = tempfile::tempdir().unwrap();
    let writer = CheckpointWriter::new(run.path(), Some(3)).unwrap();
    writer
        .write(state.step, |files| -> taskmoe_train::Result<()> {
            Tensor::write_safetensors(&[("w", w.detach())], files.path("model.safetensors")?)?;
            opt.save(files.path("optimizer.safetensors")?)?;
            files.write_json(TRAINER_STATE_FILE, &state)
        })
        .unwrap();

    let ckpt = resolve_checkpoint(run.path()).unwrap();
    assert!(ckpt.has_file("model.safetensors") && ckpt.has_file("optimizer.safetensors"));
    let restored = TrainerState::read(ckpt.file(TRAINER_STATE_FILE)).unwrap();
    assert_eq!(restored, state);
    let w2 = Tensor::from_slice(&[0.0f32; 3]).set_requires_grad(true);
    let mut opt2 = AdamW::new(
        vec![("w".into(), w2.shallow_clone())],
        AdamWConfig::default(),
    )
    .unwrap();
    opt2.load(ckpt.file("optimizer.safetensors")).unwrap();
    assert_eq!(opt2.num_steps(), 2);
    let (m1, v1, t1) = opt.state("w").unwrap();
    let (m2, v2, t2) = opt2.state("w").unwrap();
    assert!(m1.equal(m2) && v1.equal(v2) && t1 == t2);
}
