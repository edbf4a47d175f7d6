//! `model.frozen_layers` and its memo of states: the configuration rules, which parameters are
//! frozen, a memo that answers exactly what the frozen blocks compute, its file round trip
//! and its key.

use tch::{nn, Device, Kind, Tensor};

use taskmoe_model::{
    frozen_prefix_key, per_example_loss, FrozenStates, HeadSpec, ModelConfig, ModelInput,
    MultiTaskModel, TaskEmbedding, Variant,
};

/// The tiny preset with a dense block 0 (frozen) under a MoE block 1, with dropout, so a
/// frozen block that ran with dropout in training would show.
fn config() -> ModelConfig {
    let mut cfg = ModelConfig::preset("tiny")
        .unwrap()
        .with_variant(Variant::TaskMoe);
    cfg.moe_every = 2;
    cfg.frozen_layers = 1;
    cfg.dropout = 0.1;
    cfg
}

fn heads() -> Vec<HeadSpec> {
    ["a", "b"]
        .iter()
        .map(|n| HeadSpec::classification(n.to_string(), 3))
        .collect()
}

fn build(cfg: &ModelConfig) -> (nn::VarStore, MultiTaskModel) {
    crate::seeded_model(cfg, &heads(), 7)
}

/// Right-padded batch of 4: lengths 5, 3, 6, 2 of 6 positions; tasks 0, 1, 0, 1.
fn batch(offset: i64) -> crate::Batch {
    let lengths = [5i64, 3, 6, 2];
    let ids = (Tensor::arange(24, (Kind::Int64, Device::Cpu)) * 7 + offset)
        .remainder(60)
        .view([4, 6])
        + 2;
    let mask = Tensor::from_slice(
        &lengths
            .iter()
            .flat_map(|&n| (0..6).map(move |j| i64::from(j < n)))
            .collect::<Vec<_>>(),
    )
    .view([4, 6]);
    crate::Batch {
        ids: &ids * &mask,
        mask,
        tasks: Tensor::from_slice(&[0i64, 1, 0, 1]),
    }
}

fn memo_for(vs: &nn::VarStore, cfg: &ModelConfig) -> FrozenStates {
    FrozenStates::new(&frozen_prefix_key(vs, cfg).unwrap(), cfg.d_model)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// `cfg` as the task-conditioned dense control: dense, with an added task embedding (which
/// enters above the frozen bottom).
fn added(cfg: ModelConfig) -> ModelConfig {
    let mut cfg = cfg.with_variant(Variant::Dense);
    cfg.task_embedding = TaskEmbedding::Added;
    cfg
}

/// The memo's states of each example of `b`, one `[1, len, d]` tensor per example (by
/// [`taskmoe_model::example_key`] of its real tokens).
fn memo_rows(memo: &FrozenStates, b: &crate::Batch) -> Vec<Tensor> {
    let lengths: Vec<i64> = Vec::try_from(&b.mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
    let ids: Vec<i64> = Vec::try_from(&b.ids.reshape([-1])).unwrap();
    let l = b.ids.size()[1] as usize;
    lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let row = &ids[i * l..i * l + n as usize];
            let key = taskmoe_model::example_key(row, &vec![0; row.len()]);
            memo.batch(&[key], &[n], n).expect("the memo holds it")
        })
        .collect()
}

#[test]
fn frozen_blocks_must_exist_be_dense_and_see_no_task() {
    let mut cfg = config();
    cfg.frozen_layers = 3;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("model.frozen_layers") && err.contains("num_layers = 2"),
        "{err}"
    );
    cfg.frozen_layers = 2;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("block 1 is a MoE block"), "{err}");
    assert!(!err.contains("  "), "one line, no run of spaces: {err}");
    // A task token would pass through the frozen blocks; an added task vector enters above.
    let mut cfg = config();
    cfg.task_embedding = TaskEmbedding::Prefix;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("model.task_embedding") && err.contains("model.frozen_layers"),
        "{err}"
    );
    cfg.task_embedding = TaskEmbedding::Added;
    cfg.validate().unwrap();
    cfg.frozen_layers = 0;
    cfg.task_embedding = TaskEmbedding::Prefix;
    cfg.validate().unwrap();
    // A dense model may freeze every block (only the heads train).
    let mut cfg = config().with_variant(Variant::Dense);
    cfg.frozen_layers = 2;
    cfg.validate().unwrap();
}

#[test]
fn the_frozen_parameters_are_the_embeddings_and_the_blocks_below() {
    let cfg = added(config());
    let (vs, _model) = build(&cfg);
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(names.iter().any(|n| n == "task_embeddings.weight"));
    for name in &names {
        let bottom = name.starts_with("embeddings.") || name.starts_with("encoder.layer.0.");
        assert_eq!(cfg.is_frozen_param(name), bottom, "{name}");
    }
    assert!(names.iter().any(|n| cfg.is_frozen_param(n)));
    let mut none = cfg.clone();
    none.frozen_layers = 0;
    assert!(!names.iter().any(|n| none.is_frozen_param(n)));
}

#[test]
fn a_memo_answers_what_the_frozen_blocks_compute() {
    crate::threads();
    let cfg = config();
    let (vs, mut plain) = build(&cfg);
    let (_vs2, mut cached) = build(&cfg);
    cached.attach_frozen_states(memo_for(&vs, &cfg)).unwrap();
    let b = batch(0);
    let want = tch::no_grad(|| plain.forward(&b.input(), false)).unwrap();
    // First pass computes and stores the 4 examples; the second reads them.
    let first = tch::no_grad(|| cached.forward(&b.input(), false)).unwrap();
    assert_eq!(cached.frozen_states().unwrap().len(), 4);
    let second = tch::no_grad(|| cached.forward(&b.input(), false)).unwrap();
    assert_eq!(cached.frozen_states().unwrap().len(), 4);
    assert!(max_diff(&want.logits, &first.logits) < 1e-6);
    assert!(
        max_diff(&want.logits, &second.logits) < 1e-5,
        "{}",
        max_diff(&want.logits, &second.logits)
    );
    // The same examples padded to another length read the same states.
    let wider = Tensor::cat(&[&b.ids, &b.ids.zeros_like().narrow(1, 0, 3)], 1);
    let wider_mask = Tensor::cat(&[&b.mask, &b.mask.zeros_like().narrow(1, 0, 3)], 1);
    let input = ModelInput {
        input_ids: &wider,
        attention_mask: &wider_mask,
        token_type_ids: None,
        task_ids: &b.tasks,
    };
    let padded = tch::no_grad(|| cached.forward(&input, false)).unwrap();
    assert_eq!(cached.frozen_states().unwrap().len(), 4);
    assert!(max_diff(&want.logits, &padded.logits) < 1e-5);
    // A model without frozen blocks refuses a memo.
    let mut free = cfg.clone();
    free.frozen_layers = 0;
    let (_vs3, mut free) = build(&free);
    assert!(free.attach_frozen_states(memo_for(&vs, &cfg)).is_err());
    plain.attach_frozen_states(memo_for(&vs, &cfg)).unwrap();
}

#[test]
fn training_mode_runs_the_frozen_blocks_without_dropout_or_gradient() {
    crate::threads();
    let cfg = config();
    let (vs, model) = build(&cfg);
    let b = batch(3);
    // Dropout 0.1 everywhere: two training passes differ above the frozen blocks only, so the
    // states entering block 1 must be those of evaluation. With every block frozen (dense),
    // training logits equal evaluation logits but for the heads' dropout, which a linear head
    // without dropout removes.
    let mut all = cfg.with_variant(Variant::Dense);
    all.frozen_layers = 2;
    all.head = taskmoe_model::HeadStyle::Linear;
    all.dropout = 0.0;
    all.attention_dropout = 0.0;
    let (_vs_all, frozen_all) = build(&all);
    let mut with_dropout = all.clone();
    with_dropout.dropout = 0.5;
    with_dropout.attention_dropout = 0.5;
    let (_vs_d, frozen_dropout) = build(&with_dropout);
    let eval = tch::no_grad(|| frozen_all.forward(&b.input(), false)).unwrap();
    let _rng = taskmoe_device::lock_global_rng();
    let train = frozen_dropout.forward(&b.input(), true).unwrap();
    // Head dropout (0.5) still applies in training: compare the pooled vectors instead.
    assert!(max_diff(&eval.pooled, &train.pooled) < 1e-6);
    drop(_rng);
    // Gradient reaches every parameter above the frozen blocks and none below.
    let out = model.forward(&b.input(), true).unwrap();
    let labels = Tensor::from_slice(&[0i64, 1, 2, 0]);
    let no_regression = Tensor::zeros([4], (Kind::Float, Device::Cpu));
    let loss = per_example_loss(
        &out.logits,
        &labels,
        &no_regression,
        &no_regression.to_kind(Kind::Bool),
    )
    .mean(Kind::Float);
    loss.backward();
    for (name, t) in vs.variables() {
        let g = t.grad();
        let moved = g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0;
        if cfg.is_frozen_param(&name) {
            assert!(!moved, "{name} got a gradient");
        } else if name.contains("heads.") || name.contains("encoder.layer.1.attention") {
            assert!(moved, "{name} got no gradient");
        }
    }
}

#[test]
fn a_memo_file_round_trips_and_a_bad_one_is_named() {
    crate::threads();
    let cfg = config();
    let (vs, mut model) = build(&cfg);
    model.attach_frozen_states(memo_for(&vs, &cfg)).unwrap();
    let (b0, b1) = (batch(0), batch(11));
    assert_eq!(
        model.fill_frozen_states(&[b0.input(), b1.input()]).unwrap(),
        8
    );
    assert_eq!(model.fill_frozen_states(&[b0.input()]).unwrap(), 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("states.safetensors");
    model.frozen_states().unwrap().save(&path).unwrap();
    let (_vs2, mut reread) = build(&cfg);
    let memo = memo_for(&vs, &cfg);
    assert_eq!(memo.load(&path, Kind::Float, Device::Cpu).unwrap(), 8);
    reread.attach_frozen_states(memo).unwrap();
    let a = tch::no_grad(|| model.forward(&b1.input(), false)).unwrap();
    let b = tch::no_grad(|| reread.forward(&b1.input(), false)).unwrap();
    assert_eq!(
        reread.frozen_states().unwrap().len(),
        8,
        "read, not recomputed"
    );
    assert_eq!(max_diff(&a.logits, &b.logits), 0.0);
    // Another hidden size does not fit the file; the error names it.
    let other = FrozenStates::new("x", 64);
    let err = other
        .load(&path, Kind::Float, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("states.safetensors"), "{err}");
    assert!(other.is_empty());
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let err = memo_for(&vs, &cfg)
        .load(&path, Kind::Float, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("frozen-state cache"), "{err}");
}

#[test]
fn the_key_follows_the_frozen_weights_only() {
    let cfg = config();
    let (vs, _model) = build(&cfg);
    let key = frozen_prefix_key(&vs, &cfg).unwrap();
    let (vs_same, _m) = build(&cfg);
    assert_eq!(frozen_prefix_key(&vs_same, &cfg).unwrap(), key);
    let vars = vs.variables();
    tch::no_grad(|| {
        let _ = vars["heads.0.out.weight"].shallow_clone().fill_(0.5);
    });
    assert_eq!(
        frozen_prefix_key(&vs, &cfg).unwrap(),
        key,
        "heads are not frozen"
    );
    tch::no_grad(|| {
        let _ = vars["encoder.layer.0.output.dense.weight"]
            .shallow_clone()
            .fill_(0.5);
    });
    assert_ne!(frozen_prefix_key(&vs, &cfg).unwrap(), key);
    let mut none = cfg.clone();
    none.frozen_layers = 0;
    assert!(frozen_prefix_key(&vs, &none).is_none());
}

#[test]
fn examples_not_padded_at_the_end_are_computed_not_stored() {
    crate::threads();
    let cfg = config();
    let (vs, mut model) = build(&cfg);
    model.attach_frozen_states(memo_for(&vs, &cfg)).unwrap();
    let b = batch(5);
    let left = b.mask.flip([1]);
    let ids = &b.ids.flip([1]);
    let input = ModelInput {
        input_ids: ids,
        attention_mask: &left,
        token_type_ids: None,
        task_ids: &b.tasks,
    };
    tch::no_grad(|| model.forward(&input, false)).unwrap();
    assert!(model.frozen_states().unwrap().is_empty());
}

#[test]
fn the_parameter_report_leaves_the_frozen_bottom_out_of_what_trains() {
    report_counts_what_trains(config());
    // An added task embedding enters above the frozen bottom and trains.
    report_counts_what_trains(added(config()));
}

fn report_counts_what_trains(cfg: ModelConfig) {
    let (vs, _model) = build(&cfg);
    let count = |keep: &dyn Fn(&str) -> bool| -> u64 {
        vs.variables()
            .iter()
            .filter(|(n, t)| t.requires_grad() && keep(n))
            .map(|(_, t)| t.numel() as u64)
            .sum()
    };
    let report = taskmoe_model::param_report(&cfg, &heads(), 6);
    assert_eq!(
        report.trainable,
        count(&|n| !cfg.is_frozen_param(n)),
        "{report}"
    );
    assert_eq!(
        report.clone().with_frozen_pretrained().trainable,
        count(&|n| !cfg.is_frozen_param(n) && !taskmoe_model::is_pretrained_param(n)),
        "{report}"
    );
    let mut free = cfg.clone();
    free.frozen_layers = 0;
    let whole = taskmoe_model::param_report(&free, &heads(), 6);
    assert_eq!(whole.total, report.total);
    assert_eq!(whole.flops_per_token, report.flops_per_token);
    assert_eq!(whole.trained_flops_per_token, whole.flops_per_token);
    assert!(report.trained_flops_per_token < report.flops_per_token);
    assert!(format!("{report}").contains("above frozen"));
}

#[test]
fn an_added_task_embedding_above_a_frozen_bottom_reads_the_same_memo() {
    crate::threads();
    // One frozen block under a trained one, and every block frozen (only the final norm and
    // the heads run above: the task vector is added to the final states before pooling).
    for frozen_layers in [1, 2] {
        let mut cfg = added(config());
        cfg.frozen_layers = frozen_layers;
        let (vs, plain) = build(&cfg);
        let (_vs2, mut cached) = build(&cfg);
        cached.attach_frozen_states(memo_for(&vs, &cfg)).unwrap();
        let b = batch(0);
        let want = tch::no_grad(|| plain.forward(&b.input(), false)).unwrap();
        let first = tch::no_grad(|| cached.forward(&b.input(), false)).unwrap();
        let second = tch::no_grad(|| cached.forward(&b.input(), false)).unwrap();
        assert_eq!(cached.frozen_states().unwrap().len(), 4);
        for (pass, out) in [("first", &first), ("second", &second)] {
            let diff = max_diff(&want.logits, &out.logits);
            assert!(
                diff < 1e-5,
                "frozen_layers {frozen_layers}, {pass} pass: {diff}"
            );
        }
        // The same texts under the other tasks: no new entry, and each entry is what the
        // other tasks' pass stored in a fresh memo (the key and the states see no task).
        let flipped = crate::Batch {
            tasks: Tensor::from_slice(&[1i64, 0, 1, 0]),
            ..batch(0)
        };
        let (_vs3, mut other) = build(&cfg);
        other.attach_frozen_states(memo_for(&vs, &cfg)).unwrap();
        let out = tch::no_grad(|| other.forward(&flipped.input(), false)).unwrap();
        tch::no_grad(|| cached.forward(&flipped.input(), false)).unwrap();
        assert_eq!(cached.frozen_states().unwrap().len(), 4);
        assert_eq!(other.frozen_states().unwrap().len(), 4);
        let a = memo_rows(cached.frozen_states().unwrap(), &b);
        let c = memo_rows(other.frozen_states().unwrap(), &flipped);
        for (i, (a, c)) in a.iter().zip(&c).enumerate() {
            assert_eq!(max_diff(a, c), 0.0, "example {i}");
        }
        // The task does reach the model: other tasks, other logits (and other hidden states).
        assert!(max_diff(&out.hidden, &want.hidden) > 1e-4);
    }
}

#[test]
fn an_added_task_embedding_above_a_frozen_bottom_trains_and_tells_tasks_apart() {
    crate::threads();
    let three: Vec<HeadSpec> = ["a", "b", "c"]
        .iter()
        .map(|n| HeadSpec::classification(n.to_string(), 3))
        .collect();
    for frozen_layers in [1, 2] {
        let mut cfg = added(config());
        cfg.frozen_layers = frozen_layers;
        assert!(!cfg.is_frozen_param("task_embeddings.weight"));
        let (vs, mut model) = crate::seeded_model(&cfg, &three, 7);
        model.attach_frozen_states(memo_for(&vs, &cfg)).unwrap();
        // One text twice, under tasks 0 and 2; task 1 is not in the batch.
        let ids = Tensor::from_slice(&[5i64, 9, 14, 3, 0, 5, 9, 14, 3, 0]).view([2, 5]);
        let mask = ids.ne(0).to_kind(Kind::Int64);
        let tasks = Tensor::from_slice(&[0i64, 2]);
        let input = ModelInput {
            input_ids: &ids,
            attention_mask: &mask,
            token_type_ids: None,
            task_ids: &tasks,
        };
        // The first pass fills the memo, the second reads it: the gradient flows in both.
        for pass in ["computed", "memoised"] {
            vs.variables().values().for_each(|t| {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            });
            let out = model.forward(&input, false).unwrap();
            let hidden = out.hidden.narrow(1, 0, 4);
            let diff = max_diff(&hidden.get(0), &hidden.get(1));
            assert!(
                diff > 1e-4,
                "{frozen_layers} {pass}: same text, other task: {diff}"
            );
            // (A sum of the pooled vectors would not do: under the final LayerNorm it is a
            // constant.)
            let labels = Tensor::from_slice(&[0i64, 1]);
            let no_regression = Tensor::zeros([2], (Kind::Float, Device::Cpu));
            let mask = no_regression.to_kind(Kind::Bool);
            per_example_loss(&out.logits, &labels, &no_regression, &mask)
                .mean(Kind::Float)
                .backward();
            for (name, t) in vs.variables() {
                let g = t.grad();
                let moved = g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0;
                if cfg.is_frozen_param(&name) {
                    assert!(!moved, "{pass}: frozen {name} got a gradient");
                }
            }
            let g = vs.variables()["task_embeddings.weight"].grad();
            let rows: Vec<f64> = (0..3)
                .map(|t| g.get(t).abs().sum(Kind::Float).double_value(&[]))
                .collect();
            assert!(rows[0] > 0.0 && rows[2] > 0.0, "{pass}: {rows:?}");
            assert_eq!(rows[1], 0.0, "{pass}: task 1 is not in the batch");
        }
        assert_eq!(model.frozen_states().unwrap().len(), 1, "one text");
    }
}

#[test]
fn an_export_refuses_a_task_vector_added_above_a_frozen_bottom() {
    let cfg = added(config());
    let (vs, model) = build(&cfg);
    let err = taskmoe_model::hf_export(&model, &vs, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.task_embedding") && err.contains("model.frozen_layers"),
        "{err}"
    );
}
