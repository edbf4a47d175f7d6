//! `taskmoe train` reads the WordNet gloss benchmark through its run configuration
//! (`configs/wordnet-minilm.toml` -> `configs/wordnet/tasks.toml` -> `configs/wordnet/data/`),
//! here with a tiny random model and MiniLM's tokenizer for two steps; `taskmoe data check`
//! reads every split; the experiment settings name tasks in the roles the protocol gives them.
//!
//! The data comes from `cargo xtask fetch-data wordnet`; `cargo xtask test` writes it and sets
//! `TASKMOE_WORDNET_DATA`, so there the tests must find it. Elsewhere, without the files, they
//! say so and pass; the settings test needs no data.

use std::path::Path;

use crate::realtext::Benchmark;

/// The WordNet benchmark as these tests see it.
const WORDNET: Benchmark = Benchmark {
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let registry =
        taskmoe_data::TaskRegistry::from_toml_file(&root.join("configs/wordnet/tasks.toml"))
            .unwrap();
    for file in ["wordnet.toml", "wordnet-frozen.toml"] {
        let scratch =
            std::env::temp_dir().join(format!("taskmoe-cli-{}-wnexp-{file}", std::process::id()));
        let loaded = taskmoe_experiments::ExperimentConfig::load(
            taskmoe_experiments::Profile::Quick,
            Some(&root.join("configs/experiments").join(file)),
            &[],
            &["data.tokenizer=tokenizer.json".to_string()],
            &scratch,
        )
        .unwrap();
        let s = &loaded.settings;
        let base = &loaded.run.data.tasks;
        assert_eq!(&s.unrelated.base_tasks, base, "{file}");
        let mut mixture = base.clone();
        mixture.extend(s.unrelated.new_tasks.iter().cloned());
        assert_eq!(
            s.low_resource.mixture, mixture,
            "{file}: claim 1 trains on the related and the unrelated tasks"
        );
        for t in base {
            assert!(!registry.get(t).unwrap().held_out, "{t}");
        }
        for t in &s.low_resource.tasks {
            assert!(t.ends_with("_lo") && base.contains(t), "{t}");
        }
        for t in &s.unseen.tasks {
            assert!(registry.get(t).unwrap().held_out, "{t}");
        }
        for t in &s.unrelated.new_tasks {
            let family = &registry.get(t).unwrap().family;
            assert!(
                base.iter()
                    .all(|b| &registry.get(b).unwrap().family != family),
                "{t} shares a family with the base mixture"
            );
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
