//! Length-bucketed evaluation (split sorted by length, each batch padded to its longest
//! example) gives the results of evaluation in split order padded to the run's length:
//! the same predictions in the same order, probabilities and metrics to fp32 rounding, and
//! the same routing counts.

use taskmoe_eval::{evaluate_with, EvalBatching, EvalData, EvalResult};
use taskmoe_train::{RunConfig, RunData, Trainer};

/// A fresh (untrained) per-task MoE over two classification tasks and one regression task
/// with sentence lengths from 2 to 12 words; sentence pairs included.
const RUN: &str = r#"
[model]
variant = "task-moe"
vocab_size = 48
max_position = 32
d_model = 16
num_layers = 2
num_heads = 2
d_ff = 32
moe_every = 1

[model.moe]
d_ff = 32

[model.moe.router]
kind = "per-task"
num_experts = 4

[data]
batch_size = 8

[data.synthetic]
vocab_size = 32
word_classes = 4
min_words = 2
max_words = 12
high_resource_examples = 50
eval_examples = 90
extra_tasks = []

[[data.synthetic.families]]
name = "lexicon"
skill = "lexicon"
high_resource = 1
low_resource = 0
unseen = 0

[[data.synthetic.families]]
name = "overlap"
skill = "overlap"
high_resource = 1
low_resource = 0
unseen = 0

[train]
steps = 200
threads = 1
"#;

fn assert_same(a: &EvalResult, b: &EvalResult, what: &str) {
    assert_eq!(a.routing, b.routing, "{what}: routing counts");
    assert_eq!(a.predictions.len(), b.predictions.len(), "{what}");
    for (p, q) in a.predictions.iter().zip(&b.predictions) {
        assert_eq!((&p.task, p.index), (&q.task, q.index), "{what}: order");
        assert_eq!(p.label, q.label, "{what}: gold");
        assert!(
            (p.predicted - q.predicted).abs() < 1e-5,
            "{what}: {} {}",
            p.task,
            p.index
        );
        for (name, v) in &p.probabilities {
            let w = &q.probabilities[name];
            let d = (v.as_f64().unwrap() - w.as_f64().unwrap()).abs();
            assert!(d < 1e-5, "{what}: probability of {name} differs by {d}");
        }
    }
    for (s, t) in a.tasks.iter().zip(&b.tasks) {
        assert_eq!(s.examples, t.examples);
        for (name, v) in &s.metrics {
            assert!(
                (v - t.metrics[name]).abs() < 1e-6,
                "{what}: {} {name}",
                s.task
            );
        }
    }
}

#[test]
fn bucketed_evaluation_equals_split_order_evaluation() {
    tch::set_num_threads(1);
    let dir = std::env::temp_dir().join(format!("taskmoe-bucketing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.toml");
    std::fs::write(&file, RUN).unwrap();
    let cfg = RunConfig::load(Some(&file), &[format!("output.dir={}", dir.display())]).unwrap();
    let data = RunData::load(&cfg).unwrap();
    let trainer = Trainer::new(&cfg, &data, false).unwrap();
    let eval = EvalData {
        specs: &data.specs,
        split: &data.validation,
        seq_len: data.seq_len,
        pad_id: data.pad_id,
    };
    let lengths: Vec<usize> = data.validation[data.train_tasks[0]]
        .examples
        .iter()
        .map(|e| e.input_ids.len())
        .collect();
    assert!(
        lengths.iter().min() < lengths.iter().max(),
        "the split must have varied lengths"
    );
    let run = |batching| {
        evaluate_with(
            trainer.model(),
            &eval,
            &data.train_tasks,
            batching,
            tch::Device::Cpu,
        )
        .unwrap()
    };
    let plain = run(EvalBatching {
        batch_size: 16,
        bucket_by_length: false,
    });
    assert_same(
        &run(EvalBatching::bucketed(16)),
        &plain,
        "bucketed, batch 16",
    );
    assert_same(&run(EvalBatching::bucketed(7)), &plain, "bucketed, batch 7");
    let _ = std::fs::remove_dir_all(&dir);
}
