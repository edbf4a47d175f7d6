//! The sampler: batches are a pure function of (seed, step); resume reproduces them; tensors.

use taskmoe_data::synthetic::{SyntheticBenchmark, SyntheticConfig, PAD_ID};
use taskmoe_data::{
    eval_batches, Batch, EncodedExample, Label, Mixture, MixtureSpec, MixtureTask, Sampler,
    SamplerConfig, SamplerState, TaskData, IGNORE_INDEX,
};
use tch::{Device, Kind};

/// A small benchmark and a sampler over its seen tasks' training splits.
fn sampler(seed: u64, spec: &MixtureSpec) -> Sampler {
    let config = SyntheticConfig {
        high_resource_examples: 300,
        low_resource_examples: 30,
        unseen_train_examples: 50,
        eval_examples: 20,
        ..SyntheticConfig::default()
    };
    let bench = SyntheticBenchmark::generate(&config).unwrap();
    bench.train_sampler(spec, 16, seed).unwrap()
}

fn proportional() -> MixtureSpec {
    MixtureSpec::ExamplesProportional {
        cap: Some(200.0),
        temperature: 1.0,
        scale: 1.0,
    }
}

#[test]
fn resuming_at_step_n_reproduces_the_batches() {
    let first_run = sampler(11, &proportional());
    let run: Vec<Batch> = first_run.iter_from(0).take(40).map(|(_, b)| b).collect();
    let saved = first_run.state(25);
    let json = serde_json::to_string(&saved).unwrap();

    // A new process: rebuild everything from the config, load the state, continue.
    let restarted = sampler(11, &proportional());
    let state: SamplerState = serde_json::from_str(&json).unwrap();
    let step = restarted.resume(&state).unwrap();
    assert_eq!(step, 25);
    let resumed: Vec<Batch> = restarted.iter_from(step).take(15).map(|(_, b)| b).collect();
    assert_eq!(resumed, run[25..]);
}

#[test]
fn a_batch_does_not_depend_on_what_was_drawn_before() {
    let s = sampler(3, &proportional());
    let late_first = s.batch(1000);
    for step in 0..50 {
        s.batch(step);
    }
    assert_eq!(s.batch(1000), late_first);
    assert_ne!(s.batch(1000), s.batch(1001));
    assert_ne!(s.batch(1000), sampler(4, &proportional()).batch(1000));
}

#[test]
fn resume_refuses_another_seed_or_mixture() {
    let s = sampler(5, &proportional());
    let state = s.state(7);
    assert!(sampler(6, &proportional()).resume(&state).is_err());
    assert!(sampler(5, &MixtureSpec::Uniform {}).resume(&state).is_err());
    assert_eq!(sampler(5, &proportional()).resume(&state).unwrap(), 7);
}

#[test]
fn task_frequencies_follow_the_mixture() {
    let s = sampler(1, &proportional());
    let mixture = s.mixture().clone();
    let mut counts = vec![0usize; mixture.tasks().len()];
    let steps = 500;
    for step in 0..steps {
        for &t in &s.batch(step).task_ids {
            let i = mixture
                .tasks()
                .iter()
                .position(|m| m.task_id as i64 == t)
                .unwrap();
            counts[i] += 1;
        }
    }
    let n = (steps as usize * s.config().batch_size) as f64;
    for (i, p) in mixture.probabilities().iter().enumerate() {
        let freq = counts[i] as f64 / n;
        let sd = (p * (1.0 - p) / n).sqrt();
        assert!(
            (freq - p).abs() < 5.0 * sd,
            "task {i}: frequency {freq}, probability {p}"
        );
    }
}

#[test]
fn batches_are_padded_and_masked() {
    let s = sampler(2, &proportional());
    let b = s.batch(0);
    let (bsz, len) = (b.len(), b.seq_len);
    assert_eq!(bsz, 16);
    assert_eq!(b.input_ids.len(), bsz * len);
    for row in 0..bsz {
        let ids = &b.input_ids[row * len..(row + 1) * len];
        let mask = &b.attention_mask[row * len..(row + 1) * len];
        let real = mask.iter().filter(|&&m| m == 1).count();
        assert!(mask[..real].iter().all(|&m| m == 1), "mask is a prefix");
        assert!(ids[real..].iter().all(|&i| i == PAD_ID));
        assert_eq!(ids[0], 2, "starts with [CLS]");
        assert_eq!(ids[real - 1], 3, "ends with [SEP]");
    }
}

fn example(id: u64, len: usize, label: Label) -> EncodedExample {
    EncodedExample {
        id,
        input_ids: (0..len as i64).map(|i| 10 + i).collect(),
        token_type_ids: vec![0; len],
        label,
        source_id: None,
    }
}

#[test]
fn tensors_carry_ids_mask_tasks_and_both_label_kinds() {
    let cls = example(4, 3, Label::Class(1));
    let reg = example(9, 5, Label::Value(2.5));
    let b = Batch::from_examples([(0, &cls), (7, &reg)], 6, 0).unwrap();
    let t = b.to_tensors(Device::Cpu).unwrap();
    assert_eq!(t.input_ids.size(), [2, 6]);
    assert_eq!(t.input_ids.kind(), Kind::Int64);
    assert_eq!(t.attention_mask.kind(), Kind::Int64);
    assert_eq!(
        Vec::<i64>::try_from(t.input_ids.flatten(0, -1)).unwrap(),
        [10, 11, 12, 0, 0, 0, 10, 11, 12, 13, 14, 0]
    );
    assert_eq!(
        Vec::<i64>::try_from(t.attention_mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap(),
        [3, 5]
    );
    assert_eq!(Vec::<i64>::try_from(&t.task_ids).unwrap(), [0, 7]);
    assert_eq!(
        Vec::<i64>::try_from(&t.class_labels).unwrap(),
        [1, IGNORE_INDEX]
    );
    assert_eq!(t.regression_targets.kind(), Kind::Float);
    assert_eq!(
        Vec::<f32>::try_from(&t.regression_targets).unwrap(),
        [0.0, 2.5]
    );
    assert_eq!(
        Vec::<bool>::try_from(&t.regression_mask).unwrap(),
        [false, true]
    );
    assert_eq!(Vec::<i64>::try_from(&t.example_ids).unwrap(), [4, 9]);

    // Too long for the batch: truncation is the tokenizer's job.
    assert!(Batch::from_examples([(0, &reg)], 4, 0).is_err());
}

#[test]
fn eval_batches_cover_every_example_once_in_order() {
    let data = TaskData {
        task_id: 3,
        examples: (0..10).map(|i| example(i, 4, Label::Class(0))).collect(),
    };
    let batches: Vec<Batch> = eval_batches(&data, 4, 8, 0)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        batches.iter().map(Batch::len).collect::<Vec<_>>(),
        [4, 4, 2]
    );
    let ids: Vec<u64> = batches.iter().flat_map(|b| b.example_ids.clone()).collect();
    assert_eq!(ids, (0..10).collect::<Vec<u64>>());
    assert!(batches.iter().all(|b| b.task_ids.iter().all(|&t| t == 3)));
}

#[test]
fn sampler_refuses_data_that_does_not_match_the_mixture() {
    let data = vec![TaskData {
        task_id: 0,
        examples: vec![
            example(0, 4, Label::Class(0)),
            example(1, 9, Label::Class(1)),
        ],
    }];
    let task = |n| {
        vec![MixtureTask {
            name: "a".into(),
            task_id: 0,
            num_examples: n,
        }]
    };
    let config = SamplerConfig {
        batch_size: 2,
        seq_len: 8,
        pad_id: 0,
        seed: 0,
    };
    let uniform = MixtureSpec::Uniform {};
    // Wrong count, then an example longer than seq_len.
    assert!(Sampler::new(
        Mixture::new(&uniform, task(3)).unwrap(),
        data.clone(),
        config
    )
    .is_err());
    let err = Sampler::new(
        Mixture::new(&uniform, task(2)).unwrap(),
        data.clone(),
        config,
    )
    .unwrap_err();
    assert!(err.to_string().contains("more than seq_len"), "{err}");
    let fits = SamplerConfig {
        seq_len: 9,
        ..config
    };
    assert!(Sampler::new(Mixture::new(&uniform, task(2)).unwrap(), data, fits).is_ok());
}

#[test]
fn shards_concatenate_to_the_single_process_batch() {
    let s = sampler(5, &proportional());
    for step in [0, 7, 123] {
        let whole = s.batch(step);
        for world in [1, 2, 4] {
            let mut task_ids = Vec::new();
            let mut input_ids = Vec::new();
            let mut example_ids = Vec::new();
            for rank in 0..world {
                let shard = s.shard(step, rank, world).unwrap();
                assert_eq!(shard.len(), 16 / world);
                task_ids.extend(shard.task_ids);
                input_ids.extend(shard.input_ids);
                example_ids.extend(shard.example_ids);
            }
            assert_eq!(task_ids, whole.task_ids, "step {step}, world {world}");
            assert_eq!(input_ids, whole.input_ids);
            assert_eq!(example_ids, whole.example_ids);
        }
    }
    let err = s.shard(0, 0, 3).unwrap_err().to_string();
    assert!(err.contains("rank 0 of 3") && err.contains("16"), "{err}");
    assert!(s.shard(0, 2, 2).is_err());
}
