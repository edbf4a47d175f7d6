//! `unused_experts = "skip"`: equal to `update` where every expert is used, lazy moments
//! (against an f64 transcription of the rule) where some are not.

use taskmoe_optim::{is_expert_param, AdamW, AdamWConfig, UnusedExperts};
use tch::{Kind, Tensor};

const EXPERTS: i64 = 4;

/// Parameter names and shapes: two stacked expert tensors beside ordinary ones, in both decay
/// groups.
const SHAPES: [(&str, &[i64]); 4] = [
    ("moe.experts.w1", &[EXPERTS, 3, 5]),
    ("moe.experts.b1", &[EXPERTS, 5]),
    ("moe.router.weight", &[EXPERTS, 3]),
    ("head.bias", &[3]),
];

fn config(unused_experts: UnusedExperts) -> AdamWConfig {
    AdamWConfig {
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-6,
        weight_decay: 0.1,
        unused_experts,
        ..AdamWConfig::default()
    }
}

/// The parameters (the same values for every `kind` and call) and an optimizer over them.
fn model(kind: Kind, unused_experts: UnusedExperts) -> (Vec<Tensor>, AdamW) {
    let params: Vec<Tensor> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, (_, shape))| {
            let n: i64 = shape.iter().product();
            let data: Vec<f64> = (0..n)
                .map(|j| (((j * 13 + i as i64 * 5) % 17) as f64 - 8.0) / 8.0)
                .collect();
            Tensor::from_slice(&data)
                .to_kind(kind)
                .reshape(*shape)
                .set_requires_grad(true)
        })
        .collect();
    let named = SHAPES
        .iter()
        .zip(&params)
        .map(|((name, _), p)| (name.to_string(), p.shallow_clone()))
        .collect();
    let opt = AdamW::new(named, config(unused_experts)).unwrap();
    (params, opt)
}

/// The gradient of parameter `i` at `step`: a fixed non-zero pattern, with the rows of the
/// experts not in `used` zero for expert parameters.
fn gradient(i: usize, step: usize, used: &[bool]) -> Vec<f64> {
    let (name, shape) = SHAPES[i];
    let n: i64 = shape.iter().product();
    let row = n / shape[0];
    (0..n)
        .map(|j| {
            let expert = (j / row) as usize;
            if is_expert_param(name) && !used[expert] {
                0.0
            } else {
                ((j * 7 + step as i64 * 3 + i as i64) % 9) as f64 / 4.0 - 1.1
            }
        })
        .collect()
}

/// One step: `loss = sum_i <p_i, G_i>` gives the gradients [`gradient`] exactly.
fn step(params: &[Tensor], opt: &mut AdamW, step: usize, used: &[bool], lr: f64) {
    opt.zero_grad();
    let kind = params[0].kind();
    let loss = params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let g = Tensor::from_slice(&gradient(i, step, used))
                .to_kind(kind)
                .reshape(p.size());
            (p * g).sum(kind)
        })
        .reduce(|a, b| a + b)
        .unwrap();
    loss.backward();
    opt.step(lr).unwrap();
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn expert_params_are_named_by_a_segment() {
    assert!(is_expert_param("blocks.1.moe.experts.w1"));
    assert!(is_expert_param("experts.b2"));
    assert!(!is_expert_param(
        "blocks.1.moe.shared_expert.output.dense.weight"
    ));
    assert!(!is_expert_param("blocks.1.moe.router.num_experts_gate"));
}

#[test]
fn skip_equals_update_bit_for_bit_when_every_expert_is_used() {
    let all = [true; EXPERTS as usize];
    let (update_params, mut update) = model(Kind::Float, UnusedExperts::Update);
    let (skip_params, mut skip) = model(Kind::Float, UnusedExperts::Skip);
    for s in 0..6 {
        let lr = 0.01 * (s + 1) as f64;
        step(&update_params, &mut update, s, &all, lr);
        step(&skip_params, &mut skip, s, &all, lr);
    }
    for ((name, _), (a, b)) in SHAPES.iter().zip(update_params.iter().zip(&skip_params)) {
        assert!(a.equal(b), "{name}");
        let (ma, va, ta) = update.state(name).unwrap();
        let (mb, vb, tb) = skip.state(name).unwrap();
        assert!(ma.equal(mb) && va.equal(vb) && ta == tb, "{name} state");
    }
}

/// Which experts each step uses: every expert is unused at some step, expert 3 at all but the
/// last.
const USED: [[bool; 4]; 5] = [
    [true, false, true, false],
    [false, true, true, false],
    [true, true, false, false],
    [false, false, true, false],
    [true, true, true, true],
];

#[test]
fn skip_leaves_unused_experts_untouched_and_matches_lazy_moments() {
    let cfg = config(UnusedExperts::Skip);
    let (params, mut opt) = model(Kind::Double, UnusedExperts::Skip);
    // The f64 rule: every element of a used row (and of every non-expert parameter) takes
    // PyTorch's AdamW step with the parameter's step count t; other rows keep p, m and v.
    let mut p: Vec<Vec<f64>> = params.iter().map(values).collect();
    let mut m: Vec<Vec<f64>> = p.iter().map(|x| vec![0.0; x.len()]).collect();
    let mut v = m.clone();
    for (s, used) in USED.iter().enumerate() {
        let before: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = SHAPES
            .iter()
            .zip(&params)
            .map(|((name, _), x)| {
                let (m, v, _) = opt.state(name).unwrap();
                (values(x), values(m), values(v))
            })
            .collect();
        let lr = 0.02;
        step(&params, &mut opt, s, used, lr);
        let t = s as i32 + 1;
        let (bc1, bc2) = (1.0 - cfg.beta1.powi(t), 1.0 - cfg.beta2.powi(t));
        for (i, (name, shape)) in SHAPES.iter().enumerate() {
            let g = gradient(i, s, used);
            let row = g.len() / shape[0] as usize;
            let decay = taskmoe_optim::default_decays(name);
            for j in 0..g.len() {
                let active = !is_expert_param(name) || used[j / row];
                if !active {
                    // Untouched, bit for bit.
                    assert_eq!(
                        values(&params[i])[j],
                        before[i].0[j],
                        "{name}[{j}] step {s}"
                    );
                    let (ms, vs, _) = opt.state(name).unwrap();
                    assert_eq!(values(ms)[j], before[i].1[j]);
                    assert_eq!(values(vs)[j], before[i].2[j]);
                    continue;
                }
                if decay {
                    p[i][j] *= 1.0 - lr * cfg.weight_decay;
                }
                m[i][j] = cfg.beta1 * m[i][j] + (1.0 - cfg.beta1) * g[j];
                v[i][j] = cfg.beta2 * v[i][j] + (1.0 - cfg.beta2) * g[j] * g[j];
                p[i][j] -= lr * (m[i][j] / bc1) / ((v[i][j] / bc2).sqrt() + cfg.eps);
            }
            for (got, want) in values(&params[i]).iter().zip(&p[i]) {
                assert!(
                    (got - want).abs() < 1e-12,
                    "{name} step {s}: {got} != {want}"
                );
            }
            assert_eq!(opt.state(name).unwrap().2, t as u64);
        }
    }
}

#[test]
fn update_moves_unused_experts_where_skip_does_not() {
    let used = [true, false, true, false];
    let (update_params, mut update) = model(Kind::Float, UnusedExperts::Update);
    let (skip_params, mut skip) = model(Kind::Float, UnusedExperts::Skip);
    let before = update_params[0].copy();
    step(&update_params, &mut update, 0, &used, 0.1);
    step(&skip_params, &mut skip, 0, &used, 0.1);
    // Expert 1 of w1 (decayed): weight decay moves it under `update` only.
    assert!(!update_params[0].get(1).equal(&before.get(1)));
    assert!(skip_params[0].get(1).equal(&before.get(1)));
    // The used experts take the same step under both.
    assert!(update_params[0].get(0).equal(&skip_params[0].get(0)));
    assert!(update_params[0].get(2).equal(&skip_params[0].get(2)));
}
