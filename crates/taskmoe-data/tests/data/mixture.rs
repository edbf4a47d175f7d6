//! Mixture rates against seqio's formula, subsampling and k-shot splits.

use std::collections::BTreeMap;

use taskmoe_data::{
    examples_proportional_rate, k_shot_split, subsample, EncodedExample, Label, Mixture,
    MixtureSpec, MixtureTask,
};

fn tasks(sizes: &[usize]) -> Vec<MixtureTask> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| MixtureTask {
            name: format!("t{i}"),
            task_id: i,
            num_examples: n,
        })
        .collect()
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-9, "{a:?} vs {b:?}");
    }
}

#[test]
fn examples_proportional_with_cap_and_temperature_is_seqio_formula() {
    // seqio: rate = min(n * scale, cap) ^ (1 / T). n = 100, 1000, 10000; cap 5000; T = 2:
    // rates sqrt(100) = 10, sqrt(1000), sqrt(5000).
    let spec = MixtureSpec::ExamplesProportional {
        cap: Some(5000.0),
        temperature: 2.0,
        scale: 1.0,
    };
    let m = Mixture::new(&spec, tasks(&[100, 1000, 10000])).unwrap();
    let rates = [10.0, 1000f64.sqrt(), 5000f64.sqrt()];
    close(m.rates(), &rates);
    let total: f64 = rates.iter().sum();
    close(
        m.probabilities(),
        &[
            10.0 / total,
            31.622776601683793 / total,
            70.71067811865476 / total,
        ],
    );
}

#[test]
fn temperature_one_without_cap_is_proportional_and_scale_applies_before_cap() {
    let spec = MixtureSpec::ExamplesProportional {
        cap: None,
        temperature: 1.0,
        scale: 1.0,
    };
    let m = Mixture::new(&spec, tasks(&[100, 300])).unwrap();
    close(m.probabilities(), &[0.25, 0.75]);
    // scale 10: 1000 and 3000, capped at 2000.
    assert_eq!(
        examples_proportional_rate(100, Some(2000.0), 1.0, 10.0),
        1000.0
    );
    assert_eq!(
        examples_proportional_rate(300, Some(2000.0), 1.0, 10.0),
        2000.0
    );
    // Higher temperature flattens the mixture towards uniform.
    let hot = MixtureSpec::ExamplesProportional {
        cap: None,
        temperature: 100.0,
        scale: 1.0,
    };
    let m = Mixture::new(&hot, tasks(&[100, 10000])).unwrap();
    assert!(
        (m.probabilities()[0] - 0.5).abs() < 0.02,
        "{:?}",
        m.probabilities()
    );
}

#[test]
fn explicit_and_uniform_rates() {
    let rates = BTreeMap::from([("t0".to_string(), 3.0), ("t1".to_string(), 1.0)]);
    let m = Mixture::new(&MixtureSpec::Explicit { rates }, tasks(&[5, 500])).unwrap();
    close(m.probabilities(), &[0.75, 0.25]);
    let m = Mixture::new(&MixtureSpec::Uniform {}, tasks(&[5, 500, 7, 9])).unwrap();
    close(m.probabilities(), &[0.25; 4]);
}

#[test]
fn mixture_specs_parse_from_toml() {
    let spec: MixtureSpec =
        toml::from_str("kind = \"examples_proportional\"\ncap = 2000\ntemperature = 3.0\n")
            .unwrap();
    assert_eq!(
        spec,
        MixtureSpec::ExamplesProportional {
            cap: Some(2000.0),
            temperature: 3.0,
            scale: 1.0
        }
    );
    let spec: MixtureSpec = toml::from_str("kind = \"explicit\"\nrates = { a = 1.5 }\n").unwrap();
    assert!(matches!(spec, MixtureSpec::Explicit { .. }));
    assert_eq!(
        toml::from_str::<MixtureSpec>("kind = \"uniform\"\n").unwrap(),
        MixtureSpec::Uniform {}
    );
    assert!(toml::from_str::<MixtureSpec>("kind = \"uniform\"\ncap = 3\n").is_err());
    assert!(toml::from_str::<MixtureSpec>("kind = \"examples_proportional\"\ntemp = 3\n").is_err());
}

#[test]
fn bad_mixtures_are_refused() {
    let missing = BTreeMap::from([("t0".to_string(), 1.0)]);
    assert!(Mixture::new(&MixtureSpec::Explicit { rates: missing }, tasks(&[1, 2])).is_err());
    let extra = BTreeMap::from([
        ("t0".to_string(), 1.0),
        ("t1".to_string(), 1.0),
        ("zz".to_string(), 1.0),
    ]);
    assert!(Mixture::new(&MixtureSpec::Explicit { rates: extra }, tasks(&[1, 2])).is_err());
    let zero = BTreeMap::from([("t0".to_string(), 0.0)]);
    assert!(Mixture::new(&MixtureSpec::Explicit { rates: zero }, tasks(&[1])).is_err());
    let negative = BTreeMap::from([("t0".to_string(), -1.0), ("t1".to_string(), 2.0)]);
    assert!(Mixture::new(&MixtureSpec::Explicit { rates: negative }, tasks(&[1, 2])).is_err());
    let cold = MixtureSpec::ExamplesProportional {
        cap: None,
        temperature: 0.0,
        scale: 1.0,
    };
    assert!(Mixture::new(&cold, tasks(&[1])).is_err());
    assert!(Mixture::new(&MixtureSpec::Uniform {}, vec![]).is_err());
    let mut dup = tasks(&[1, 2]);
    dup[1].name = "t0".into();
    assert!(Mixture::new(&MixtureSpec::Uniform {}, dup).is_err());
}

fn examples(labels: &[i64]) -> Vec<EncodedExample> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &c)| EncodedExample {
            id: i as u64,
            input_ids: vec![2, 10 + i as i64, 3],
            token_type_ids: vec![0; 3],
            label: Label::Class(c),
            source_id: None,
        })
        .collect()
}

#[test]
fn subsampling_is_deterministic_nested_and_ordered() {
    let all = examples(&vec![0; 100]);
    let a = subsample(&all, 30, 7, "task").unwrap();
    assert_eq!(a, subsample(&all, 30, 7, "task").unwrap());
    assert_eq!(a.len(), 30);
    assert!(
        a.windows(2).all(|w| w[0].id < w[1].id),
        "original order kept"
    );
    let small = subsample(&all, 10, 7, "task").unwrap();
    assert!(
        small.iter().all(|e| a.contains(e)),
        "smaller subsample is nested"
    );
    assert_ne!(a, subsample(&all, 30, 8, "task").unwrap());
    assert_ne!(a, subsample(&all, 30, 7, "other").unwrap());
    assert!(subsample(&all, 101, 7, "task").is_err());
}

#[test]
fn k_shot_takes_k_per_class_and_leaves_the_rest() {
    let labels: Vec<i64> = (0..60).map(|i| i % 3).collect();
    let all = examples(&labels);
    let split = k_shot_split(&all, 4, 1, "unseen").unwrap();
    assert_eq!(split.train.len(), 12);
    assert_eq!(split.rest.len(), 48);
    for c in 0..3 {
        let n = split
            .train
            .iter()
            .filter(|e| e.label == Label::Class(c))
            .count();
        assert_eq!(n, 4, "class {c}");
    }
    assert!(split.rest.iter().all(|e| !split.train.contains(e)));
    assert_eq!(split, k_shot_split(&all, 4, 1, "unseen").unwrap());
    assert_ne!(
        split.train,
        k_shot_split(&all, 4, 2, "unseen").unwrap().train
    );
    // Class 2 has 20 examples: 21 shots are impossible.
    let err = k_shot_split(&all, 21, 1, "unseen").unwrap_err();
    assert!(err.to_string().contains("fewer than k = 21"), "{err}");
}
