//! The Python docstring benchmark through the `taskmoe` command: `taskmoe train` reads it
//! through its run configuration (`configs/pydocs-minilm-frozen.toml` ->
//! `configs/pydocs/tasks.toml` -> `configs/pydocs/data/`), here with a tiny random model and
//! MiniLM's tokenizer for two steps; `taskmoe data check` reads every split; the experiment
//! settings (`configs/experiments/pydocs-frozen.toml`) name tasks in the roles they were built
//! for.
//!
//! The data comes from `cargo xtask fetch-data pydocs`; `cargo xtask test` writes it and sets
//! `TASKMOE_PYDOCS_DATA`, so there the tests must find it. Elsewhere, without the files, they
//! say so and pass; the settings test needs no data.

use crate::realtext::Benchmark;
use crate::wordnet::WORDNET;

/// The docstring benchmark as these tests see it.
const PYDOCS: Benchmark = Benchmark {
    name: "pydocs",
    first_task: "internet_hi",
    variable: "TASKMOE_PYDOCS_DATA",
    config: "pydocs-minilm-frozen.toml",
    max_position: 64,
    training: [
        "internet_hi",
        "tooling_hi",
        "system_hi",
        "internet_lo",
        "tooling_lo",
        "system_lo",
    ],
    test_examples: 120,
    untrained: ["internet_new", "doc_kind", "arity"],
};

#[test]
fn train_reads_the_pydocs_registry() {
    PYDOCS.train_two_steps();
}

/// `taskmoe data check` on the docstring run configuration: every split of the 11 tasks is
/// read whole, with no bad row and no input in two splits (the builder splits by text); the
/// only warnings are the few summaries cut at the configured length.
#[test]
fn data_check_passes_on_the_pydocs_registry() {
    PYDOCS.data_check_is_clean("pydocs-minilm-frozen.toml");
}

/// The frozen-bottom experiment settings name tasks of the registry in the roles the protocol
/// gives them, as WordNet's do (`wordnet.rs`): claim 1's mixture is the base mixture plus the
/// unrelated tasks, the low-resource tasks are the three `_lo`, the unseen tasks the three
/// held-out `_new`, the robustness experiment adds the two unrelated tasks (families of their
/// own) to exactly the base mixture; the seeds, evaluations and arms are WordNet's. Needs no
/// data.
#[test]
fn the_experiment_settings_fit_the_registry() {
    let (registry, loaded) = PYDOCS.experiment_roles("pydocs-frozen.toml");
    let s = &loaded.settings;
    let base = &loaded.run.data.tasks;
    let names = |suffix: &str| -> Vec<String> {
        ["internet", "tooling", "system"]
            .map(|f| format!("{f}_{suffix}"))
            .to_vec()
    };
    let mut related = names("hi");
    related.extend(names("lo"));
    assert_eq!(base, &related);
    assert_eq!(s.unrelated.new_tasks, ["doc_kind", "arity"]);
    assert_eq!(s.low_resource.tasks, names("lo"));
    assert_eq!(s.unseen.tasks, names("new"));
    // The low-resource and k-shot cuts fit the 45-example pools.
    for t in s.low_resource.tasks.iter().chain(&s.unseen.tasks) {
        let pool = registry.read_split(t, "train").map(|r| r.examples.len());
        let need = s
            .low_resource
            .sizes
            .iter()
            .chain(&s.unseen.k)
            .max()
            .unwrap();
        if let Ok(n) = pool {
            assert!(n >= *need, "{t}: {n} training examples, {need} wanted");
        }
    }
    // The structure is WordNet's frozen-bottom profile's.
    let wordnet = WORDNET.experiment_roles("wordnet-frozen.toml").1.settings;
    assert_eq!(
        (s.seeds, s.tuning_seeds, s.evals_per_run),
        (20, 1, wordnet.evals_per_run)
    );
    assert_eq!(s.evals_per_run, 5);
    assert_eq!(s.low_resource.variants, wordnet.low_resource.variants);
    assert_eq!(
        s.low_resource.variants,
        [
            "single-task",
            "dense",
            "task-dense",
            "token-moe",
            "task-moe"
        ]
    );
    assert_eq!(s.unrelated.variants, ["dense", "task-dense", "task-moe"]);
    assert_eq!(s.unrelated.variants, wordnet.unrelated.variants);
    assert_eq!(
        (&s.low_resource.sizes, &s.unseen.k),
        (&wordnet.low_resource.sizes, &wordnet.unseen.k)
    );
}
