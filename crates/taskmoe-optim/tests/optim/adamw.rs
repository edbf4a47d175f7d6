//! AdamW against a plain f64 reference, state save / load and resume, weight-decay groups.

use taskmoe_optim::{default_decays, AdamW, AdamWConfig, OptimError};
use tch::{nn, Kind, Tensor};

/// The update of `torch.optim.AdamW` written out in f64 for one parameter.
#[derive(Clone)]
struct Reference {
    p: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Reference {
    fn step(&mut self, g: &[f64], lr: f64, cfg: &AdamWConfig, decay: bool) {
        self.t += 1;
        let bc1 = 1.0 - cfg.beta1.powi(self.t);
        let bc2 = 1.0 - cfg.beta2.powi(self.t);
        let moments = self.m.iter_mut().zip(self.v.iter_mut());
        for ((p, (m, v)), &g) in self.p.iter_mut().zip(moments).zip(g) {
            if decay {
                *p *= 1.0 - lr * cfg.weight_decay;
            }
            *m = cfg.beta1 * *m + (1.0 - cfg.beta1) * g;
            *v = cfg.beta2 * *v + (1.0 - cfg.beta2) * g * g;
            let denom = (*v / bc2).sqrt() + cfg.eps;
            *p -= lr * (*m / bc1) / denom;
        }
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn param(data: &[f64], shape: &[i64], kind: Kind) -> Tensor {
    Tensor::from_slice(data)
        .to_kind(kind)
        .reshape(shape)
        .set_requires_grad(true)
}

#[test]
fn matches_the_f64_reference_with_decay_groups() {
    let cfg = AdamWConfig {
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-6,
        weight_decay: 0.1,
        ..AdamWConfig::default()
    };
    let w0 = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5];
    let b0 = [0.1, -0.2, 0.3];
    let w = param(&w0, &[2, 3], Kind::Double);
    let b = param(&b0, &[3], Kind::Double);
    let mut opt = AdamW::new(
        vec![
            ("layer.weight".into(), w.shallow_clone()),
            ("layer.bias".into(), b.shallow_clone()),
        ],
        cfg,
    )
    .unwrap();
    assert_eq!(opt.decays("layer.weight"), Some(true));
    assert_eq!(opt.decays("layer.bias"), Some(false));
    let mut rw = Reference {
        p: w0.to_vec(),
        m: vec![0.0; 6],
        v: vec![0.0; 6],
        t: 0,
    };
    let mut rb = Reference {
        p: b0.to_vec(),
        m: vec![0.0; 3],
        v: vec![0.0; 3],
        t: 0,
    };
    for step in 0..5 {
        // loss = sum(w * gw) + sum(b^2) / 2: gradients gw (a fixed pattern per step) and b.
        let gw: Vec<f64> = (0..6)
            .map(|i| ((i * 7 + step * 3) % 5) as f64 - 2.0)
            .collect();
        let gb = rb.p.clone();
        opt.zero_grad();
        let loss = (&w * Tensor::from_slice(&gw).reshape([2, 3])).sum(Kind::Double)
            + (&b * &b).sum(Kind::Double) * 0.5;
        loss.backward();
        let lr = 0.01 * (step + 1) as f64;
        opt.step(lr).unwrap();
        rw.step(&gw, lr, &cfg, true);
        rb.step(&gb, lr, &cfg, false);
        for (got, want) in values(&w)
            .iter()
            .zip(&rw.p)
            .chain(values(&b).iter().zip(&rb.p))
        {
            assert!((got - want).abs() < 1e-12, "step {step}: {got} != {want}");
        }
    }
    assert_eq!(opt.num_steps(), 5);
    let (m, v, t) = opt.state("layer.weight").unwrap();
    assert_eq!(t, 5);
    for (got, want) in values(m)
        .iter()
        .zip(&rw.m)
        .chain(values(v).iter().zip(&rw.v))
    {
        assert!((got - want).abs() < 1e-12);
    }
}

/// A small regression problem whose gradients depend on the parameters, so the moments matter.
struct Problem {
    x: Tensor,
    y: Tensor,
}

impl Problem {
    fn new() -> Self {
        let x: Vec<f32> = (0..24)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let y: Vec<f32> = (0..8).map(|i| ((i * 5 % 7) as f32 - 3.0) / 2.0).collect();
        Problem {
            x: Tensor::from_slice(&x).reshape([8, 3]),
            y: Tensor::from_slice(&y).reshape([8, 1]),
        }
    }

    fn params() -> Vec<(String, Tensor)> {
        vec![
            (
                "head.weight".into(),
                param(&[0.3, -0.2, 0.1], &[3, 1], Kind::Float),
            ),
            ("head.bias".into(), param(&[0.05], &[1], Kind::Float)),
        ]
    }

    fn train(&self, opt: &mut AdamW, params: &[(String, Tensor)], steps: std::ops::Range<u64>) {
        for step in steps {
            opt.zero_grad();
            let pred = self.x.matmul(&params[0].1) + &params[1].1;
            let loss = (pred - &self.y).square().mean(Kind::Float);
            loss.backward();
            opt.step(1e-2 / (1 + step) as f64).unwrap();
        }
    }
}

fn shallow(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect()
}

fn snapshot(params: &[(String, Tensor)]) -> Vec<Tensor> {
    params.iter().map(|(_, t)| t.detach().copy()).collect()
}

#[test]
fn save_load_continue_is_bit_identical_to_an_uninterrupted_run() {
    let problem = Problem::new();
    let cfg = AdamWConfig::default();

    let straight = Problem::params();
    let mut opt = AdamW::new(shallow(&straight), cfg).unwrap();
    problem.train(&mut opt, &straight, 0..6);

    let first = Problem::params();
    let mut opt = AdamW::new(shallow(&first), cfg).unwrap();
    problem.train(&mut opt, &first, 0..3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    opt.save(&path).unwrap();
    let weights = snapshot(&first);
    drop(opt);

    // A new process: fresh parameters with the saved weights, a fresh optimizer, the state.
    let with_saved_weights = || -> Vec<(String, Tensor)> {
        Problem::params()
            .into_iter()
            .zip(&weights)
            .map(|((name, t), w)| {
                tch::no_grad(|| t.detach().copy_(w));
                (name, t)
            })
            .collect()
    };
    let resumed = with_saved_weights();
    let mut opt = AdamW::new(shallow(&resumed), cfg).unwrap();
    opt.load(&path).unwrap();
    assert_eq!(opt.num_steps(), 3);
    problem.train(&mut opt, &resumed, 3..6);

    // Without the state the run differs, so the comparison above is not vacuous.
    let cold = with_saved_weights();
    let mut cold_opt = AdamW::new(shallow(&cold), cfg).unwrap();
    problem.train(&mut cold_opt, &cold, 3..6);

    for ((a, b), c) in snapshot(&straight)
        .iter()
        .zip(snapshot(&resumed))
        .zip(snapshot(&cold))
    {
        assert!(a.equal(&b), "resumed run differs: {a} vs {b}");
        assert!(!a.equal(&c), "a cold restart should differ");
    }
}

#[test]
fn load_names_missing_extra_and_misshaped_state() {
    let params = Problem::params();
    let opt = AdamW::new(params, AdamWConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    opt.save(&path).unwrap();
    let saved: Vec<String> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(saved.contains(&"exp_avg.head.weight".to_string()));
    assert!(saved.contains(&"exp_avg_sq.head.bias".to_string()));
    assert!(saved.contains(&"step.head.bias".to_string()));
    assert!(saved.contains(&"num_steps".to_string()));

    // head.weight has another shape, head.bias is gone, out.weight is new.
    let other = vec![
        (
            "head.weight".to_string(),
            param(&[0.0; 4], &[4, 1], Kind::Float),
        ),
        (
            "out.weight".to_string(),
            param(&[0.0; 2], &[2], Kind::Float),
        ),
    ];
    let mut opt = AdamW::new(other, AdamWConfig::default()).unwrap();
    let err = opt.load(&path).unwrap_err();
    let OptimError::StateMismatch { problems, .. } = &err else {
        panic!("{err}");
    };
    for expected in [
        "`exp_avg.head.weight` is Float [3, 1], the parameter is Float [4, 1]",
        "`exp_avg_sq.head.weight` is Float [3, 1]",
        "missing `exp_avg.out.weight`",
        "missing `exp_avg_sq.out.weight`",
        "missing `step.out.weight`",
        "extra `exp_avg.head.bias`",
        "extra `exp_avg_sq.head.bias`",
        "extra `step.head.bias`",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in {problems}"
        );
    }
    assert_eq!(opt.num_steps(), 0, "a failed load changes nothing");
}

#[test]
fn parameters_without_gradient_update_as_if_it_were_zero() {
    let used = param(&[1.0, 2.0], &[2], Kind::Float);
    let unused = param(&[3.0, 4.0], &[2], Kind::Float);
    let mut opt = AdamW::new(
        vec![
            ("used.weight".into(), used.shallow_clone()),
            ("unused.weight".into(), unused.shallow_clone()),
        ],
        AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        },
    )
    .unwrap();
    (&used * &used).sum(Kind::Float).backward();
    opt.step(0.1).unwrap();
    // Weight decay only: the moments are zero, so the Adam update is 0 / (0 + eps) = 0.
    let decayed = values(&unused);
    assert!(
        (decayed[0] - 3.0 * (1.0 - 0.1 * 0.5)).abs() < 1e-6,
        "{decayed:?}"
    );
    assert!(
        (decayed[1] - 4.0 * (1.0 - 0.1 * 0.5)).abs() < 1e-6,
        "{decayed:?}"
    );
    assert_eq!(opt.state("unused.weight").unwrap().2, 1);
    assert_eq!(opt.state("used.weight").unwrap().2, 1);
    assert!(values(&used)[0] < 1.0);

    // A zeroed (defined) gradient still decays the weights.
    opt.zero_grad();
    assert_eq!(values(&used.grad()), vec![0.0, 0.0]);
    let before = values(&used);
    opt.step(0.1).unwrap();
    let after = values(&used);
    assert!(after[0].abs() < before[0].abs());
    assert!(opt.step(f64::NAN).is_err());
}

#[test]
fn default_decay_rule_by_name() {
    for name in [
        "encoder.layer.0.attention.query.weight",
        "encoder.layer.0.moe.experts.w1",
        "router.gate.weight",
        "heads.rte.weight",
    ] {
        assert!(default_decays(name), "{name} should decay");
    }
    for name in [
        "bias",
        "heads.rte.bias",
        "encoder.layer.0.attention.output.LayerNorm.weight",
        "blocks.1.layer_norm.weight",
        "ln_f.weight",
        "embeddings.word_embeddings.weight",
        "task_embedding.weight",
        "final_norm.gamma",
        "encoder.layer.1.moe.experts.b1",
        "encoder.layer.1.moe.experts.b2",
    ] {
        assert!(!default_decays(name), "{name} should not decay");
    }
    // "lnx" and "knowledge" are not norm layers; "biases" is not a bias.
    assert!(default_decays("lnx.weight"));
    assert!(default_decays("head.biases"));
}

#[test]
fn works_over_a_var_store_with_an_explicit_decay_set() {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let lin = nn::linear(vs.root() / "proj", 3, 2, Default::default());
    let _ = vs
        .root()
        .var("task_embedding", &[4, 3], nn::Init::Const(0.5));
    let params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let decayed = ["proj.weight"];
    let mut opt =
        AdamW::with_decay_rule(params, AdamWConfig::default(), |n| decayed.contains(&n)).unwrap();
    let (decay, no_decay) = opt.groups();
    assert_eq!(decay.into_iter().collect::<Vec<_>>(), vec!["proj.weight"]);
    assert_eq!(
        no_decay.into_iter().collect::<Vec<_>>(),
        vec!["proj.bias", "task_embedding"]
    );
    let before = lin.ws.detach().copy();
    let x = Tensor::ones([5, 3], (Kind::Float, tch::Device::Cpu));
    nn::Module::forward(&lin, &x).sum(Kind::Float).backward();
    opt.step(1e-2).unwrap();
    assert!(!before.equal(&lin.ws));

    let dup = vec![
        ("a".to_string(), param(&[1.0], &[1], Kind::Float)),
        ("a".to_string(), param(&[1.0], &[1], Kind::Float)),
    ];
    assert!(AdamW::new(dup, AdamWConfig::default()).is_err());
    let bad = AdamWConfig {
        beta2: 1.0,
        ..AdamWConfig::default()
    };
    assert!(AdamW::new(Vec::new(), bad).is_err());
}

/// Partitions give each group of parameters buffers of its own (so data and expert
/// parallelism can reduce them over different ranks) and change nothing in the update; the
/// per-partition squared sums add up to the gradient norm, and clipping to a given norm scales
/// every partition.
#[test]
fn partitions_keep_their_own_buffers_and_the_same_update() {
    let cfg = AdamWConfig::default();
    let make = |partitioned: bool| {
        let a = param(&[0.5, -1.0, 2.0], &[3], Kind::Float);
        let b = param(&[0.1, -0.2], &[2], Kind::Float);
        let params = vec![
            ("dense.weight".to_string(), a.shallow_clone()),
            ("experts.w1".to_string(), b.shallow_clone()),
        ];
        let opt = AdamW::with_partitions(params, cfg, default_decays, |name| {
            usize::from(partitioned && name.starts_with("experts"))
        })
        .unwrap();
        (opt, a, b)
    };
    let (mut one, a1, b1) = make(false);
    let (mut two, a2, b2) = make(true);
    for (opt, a, b) in [(&mut one, &a1, &b1), (&mut two, &a2, &b2)] {
        for _ in 0..3 {
            opt.zero_grad();
            ((a * a).sum(Kind::Float) + (b * 3.0).sum(Kind::Float)).backward();
            opt.step(1e-2).unwrap();
        }
    }
    assert_eq!(values(&a1), values(&a2));
    assert_eq!(values(&b1), values(&b2));
    assert_eq!(one.flat_grads_by_partition().unwrap().len(), 1);
    let parts: Vec<usize> = two
        .flat_grads_by_partition()
        .unwrap()
        .into_iter()
        .map(|(p, g)| {
            assert_eq!(g.size(), [if p == 0 { 3 } else { 2 }]);
            p
        })
        .collect();
    assert_eq!(parts, [0, 1]);

    two.zero_grad();
    ((&a2 * &a2).sum(Kind::Float) + (&b2 * 3.0).sum(Kind::Float)).backward();
    let sums = two.grad_square_sums().unwrap();
    let expected_a: f64 = values(&a2).iter().map(|x| (2.0 * x) * (2.0 * x)).sum();
    assert!(
        (sums[&0] - expected_a).abs() < 1e-4 * expected_a,
        "{sums:?}"
    );
    assert!((sums[&1] - 18.0).abs() < 1e-4, "{sums:?}");
    let norm = two.grad_norm().unwrap();
    assert!((norm - (expected_a + 18.0).sqrt()).abs() < 1e-4);
    two.clip_to_norm(norm, 1.0).unwrap();
    assert!((two.grad_norm().unwrap() - 1.0).abs() < 1e-4);
}

#[test]
fn router_parameters_step_at_the_scaled_rate() {
    let cfg = AdamWConfig {
        router_lr_scale: 3.0,
        ..AdamWConfig::default()
    };
    let w0 = [0.5, -1.0, 2.0, 0.25];
    let gate = param(&w0, &[2, 2], Kind::Double);
    let other = param(&w0, &[2, 2], Kind::Double);
    let mut opt = AdamW::new(
        vec![
            (
                "encoder.layer.1.moe.router.weight".into(),
                gate.shallow_clone(),
            ),
            (
                "encoder.layer.1.moe.experts.w1".into(),
                other.shallow_clone(),
            ),
        ],
        cfg,
    )
    .unwrap();
    let mut router = Reference {
        p: w0.to_vec(),
        m: vec![0.0; 4],
        v: vec![0.0; 4],
        t: 0,
    };
    let mut rest = Reference { ..router.clone() };
    for step in 0..4 {
        let g: Vec<f64> = (0..4).map(|i| ((i + step) % 3) as f64 - 1.0).collect();
        opt.zero_grad();
        let gt = Tensor::from_slice(&g).reshape([2, 2]);
        ((&gate * &gt).sum(Kind::Double) + (&other * &gt).sum(Kind::Double)).backward();
        opt.step(0.01).unwrap();
        router.step(&g, 0.03, &cfg, true);
        rest.step(&g, 0.01, &cfg, true);
        for (got, want) in values(&gate).iter().zip(&router.p) {
            assert!(
                (got - want).abs() < 1e-12,
                "router, step {step}: {got} != {want}"
            );
        }
        for (got, want) in values(&other).iter().zip(&rest.p) {
            assert!(
                (got - want).abs() < 1e-12,
                "experts, step {step}: {got} != {want}"
            );
        }
    }
    let bad = AdamWConfig {
        router_lr_scale: -1.0,
        ..AdamWConfig::default()
    };
    let err = AdamW::new(Vec::new(), bad).unwrap_err().to_string();
    assert!(err.contains("router_lr_scale"), "{err}");
}
