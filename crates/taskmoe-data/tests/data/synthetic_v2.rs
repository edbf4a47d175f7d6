//! Generator v2 (the experiments' benchmark): exact relatedness at every seed, balanced
//! labels, unrelated tasks on a skill and words of their own, conflicting tasks that regroup
//! the family's words, test splits large enough for a standard error of 0.01.

use taskmoe_data::synthetic::{
    correlation, ExtraTaskConfig, FamilyConfig, Generator, Relation, Skill, SyntheticBenchmark,
    SyntheticConfig, SyntheticTask, TaskRole,
};

fn family(skill: Skill, low: usize) -> FamilyConfig {
    FamilyConfig {
        name: skill.name().into(),
        skill,
        high_resource: 1,
        low_resource: low,
        unseen: 1,
        relatedness: None,
    }
}

/// Two families (a word-level and a class-level skill), a conflicting task for each, and an
/// unrelated task of a third skill on its own words.
fn v2(seed: u64, rho: f64) -> SyntheticConfig {
    SyntheticConfig {
        generator: Generator::V2,
        seed,
        vocab_size: 128,
        unrelated_vocab_size: 128,
        word_classes: 64,
        min_words: 6,
        max_words: 6,
        relatedness: rho,
        high_resource_examples: 2000,
        low_resource_examples: 64,
        unseen_train_examples: 64,
        eval_examples: 200,
        test_examples: Some(2500),
        families: vec![family(Skill::Lexicon, 3), family(Skill::Order, 3)],
        extra_tasks: vec![
            ExtraTaskConfig {
                name: "lexicon_conflict".into(),
                relation: Relation::Conflicting {
                    family: "lexicon".into(),
                },
            },
            ExtraTaskConfig {
                name: "order_conflict".into(),
                relation: Relation::Conflicting {
                    family: "order".into(),
                },
            },
            ExtraTaskConfig {
                name: "count_unrelated".into(),
                relation: Relation::Unrelated {
                    skill: Skill::Count,
                },
            },
        ],
        ..SyntheticConfig::default()
    }
}

/// A task's per-word weights over the words it reads.
fn own_weights(t: &SyntheticTask) -> &[f64] {
    &t.word_weights[t.words.start as usize..t.words.end as usize]
}

fn family_tasks<'a>(b: &'a SyntheticBenchmark, family: &str) -> Vec<&'a SyntheticTask> {
    b.tasks()
        .iter()
        .filter(|t| t.spec.family == family)
        .collect()
}

#[test]
fn every_pair_of_a_family_has_exactly_the_declared_correlation_at_every_seed() {
    for rho in [0.0, 0.5, 0.9] {
        for seed in 0..4 {
            let b = SyntheticBenchmark::generate(&v2(seed, rho)).unwrap();
            for name in ["lexicon", "order"] {
                let tasks = family_tasks(&b, name);
                assert_eq!(tasks.len(), 5, "{name}: 1 high, 3 low, 1 unseen");
                for (i, x) in tasks.iter().enumerate() {
                    let w = &x.weights;
                    assert!(w.len() >= 64, "{}: {} dimensions", x.spec.name, w.len());
                    let mean = w.iter().sum::<f64>() / w.len() as f64;
                    assert!(mean.abs() < 1e-12, "{}: weights centred", x.spec.name);
                    for y in &tasks[..i] {
                        // In the skill's own space and as the per-word weights that score.
                        for r in [
                            correlation(&x.weights, &y.weights),
                            correlation(own_weights(x), own_weights(y)),
                        ] {
                            assert!(
                                (r - rho).abs() < 1e-9,
                                "seed {seed}: {} ~ {} = {r}, declared {rho}",
                                x.spec.name,
                                y.spec.name
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn every_task_is_balanced_and_its_test_split_is_large_enough() {
    for seed in 0..3 {
        let b = SyntheticBenchmark::generate(&v2(seed, 0.8)).unwrap();
        for t in b.tasks() {
            let test = t.split("test").unwrap();
            // Standard error of an accuracy near 0.5: sqrt(0.25 / n) <= 0.01.
            assert!((0.25 / test.len() as f64).sqrt() <= 0.01);
            let mut splits = vec![("test", test)];
            if t.role == TaskRole::HighResource {
                splits.push(("train", t.split("train").unwrap()));
            }
            for (split, examples) in splits {
                let share = |f: &dyn Fn(&taskmoe_data::synthetic::SyntheticExample) -> bool| {
                    examples.iter().filter(|e| f(e)).count() as f64 / examples.len() as f64
                };
                let positive = share(&|e| e.label == 1);
                assert!(
                    (0.45..=0.55).contains(&positive),
                    "seed {seed}: {} {split}: P(y = 1) = {positive}",
                    t.spec.name
                );
                let clean = share(&|e| e.clean_label == 1);
                assert!(
                    (0.46..=0.54).contains(&clean),
                    "seed {seed}: {} {split}: clean share {clean}",
                    t.spec.name
                );
            }
            for e in t.splits.iter().flatten() {
                let raw = t
                    .skill
                    .score_words(&t.word_weights, &e.words_a, e.words_b.as_deref());
                assert_eq!(raw - t.threshold, e.score);
                assert_eq!(e.clean_label, i64::from(e.score > 0.0));
            }
        }
    }
}

#[test]
fn unrelated_tasks_read_other_words_with_another_skill() {
    let b = SyntheticBenchmark::generate(&v2(0, 0.8)).unwrap();
    let c = b.config();
    assert_eq!(b.vocab().words(), c.vocab_size + c.unrelated_vocab_size);
    let family_words = 0..c.vocab_size as u32;
    let family_skills: Vec<Skill> = c.families.iter().map(|f| f.skill).collect();
    for t in b.tasks() {
        let unrelated = t.role == TaskRole::Unrelated;
        let in_own_range = |v: &u32| t.words.contains(v);
        for e in t.splits.iter().flatten() {
            let words = e.words_a.iter().chain(e.words_b.iter().flatten());
            for v in words {
                assert!(in_own_range(v), "{}: word {v}", t.spec.name);
                assert_eq!(
                    family_words.contains(v),
                    !unrelated,
                    "{}: word {v} crosses the vocabularies",
                    t.spec.name
                );
            }
        }
        if unrelated {
            assert!(!family_skills.contains(&t.skill), "{}", t.spec.name);
            let outside = t.word_weights[..c.vocab_size].iter().all(|&w| w == 0.0);
            assert!(outside, "{}: weights on family words", t.spec.name);
        }
    }
}

#[test]
fn conflicting_tasks_regroup_the_family_words_so_no_head_undoes_them() {
    for seed in 0..4 {
        let b = SyntheticBenchmark::generate(&v2(seed, 0.8)).unwrap();
        for name in ["lexicon", "order"] {
            let conflict = b.task(&format!("{name}_conflict")).unwrap();
            let members = family_tasks(&b, name);
            assert_eq!(conflict.role, TaskRole::Conflicting);
            assert_eq!(conflict.skill, members[0].skill);
            assert_eq!(conflict.words, members[0].words);
            // The same multiset of per-word weights as a family construction, moved to other
            // words: little linear relation to any family task, in either sign.
            for m in &members {
                let r = correlation(own_weights(conflict), own_weights(m));
                assert!(
                    r.abs() < 0.5,
                    "seed {seed}: {} ~ {} = {r}",
                    conflict.spec.name,
                    m.spec.name
                );
            }
            if name == "order" {
                // A class-level skill: the per-word weights stay constant on groups of
                // words, but the groups are not the family's word classes.
                let classes = b.word_classes();
                let same_class_split = (0..b.config().vocab_size)
                    .flat_map(|v| (0..v).map(move |u| (u, v)))
                    .filter(|&(u, v)| classes[u] == classes[v])
                    .any(|(u, v)| conflict.word_weights[u] != conflict.word_weights[v]);
                assert!(
                    same_class_split,
                    "seed {seed}: the conflict keeps the classes"
                );
            }
        }
    }
}

#[test]
fn v2_refuses_what_would_break_its_guarantees() {
    let refuse = |c: SyntheticConfig, words: &str| {
        let e = SyntheticBenchmark::generate(&c).unwrap_err().to_string();
        assert!(e.contains(words), "{e}");
    };
    let mut shared_skill = v2(0, 0.8);
    shared_skill.extra_tasks.push(ExtraTaskConfig {
        name: "lexicon_unrelated".into(),
        relation: Relation::Unrelated {
            skill: Skill::Lexicon,
        },
    });
    refuse(shared_skill, "which a family uses");
    refuse(
        SyntheticConfig {
            unrelated_vocab_size: 0,
            ..v2(0, 0.8)
        },
        "unrelated_vocab_size > 0",
    );
    refuse(
        SyntheticConfig {
            word_classes: 16,
            ..v2(0, 0.8)
        },
        "at least 64",
    );
    refuse(
        SyntheticConfig {
            unrelated_vocab_size: 16,
            ..SyntheticConfig::default()
        },
        "needs generator",
    );
}

#[test]
fn v2_tasks_do_not_depend_on_split_sizes() {
    let a = SyntheticBenchmark::generate(&v2(3, 0.8)).unwrap();
    let b = SyntheticBenchmark::generate(&SyntheticConfig {
        high_resource_examples: 500,
        test_examples: Some(3000),
        ..v2(3, 0.8)
    })
    .unwrap();
    for (x, y) in a.tasks().iter().zip(b.tasks()) {
        assert_eq!(x.weights, y.weights);
        assert_eq!(x.threshold, y.threshold);
        assert_eq!(x.splits[2][..], y.splits[2][..2500]);
        let n = x.splits[0].len().min(y.splits[0].len());
        assert_eq!(x.splits[0][..n], y.splits[0][..n]);
    }
}
