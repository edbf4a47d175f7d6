//! `taskmoe train` reads the WordNet gloss benchmark through its run configuration
//! (`configs/wordnet-minilm.toml` -> `configs/wordnet/tasks.toml` -> `configs/wordnet/data/`),
//! here with a tiny random model and MiniLM's tokenizer for two steps; `taskmoe data check`
//! reads every split; the experiment settings name tasks in the roles the protocol gives them.
//!
//! The data comes from `cargo xtask fetch-data wordnet`; `cargo xtask test` writes it and sets
//! `TASKMOE_WORDNET_DATA`, so there the tests must find it. Elsewhere, without the files, they
//! say so and pass; the settings test needs no data.

use crate::realtext::Benchmark;

/// The WordNet benchmark as these tests see it.
pub(crate) const WORDNET: Benchmark = Benchmark {
    name: "wordnet",
    first_task: "living_hi",
    variable: "TASKMOE_WORDNET_DATA",
    config: "wordnet-minilm.toml",
    max_position: 24,
    training: [
        "living_hi",
        "physical_hi",
        "abstract_hi",
        "living_lo",
        "physical_lo",
        "abstract_lo",
    ],
    test_examples: 750,
    untrained: ["living_new", "verb_sense", "word_class"],
};

#[test]
fn train_reads_the_wordnet_registry() {
    WORDNET.train_two_steps();
}

/// `taskmoe data check` on the WordNet run configuration: every split of the 11 tasks is
/// read whole, with no bad row and no input in two splits (the builder splits by synset and
/// definition); the only warnings are the few definitions cut at the configured length.
#[test]
fn data_check_passes_on_the_wordnet_registry() {
    WORDNET.data_check_is_clean("wordnet-minilm.toml");
}

/// The experiment settings (the full fine-tune and the frozen-bottom profile) name tasks of the
/// registry in the roles the protocol gives them: claim 1's mixture is the base mixture plus
/// the unrelated tasks, the unseen tasks are held out of it, the robustness experiment adds
/// the unrelated tasks to exactly the base mixture. Needs no data.
#[test]
fn the_experiment_settings_fit_the_registry() {
    for file in ["wordnet.toml", "wordnet-frozen.toml"] {
        let (_, loaded) = WORDNET.experiment_roles(file);
        let base = &loaded.run.data.tasks;
        for t in &loaded.settings.low_resource.tasks {
            assert!(t.ends_with("_lo") && base.contains(t), "{t}");
        }
    }
}
