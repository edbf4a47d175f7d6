//! The synthetic benchmark: determinism, structure, the relatedness construction, labels and
//! skills.

use taskmoe_data::synthetic::{
    Relation, Skill, SyntheticBenchmark, SyntheticConfig, SyntheticTask, TaskRole, CLS_ID, SEP_ID,
};

fn small(seed: u64) -> SyntheticConfig {
    SyntheticConfig {
        seed,
        high_resource_examples: 400,
        low_resource_examples: 40,
        unseen_train_examples: 100,
        eval_examples: 50,
        ..SyntheticConfig::default()
    }
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn task<'a>(b: &'a SyntheticBenchmark, name: &str) -> &'a SyntheticTask {
    b.task(name).unwrap_or_else(|| panic!("no task {name}"))
}

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let a = SyntheticBenchmark::default_benchmark();
    let b = SyntheticBenchmark::generate(&SyntheticConfig::default()).unwrap();
    assert_eq!(a, b);
    let c = SyntheticBenchmark::generate(&SyntheticConfig {
        seed: 1,
        ..SyntheticConfig::default()
    })
    .unwrap();
    for (x, y) in a.tasks().iter().zip(c.tasks()) {
        assert_eq!(x.spec, y.spec);
        assert_ne!(x.weights, y.weights, "{}", x.spec.name);
        assert_ne!(x.splits[0][..10], y.splits[0][..10], "{}", x.spec.name);
    }
    assert_ne!(a.word_classes(), c.word_classes());
}

#[test]
fn default_benchmark_has_families_roles_and_sizes() {
    let b = SyntheticBenchmark::default_benchmark();
    let c = b.config();
    assert_eq!(b.tasks().len(), 4 * 4 + 2);
    let registry = b.registry().unwrap();
    assert_eq!(
        registry.families()[..4],
        ["lexicon", "overlap", "order", "count"]
    );
    for family in ["lexicon", "overlap", "order", "count"] {
        let names: Vec<&str> = registry
            .family(family)
            .iter()
            .map(|(_, s)| s.name.as_str())
            .collect();
        let expected: Vec<String> = ["hi0", "lo0", "lo1", "unseen0"]
            .iter()
            .map(|t| format!("{family}_{t}"))
            .collect();
        assert_eq!(names, expected);
    }
    for t in b.tasks() {
        let train = t.split("train").unwrap().len();
        let expected = match t.role {
            TaskRole::HighResource | TaskRole::Conflicting | TaskRole::Unrelated => {
                c.high_resource_examples
            }
            TaskRole::LowResource => c.low_resource_examples,
            TaskRole::Unseen => c.unseen_train_examples,
        };
        assert_eq!(train, expected, "{}", t.spec.name);
        assert_eq!(t.split("validation").unwrap().len(), c.eval_examples);
        assert_eq!(t.split("test").unwrap().len(), c.eval_examples);
        assert_eq!(t.spec.held_out, t.role == TaskRole::Unseen);
        assert_eq!(t.spec.is_pair(), t.skill.is_pair());
    }
    assert_eq!(registry.held_out().len(), 4);
    assert_eq!(task(&b, "lexicon_conflict").role, TaskRole::Conflicting);
    assert_eq!(task(&b, "lexicon_unrelated").role, TaskRole::Unrelated);
}

#[test]
fn task_weights_follow_the_relatedness_construction() {
    // Lexicon weights have vocab_size = 512 entries, so sample correlations sit within about
    // 0.05 of their expectation; 0.15 is three standard deviations.
    let b = SyntheticBenchmark::generate(&small(0)).unwrap();
    let rho = b.config().relatedness;
    let w = |n: &str| task(&b, n).weights.clone();
    let within = correlation(&w("lexicon_hi0"), &w("lexicon_lo0"));
    assert!((within - rho * rho).abs() < 0.15, "within family {within}");
    let unseen = correlation(&w("lexicon_hi0"), &w("lexicon_unseen0"));
    assert!((unseen - rho * rho).abs() < 0.15, "unseen {unseen}");
    let conflict = correlation(&w("lexicon_hi0"), &w("lexicon_conflict"));
    assert!(
        (conflict + rho * rho).abs() < 0.15,
        "conflicting {conflict}"
    );
    let unrelated = correlation(&w("lexicon_hi0"), &w("lexicon_unrelated"));
    assert!(unrelated.abs() < 0.15, "unrelated {unrelated}");
    let across = correlation(&w("lexicon_hi0"), &w("overlap_hi0"));
    assert!(across.abs() < 0.15, "across families {across}");

    let independent = SyntheticBenchmark::generate(&SyntheticConfig {
        relatedness: 0.0,
        ..small(0)
    })
    .unwrap();
    let r = correlation(
        &task(&independent, "lexicon_hi0").weights,
        &task(&independent, "lexicon_lo0").weights,
    );
    assert!(r.abs() < 0.15, "rho = 0 gives {r}");

    let identical = SyntheticBenchmark::generate(&SyntheticConfig {
        relatedness: 1.0,
        ..small(0)
    })
    .unwrap();
    assert_eq!(
        task(&identical, "order_hi0").weights,
        task(&identical, "order_lo1").weights
    );
}

#[test]
fn labels_are_balanced_noisy_at_the_set_rate_and_consistent_with_scores() {
    let b = SyntheticBenchmark::default_benchmark();
    let (mut flipped, mut total) = (0usize, 0usize);
    for t in b.tasks() {
        let examples: Vec<_> = t.splits.iter().flatten().collect();
        let positive = examples.iter().filter(|e| e.clean_label == 1).count();
        let share = positive as f64 / examples.len() as f64;
        assert!(
            (0.4..=0.6).contains(&share),
            "{}: {share} positive",
            t.spec.name
        );
        for e in &examples {
            let score = t.skill.score(
                &t.weights,
                &e.words_a,
                e.words_b.as_deref(),
                b.word_classes(),
            );
            assert_eq!(score, e.score);
            assert_eq!(e.clean_label, i64::from(e.score > 0.0));
        }
        flipped += examples.iter().filter(|e| e.label != e.clean_label).count();
        total += examples.len();
    }
    let rate = flipped as f64 / total as f64;
    let noise = b.config().label_noise;
    let sd = (noise * (1.0 - noise) / total as f64).sqrt();
    assert!(
        (rate - noise).abs() < 5.0 * sd,
        "flip rate {rate}, configured {noise}"
    );
}

#[test]
fn skills_behave_as_documented() {
    let classes: Vec<u32> = vec![0, 1, 0, 1];
    // Lexicon: sum of word weights over sqrt(len).
    let w = [1.0, -2.0, 0.5, 3.0];
    let s = Skill::Lexicon.score(&w, &[0, 1, 3, 3], None, &classes);
    assert!((s - (1.0 - 2.0 + 3.0 + 3.0) / 2.0).abs() < 1e-12);
    // Overlap: only words found in both sentences count, each once.
    let s = Skill::Overlap.score(&w, &[0, 1, 1], Some(&[1, 2, 1]), &classes);
    assert!((s - (-2.0)).abs() < 1e-12);
    // Order: reversing the sentence negates the score.
    let cw = [1.0, -1.0];
    let a = [0, 1, 2, 3, 3, 0];
    let reversed: Vec<u32> = a.iter().rev().copied().collect();
    let forward = Skill::Order.score(&cw, &a, None, &classes);
    assert!(forward != 0.0);
    assert!((forward + Skill::Order.score(&cw, &reversed, None, &classes)).abs() < 1e-12);
    // Count: swapping the sentences negates the score.
    let (x, y) = ([0u32, 2, 2], [1u32, 3]);
    let s = Skill::Count.score(&cw, &x, Some(&y), &classes);
    assert!((s - (3.0 - (-2.0)) / 5f64.sqrt()).abs() < 1e-12);
    assert!((s + Skill::Count.score(&cw, &y, Some(&x), &classes)).abs() < 1e-12);

    // Every generated overlap pair shares at least one word.
    let b = SyntheticBenchmark::generate(&small(3)).unwrap();
    for e in task(&b, "overlap_hi0").splits.iter().flatten() {
        let other = e.words_b.as_ref().unwrap();
        assert!(e.words_a.iter().any(|v| other.contains(v)));
    }
}

#[test]
fn word_classes_are_balanced() {
    let b = SyntheticBenchmark::default_benchmark();
    let c = b.config();
    let mut counts = vec![0usize; c.word_classes];
    for &k in b.word_classes() {
        counts[k as usize] += 1;
    }
    assert!(
        counts.iter().all(|&n| n == c.vocab_size / c.word_classes),
        "{counts:?}"
    );
}

#[test]
fn encoding_is_bert_layout_within_max_seq_len() {
    let b = SyntheticBenchmark::generate(&small(0)).unwrap();
    let max = b.max_seq_len();
    assert_eq!(max, 3 + 2 * b.config().max_words);
    for (id, t) in b.tasks().iter().enumerate() {
        let data = b.task_data(id, "validation").unwrap();
        assert_eq!(data.task_id, id);
        for (e, enc) in t.split("validation").unwrap().iter().zip(&data.examples) {
            let ids = &enc.input_ids;
            assert!(ids.len() <= max);
            assert_eq!(ids[0], CLS_ID);
            let la = e.words_a.len();
            assert_eq!(ids[1 + la], SEP_ID);
            assert_eq!(ids[1], b.vocab().word_id(e.words_a[0]));
            match &e.words_b {
                None => assert_eq!(ids.len(), la + 2),
                Some(words_b) => {
                    assert_eq!(ids.len(), la + words_b.len() + 3);
                    assert_eq!(*ids.last().unwrap(), SEP_ID);
                    assert_eq!(enc.token_type_ids[la + 1], 0);
                    assert_eq!(enc.token_type_ids[la + 2], 1);
                }
            }
        }
    }
    assert!(b.task_data(0, "dev").is_none());
    assert!(b.task_data(99, "train").is_none());
}

#[test]
fn tasks_do_not_depend_on_sizes_or_other_tasks() {
    let full = SyntheticBenchmark::generate(&small(0)).unwrap();
    let mut grown_cfg = small(0);
    grown_cfg.high_resource_examples = 600;
    grown_cfg.families.retain(|f| f.name == "lexicon");
    grown_cfg.extra_tasks.clear();
    let grown = SyntheticBenchmark::generate(&grown_cfg).unwrap();
    assert_eq!(grown.tasks().len(), 4);
    let (a, b) = (task(&full, "lexicon_hi0"), task(&grown, "lexicon_hi0"));
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.splits[0][..], b.splits[0][..400]);
    assert_eq!(a.splits[1], b.splits[1]);
}

#[test]
fn default_toml_is_the_default_config() {
    let parsed = SyntheticConfig::from_toml_str(SyntheticConfig::DEFAULT_TOML).unwrap();
    assert_eq!(parsed, SyntheticConfig::default());
}

#[test]
fn config_reads_partial_toml_and_refuses_mistakes() {
    let c = SyntheticConfig::from_toml_str(
        "seed = 9\nrelatedness = 0.5\n\n[[families]]\nname = \"lex\"\nskill = \"lexicon\"\n\
         low_resource = 3\n\n[[extra_tasks]]\nname = \"anti\"\nrelation = { kind = \"conflicting\", family = \"lex\" }\n",
    )
    .unwrap();
    assert_eq!((c.seed, c.relatedness, c.vocab_size), (9, 0.5, 512));
    assert_eq!(c.families.len(), 1);
    assert_eq!(
        (c.families[0].high_resource, c.families[0].low_resource),
        (1, 3)
    );
    assert_eq!(
        c.extra_tasks[0].relation,
        Relation::Conflicting {
            family: "lex".into()
        }
    );
    let b = SyntheticBenchmark::generate(&c).unwrap();
    assert_eq!(b.tasks().len(), 1 + 3 + 1 + 1);

    for bad in [
        "relatednes = 0.5\n",
        "relatedness = 1.5\n",
        "label_noise = 0.5\n",
        "min_words = 20\n",
        "[[extra_tasks]]\nname = \"x\"\nrelation = { kind = \"conflicting\", family = \"nope\" }\n",
    ] {
        assert!(SyntheticConfig::from_toml_str(bad).is_err(), "{bad}");
    }
    // Two families with one name would give duplicate task names.
    let mut dup = small(0);
    dup.families[1].name = "lexicon".into();
    assert!(SyntheticBenchmark::generate(&dup).is_err());
}
