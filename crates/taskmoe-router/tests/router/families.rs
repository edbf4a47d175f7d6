//! The multi-task gate families `mmoe`, `cgc`, `dselect-k`, `expert-choice` and
//! `task-representation` against plain-Rust f64
//! references of their formulas (not the router's code), their validation errors, and the
//! gradients that reach their parameters.

use std::collections::BTreeSet;

use tch::{nn, Device, Kind, Tensor};

use taskmoe_router::{AuxLosses, GateStart, Router, RouterConfig, RouterKind, RouterOutput};

const D: usize = 6;
const TASKS: usize = 3;

fn build(cfg: &RouterConfig) -> (nn::VarStore, Router) {
    let vs = nn::VarStore::new(Device::Cpu);
    let r = Router::new(vs.root() / "router", cfg, D, TASKS).unwrap();
    (vs, r)
}

fn cfg(kind: RouterKind, experts: usize, k: usize) -> RouterConfig {
    RouterConfig {
        kind,
        num_experts: experts,
        k,
        ..RouterConfig::default()
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let t = t.to_kind(Kind::Double);
    let (n, m) = (t.size()[0], t.size()[1]);
    (0..n)
        .map(|i| (0..m).map(|j| t.double_value(&[i, j])).collect())
        .collect()
}

fn var(vs: &nn::VarStore, name: &str) -> Tensor {
    vs.variables()[name].to_kind(Kind::Double)
}

/// `softmax` over the entries of `logits` whose `allowed` is true (0 elsewhere).
fn masked_softmax(logits: &[f64], allowed: &[bool]) -> Vec<f64> {
    let max = logits
        .iter()
        .zip(allowed)
        .filter(|(_, &a)| a)
        .map(|(l, _)| *l)
        .fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logits
        .iter()
        .zip(allowed)
        .map(|(l, &a)| if a { (l - max).exp() } else { 0.0 })
        .collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// `x W_t` for one token, `W [tasks, E, d]`.
fn gate_logits(w: &Tensor, task: i64, x: &[f64]) -> Vec<f64> {
    let e = w.size()[1];
    (0..e)
        .map(|j| {
            (0..D as i64)
                .map(|c| w.double_value(&[task, j, c]) * x[c as usize])
                .sum()
        })
        .collect()
}

fn tokens() -> (Tensor, Tensor) {
    let x = Tensor::randn([9, D as i64], (Kind::Float, Device::Cpu));
    let ids = Tensor::from_slice(&[0i64, 1, 2, 2, 1, 0, 0, 2, 1]);
    (x, ids)
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{what}: got {got:?}, want {want:?}");
    }
}

#[test]
fn mmoe_mixes_every_expert_by_its_tasks_softmax_gate() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(1);
    let (vs, r) = build(&cfg(RouterKind::Mmoe, 4, 4));
    let (x, ids) = tokens();
    let out = r.forward(&x, &ids, true).unwrap();
    let w = var(&vs, "router.weight");
    let (xs, weights, experts) = (
        rows(&x),
        rows(&out.routed.weights),
        rows(&out.routed.experts),
    );
    for (i, xi) in xs.iter().enumerate() {
        let task = ids.int64_value(&[i as i64]);
        let p = masked_softmax(&gate_logits(&w, task, xi), &[true; 4]);
        // Every expert, each weighted by its gate probability.
        let mut by_expert = vec![0.0; 4];
        for (e, wt) in experts[i].iter().zip(&weights[i]) {
            by_expert[*e as usize] = *wt;
        }
        assert_close(&by_expert, &p, "mmoe weights");
        let distinct: BTreeSet<i64> = experts[i].iter().map(|&e| e as i64).collect();
        assert_eq!(distinct.len(), 4, "every expert once");
    }
}

#[test]
fn cgc_routes_each_task_over_its_own_and_the_shared_experts() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(2);
    // 3 tasks x 1 own expert, then 2 shared: task t may use {t, 3, 4}.
    for k in [1, 3] {
        let (vs, r) = build(&cfg(RouterKind::Cgc, 5, k));
        let (x, ids) = tokens();
        let out = r.forward(&x, &ids, false).unwrap();
        let w = var(&vs, "router.weight");
        let (xs, probs, weights, experts) = (
            rows(&x),
            rows(&out.routed.probs),
            rows(&out.routed.weights),
            rows(&out.routed.experts),
        );
        for (i, xi) in xs.iter().enumerate() {
            let task = ids.int64_value(&[i as i64]);
            let allowed: Vec<bool> = (0..5).map(|e| e == task || e >= 3).collect();
            let p = masked_softmax(&gate_logits(&w, task, xi), &allowed);
            assert_close(&probs[i], &p, "cgc probabilities");
            for e in &experts[i] {
                assert!(allowed[*e as usize], "task {task} chose expert {e}");
            }
            if k == 3 {
                // The paper's dense mixture: the three allowed experts at their probabilities.
                let mut by_expert = vec![0.0; 5];
                for (e, wt) in experts[i].iter().zip(&weights[i]) {
                    by_expert[*e as usize] = *wt;
                }
                assert_close(&by_expert, &p, "cgc dense weights");
            }
        }
    }
}

#[test]
fn cgc_and_mmoe_and_dselect_k_refuse_what_they_cannot_do_naming_the_key() {
    let message = |cfg: RouterConfig| {
        let vs = nn::VarStore::new(Device::Cpu);
        Router::new(vs.root() / "router", &cfg, D, TASKS)
            .unwrap_err()
            .to_string()
    };
    let m = message(cfg(RouterKind::Mmoe, 4, 1));
    assert!(
        m.contains("router.k") && m.contains("num_experts (4)"),
        "{m}"
    );
    let m = message(cfg(RouterKind::Cgc, 3, 1));
    assert!(
        m.contains("router.num_experts") && m.contains("more than 3"),
        "{m}"
    );
    let m = message(cfg(RouterKind::Cgc, 5, 4));
    assert!(m.contains("router.k") && m.contains("at most 3"), "{m}");
    let m = message(cfg(RouterKind::DselectK, 6, 2));
    assert!(
        m.contains("router.num_experts") && m.contains("power of two"),
        "{m}"
    );
    let m = message(RouterConfig {
        bias_update_rate: 0.01,
        ..cfg(RouterKind::DselectK, 8, 2)
    });
    assert!(m.contains("router.bias_update_rate"), "{m}");
}

/// The paper's smooth step.
fn smooth_step(z: f64, gamma: f64) -> f64 {
    if z <= -gamma / 2.0 {
        0.0
    } else if z >= gamma / 2.0 {
        1.0
    } else {
        -2.0 / gamma.powi(3) * z.powi(3) + 1.5 / gamma * z + 0.5
    }
}

/// DSelect-k's gate of one task from its codes `[k][m]` and selector logits `[k]`, and the
/// mean entropy of its selectors.
fn dselect_gate(codes: &[Vec<f64>], logits: &[f64], experts: usize, gamma: f64) -> (Vec<f64>, f64) {
    let mix = masked_softmax(logits, &vec![true; logits.len()]);
    let mut gate = vec![0.0; experts];
    let mut entropy = 0.0;
    for (code, a) in codes.iter().zip(&mix) {
        let r: Vec<f64> = (0..experts)
            .map(|e| {
                code.iter()
                    .enumerate()
                    .map(|(j, &z)| match (e >> j) & 1 {
                        1 => smooth_step(z, gamma),
                        _ => 1.0 - smooth_step(z, gamma),
                    })
                    .product()
            })
            .collect();
        entropy -= r
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|p| p * p.ln())
            .sum::<f64>();
        for (g, p) in gate.iter_mut().zip(&r) {
            *g += a * p;
        }
    }
    (gate, entropy / codes.len() as f64)
}

fn dselect_codes(vs: &nn::VarStore) -> (Tensor, Tensor) {
    let v = vs.variables();
    (
        v["router.codes"].shallow_clone(),
        v["router.selector_logits"].shallow_clone(),
    )
}

fn task_reference(codes: &Tensor, logits: &Tensor, task: i64, gamma: f64) -> (Vec<f64>, f64) {
    let (k, m) = (codes.size()[1], codes.size()[2]);
    let c: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..m).map(|j| codes.double_value(&[task, i, j])).collect())
        .collect();
    let a: Vec<f64> = (0..k).map(|i| logits.double_value(&[task, i])).collect();
    dselect_gate(&c, &a, 1 << m, gamma)
}

#[test]
fn dselect_k_matches_its_formula_and_sends_tokens_to_every_weighted_expert() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(3);
    let gamma = 2.0;
    let c = RouterConfig {
        smooth_step_gamma: gamma,
        ..cfg(RouterKind::DselectK, 8, 2)
    };
    let (vs, r) = build(&c);
    let (codes, logits) = dselect_codes(&vs);
    assert_eq!(codes.size(), [3, 2, 3]);
    // Spread the codes over the whole step (the initial ones sit near 0), some saturated.
    tch::no_grad(|| {
        codes
            .shallow_clone()
            .copy_(&(codes.rand_like() * 3.0 - 1.5));
        logits.shallow_clone().copy_(&logits.randn_like());
    });
    let (x, ids) = tokens();
    let out = r.forward(&x, &ids, true).unwrap();
    let (probs, weights, experts) = (
        rows(&out.routed.probs),
        rows(&out.routed.weights),
        rows(&out.routed.experts),
    );
    let mut entropy = 0.0;
    for t in 0..3 {
        entropy += task_reference(&codes, &logits, t, gamma).1 / 3.0;
    }
    let got = out.selection_entropy.as_ref().unwrap().double_value(&[]);
    assert!(
        (got - entropy).abs() < 1e-5,
        "entropy {got} against {entropy}"
    );
    for i in 0..9 {
        let task = ids.int64_value(&[i as i64]);
        let (gate, _) = task_reference(&codes, &logits, task, gamma);
        assert_close(&probs[i], &gate, "dselect-k gate");
        assert!((gate.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Every expert with weight goes, at that weight; the weights sum to 1.
        let mut by_expert = vec![0.0; 8];
        for (e, wt) in experts[i].iter().zip(&weights[i]) {
            by_expert[*e as usize] += *wt;
        }
        assert_close(&by_expert, &gate, "dselect-k weights");
    }
    // Saturated codes select exactly one expert each: k = 2 experts per task at most.
    tch::no_grad(|| {
        codes.shallow_clone().copy_(&(codes.sign() * gamma));
    });
    let out = r.forward(&x, &ids, true).unwrap();
    assert!(
        out.routed.experts.size()[1] <= 2,
        "{:?}",
        out.routed.experts.size()
    );
    assert!(out.selection_entropy.unwrap().double_value(&[]).abs() < 1e-9);
}

/// The multi-task gate families with a valid (experts, k) each.
const FAMILIES: [(RouterKind, usize, usize); 5] = [
    (RouterKind::Mmoe, 4, 4),
    (RouterKind::Cgc, 5, 2),
    (RouterKind::DselectK, 4, 2),
    (RouterKind::ExpertChoice, 4, 2),
    (RouterKind::TaskRepresentation, 4, 1),
];

/// Every (kind, experts, k) of [`FAMILIES`] and the four original kinds, under both gate
/// starts: the router built for each.
fn every_router() -> Vec<(RouterKind, GateStart, nn::VarStore, Router)> {
    let originals = [
        (RouterKind::Token, 4, 1),
        (RouterKind::TaskConcat, 4, 1),
        (RouterKind::PerTask, 4, 1),
        (RouterKind::TaskLevel, 4, 1),
    ];
    originals
        .into_iter()
        .chain(FAMILIES)
        .flat_map(|(kind, experts, k)| {
            [GateStart::Independent, GateStart::Shared].map(|start| {
                let (vs, r) = build(&RouterConfig {
                    gate_start: start,
                    ..cfg(kind, experts, k)
                });
                (kind, start, vs, r)
            })
        })
        .collect()
}

/// The combine weights of a routing: expert choice's, else the routed slots'.
fn combine_weights(out: &RouterOutput) -> Tensor {
    match &out.expert_choice {
        Some(choice) => choice.weights.shallow_clone(),
        None => out.routed.weights.shallow_clone(),
    }
}

#[test]
fn gradients_reach_every_family_gate_and_the_selection_entropy_its_codes() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(4);
    for (kind, experts, k) in FAMILIES {
        for start in [GateStart::Independent, GateStart::Shared] {
            let c = RouterConfig {
                gate_start: start,
                ..cfg(kind, experts, k)
            };
            let (vs, r) = build(&c);
            let (x, ids) = tokens();
            if let Some(state) = r.task_states() {
                // Non-zero task states, so the map M has something to learn from.
                let (t, d) = (state.size()[0], state.size()[1]);
                r.observe_task_states(
                    &Tensor::randn([t, d], (Kind::Float, Device::Cpu)),
                    &Tensor::ones([t], (Kind::Float, Device::Cpu)),
                )
                .unwrap();
            }
            let out = r.forward(&x, &ids, true).unwrap();
            // A task loss through the weights plus the auxiliary losses.
            let weights = combine_weights(&out);
            let probe = weights.randn_like();
            let aux = AuxLosses::compute(&out, &ids, TASKS).unwrap();
            let loss = (&weights * probe).sum(Kind::Float) + aux.weighted(&c);
            loss.backward();
            for (name, v) in vs.trainable_variables().iter().enumerate() {
                let g = v.grad();
                assert!(
                    g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                    "{kind:?} {start:?}: no gradient reaches trainable variable {name}"
                );
            }
        }
    }
}

#[test]
fn shared_starts_give_every_task_the_same_gate() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(5);
    let x = Tensor::randn([4, D as i64], (Kind::Float, Device::Cpu));
    for (kind, experts, k) in [
        (RouterKind::Mmoe, 4, 4),
        (RouterKind::Cgc, 5, 2),
        (RouterKind::DselectK, 4, 2),
    ] {
        for (start, equal) in [(GateStart::Shared, true), (GateStart::Independent, false)] {
            let c = RouterConfig {
                gate_start: start,
                ..cfg(kind, experts, k)
            };
            let (_vs, r) = build(&c);
            let probs = |t: i64| {
                let ids = Tensor::full([4], t, (Kind::Int64, Device::Cpu));
                r.forward(&x, &ids, false).unwrap().routed.probs
            };
            // cgc's masks differ by task by design: compare the shared experts' logits only.
            let (a, b) = match kind {
                RouterKind::Cgc => (
                    r.forward(&x, &Tensor::zeros([4], (Kind::Int64, Device::Cpu)), false)
                        .unwrap()
                        .logits
                        .narrow(1, 3, 2),
                    r.forward(&x, &Tensor::ones([4], (Kind::Int64, Device::Cpu)), false)
                        .unwrap()
                        .logits
                        .narrow(1, 3, 2),
                ),
                _ => (probs(0), probs(1)),
            };
            assert_eq!(a.equal(&b), equal, "{kind:?} {start:?}");
        }
    }
}

/// Expert choice by hand: per task `t` with `n_t` tokens, each expert's `ceil(k n_t / E)`
/// tokens of largest affinity (`softmax(x W)`), as a sorted list of (token, weight) per expert.
fn expert_choice_reference(
    probs: &[Vec<f64>],
    ids: &[i64],
    k: usize,
    renormalize: bool,
) -> Vec<Vec<(usize, f64)>> {
    let e = probs[0].len();
    let mut chosen: Vec<Vec<(usize, f64)>> = vec![Vec::new(); e];
    for task in 0..TASKS as i64 {
        let members: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == task).collect();
        let c = (k * members.len()).div_ceil(e).min(members.len());
        for (expert, list) in chosen.iter_mut().enumerate() {
            let mut ranked = members.clone();
            ranked.sort_by(|&a, &b| probs[b][expert].total_cmp(&probs[a][expert]));
            list.extend(ranked[..c].iter().map(|&i| (i, probs[i][expert])));
        }
    }
    if renormalize {
        let mut sums = vec![0.0; ids.len()];
        for list in &chosen {
            for &(i, w) in list {
                sums[i] += w;
            }
        }
        for list in &mut chosen {
            for (i, w) in list.iter_mut() {
                *w /= sums[*i];
            }
        }
    }
    for list in &mut chosen {
        list.sort_by_key(|&(i, _)| i);
    }
    chosen
}

#[test]
fn expert_choice_takes_each_tasks_tokens_of_largest_affinity_per_expert() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(6);
    for (k, renormalize) in [(1, true), (2, false), (2, true)] {
        let c = RouterConfig {
            renormalize,
            ..cfg(RouterKind::ExpertChoice, 4, k)
        };
        let (vs, r) = build(&c);
        let (x, ids) = tokens();
        let out = r.forward(&x, &ids, false).unwrap();
        let w = var(&vs, "router.weight");
        let xs = rows(&x);
        let probs: Vec<Vec<f64>> = xs
            .iter()
            .map(|xi| {
                let logits: Vec<f64> = (0..4)
                    .map(|e| {
                        (0..D as i64)
                            .map(|c| w.double_value(&[e, c]) * xi[c as usize])
                            .sum()
                    })
                    .collect();
                masked_softmax(&logits, &[true; 4])
            })
            .collect();
        let id_list: Vec<i64> = Vec::try_from(&ids).unwrap();
        let want = expert_choice_reference(&probs, &id_list, k, renormalize);
        let choice = out.expert_choice.expect("expert choice");
        let tokens: Vec<i64> = Vec::try_from(&choice.tokens).unwrap();
        let weights: Vec<f64> = Vec::try_from(&choice.weights.to_kind(Kind::Double)).unwrap();
        // 3 tasks of 3 tokens: ceil(k * 3 / 4) each.
        assert_eq!(choice.per_expert, 3 * (3 * k).div_ceil(4));
        for (expert, want) in want.iter().enumerate() {
            let span = expert * choice.per_expert..(expert + 1) * choice.per_expert;
            let mut got: Vec<(usize, f64)> =
                span.map(|s| (tokens[s] as usize, weights[s])).collect();
            got.sort_by_key(|&(i, _)| i);
            assert_eq!(
                got.iter().map(|g| g.0).collect::<Vec<_>>(),
                want.iter().map(|g| g.0).collect::<Vec<_>>(),
                "k {k}: expert {expert}'s tokens"
            );
            assert_close(
                &got.iter().map(|g| g.1).collect::<Vec<_>>(),
                &want.iter().map(|g| g.1).collect::<Vec<_>>(),
                "expert-choice weights",
            );
        }
        // Balanced by construction: no load-balancing loss.
        let aux = AuxLosses::compute(&out_again(&r, &x, &ids), &ids, TASKS).unwrap();
        assert_eq!(aux.load_balance.double_value(&[]), 0.0);
    }
}

fn out_again(r: &Router, x: &Tensor, ids: &Tensor) -> taskmoe_router::RouterOutput {
    r.forward(x, ids, true).unwrap()
}

#[test]
fn task_representation_routes_by_token_and_task_state_and_tracks_the_states() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(7);
    let c = RouterConfig {
        task_state_momentum: 0.25,
        ..cfg(RouterKind::TaskRepresentation, 4, 1)
    };
    let (vs, r) = build(&c);
    assert!(r.observes_task_states());
    let state = r.task_states().unwrap().shallow_clone();
    assert_eq!(state.size(), [TASKS as i64, D as i64]);
    let (x, ids) = tokens();
    // States from a batch: task 0 and 2 present, task 1 absent.
    let sums = Tensor::randn([TASKS as i64, D as i64], (Kind::Float, Device::Cpu));
    let counts = Tensor::from_slice(&[2f32, 0.0, 4.0]);
    r.observe_task_states(&sums, &counts).unwrap();
    let after = rows(&state);
    let sum_rows = rows(&sums);
    for (t, n) in [(0usize, 2.0), (2, 4.0)] {
        let want: Vec<f64> = sum_rows[t].iter().map(|s| 0.25 * s / n).collect();
        assert_close(&after[t], &want, "state moved by the momentum from zero");
    }
    assert!(
        after[1].iter().all(|&v| v == 0.0),
        "an absent task keeps its state"
    );
    // Logits: x W + s_t M.
    let out = r.forward(&x, &ids, false).unwrap();
    let (w, m) = (var(&vs, "router.weight"), var(&vs, "router.task_map"));
    let (xs, logits) = (rows(&x), rows(&out.logits));
    for (i, xi) in xs.iter().enumerate() {
        let t = ids.int64_value(&[i as i64]) as usize;
        let want: Vec<f64> = (0..4)
            .map(|e| {
                (0..D)
                    .map(|c| {
                        w.double_value(&[e, c as i64]) * xi[c]
                            + m.double_value(&[e, c as i64]) * after[t][c]
                    })
                    .sum()
            })
            .collect();
        assert_close(&logits[i], &want, "task-representation logits");
    }
    // Calibration: the exact mean of everything observed, whatever the momentum.
    r.begin_calibration();
    assert!(r.is_calibrating());
    let ones = Tensor::ones([TASKS as i64, D as i64], (Kind::Float, Device::Cpu));
    r.observe_task_states(&(&ones * 3.0), &Tensor::from_slice(&[1f32, 0.0, 0.0]))
        .unwrap();
    r.observe_task_states(&(&ones * 5.0), &Tensor::from_slice(&[3f32, 0.0, 0.0]))
        .unwrap();
    r.end_calibration();
    assert!(!r.is_calibrating());
    let calibrated = rows(&state);
    assert_close(&calibrated[0], &[2.0; D], "(3 + 5) / (1 + 3)");
    assert_close(&calibrated[2], &after[2], "task 2 not calibrated, kept");
    // A new task reuses a seen task's state.
    assert!(r.init_task_from(1, &[(0, 1.0)]).unwrap());
    assert_close(&rows(&state)[1], &[2.0; D], "copied state");
}

#[test]
fn the_soft_to_sparse_warm_up_lowers_k_linearly_in_training_only() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(8);
    let c = RouterConfig {
        k_warmup_steps: 4,
        ..cfg(RouterKind::PerTask, 8, 1)
    };
    let (_vs, r) = build(&c);
    let (x, ids) = tokens();
    for (step, k) in [(0, 8), (1, 7), (2, 5), (3, 3), (4, 1), (100, 1)] {
        r.set_training_step(step);
        assert_eq!(r.training_k(), k, "step {step}");
        let out = r.forward(&x, &ids, true).unwrap();
        assert_eq!(out.routed.experts.size()[1], k as i64, "step {step}");
        if k > 1 {
            // A renormalised dense-to-sparse mixture: the weights of a token sum to 1.
            let sums = out.routed.weights.sum_dim_intlist(-1, false, Kind::Float);
            assert!(sums.allclose(&sums.ones_like(), 1e-5, 1e-5, false));
        }
        r.set_training_step(step);
        let eval = r.forward(&x, &ids, false).unwrap();
        assert_eq!(eval.routed.experts.size()[1], 1, "evaluation uses k");
    }
    // cgc warms up over what a task may choose: 1 own + 2 shared.
    let c = RouterConfig {
        k_warmup_steps: 2,
        ..cfg(RouterKind::Cgc, 5, 1)
    };
    let (_vs, r) = build(&c);
    r.set_training_step(0);
    assert_eq!(r.training_k(), 3);
    // Kinds that do not choose a token's top-k refuse it, naming the key.
    for kind in [
        RouterKind::DselectK,
        RouterKind::ExpertChoice,
        RouterKind::Mmoe,
    ] {
        let c = RouterConfig {
            k_warmup_steps: 2,
            ..cfg(kind, 4, if kind == RouterKind::Mmoe { 4 } else { 1 })
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let err = Router::new(vs.root() / "router", &c, D, TASKS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("router.k_warmup_steps"), "{kind:?}: {err}");
    }
}

#[test]
fn a_task_indexed_variable_gets_gradient_only_in_the_rows_of_the_tasks_routed() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(6);
    for (kind, start, vs, r) in every_router() {
        let indexed = r.task_indexed_variables();
        // Expert choice and task-representation see the task through the batch's groups and
        // the task states (not trained), so none of their variables is per task.
        let none = matches!(
            kind,
            RouterKind::Token | RouterKind::ExpertChoice | RouterKind::TaskRepresentation
        );
        assert_eq!(indexed.is_empty(), none, "{kind:?}");
        // Every token is task 1's.
        let x = Tensor::randn([6, D as i64], (Kind::Float, Device::Cpu));
        let ids = Tensor::from_slice(&[1i64; 6]);
        let weights = combine_weights(&r.forward(&x, &ids, true).unwrap());
        (&weights * weights.randn_like())
            .sum(Kind::Float)
            .backward();
        let variables = vs.variables();
        for name in indexed {
            let v = &variables[&format!("router.{name}")];
            assert_eq!(v.size()[0], TASKS as i64, "{kind:?} {name}");
            let g = v.grad();
            let mass = |t: i64| g.get(t).abs().sum(Kind::Float).double_value(&[]);
            assert!(
                mass(1) > 0.0,
                "{kind:?} {start:?}: no gradient in task 1's row of {name}"
            );
            assert_eq!(
                mass(0) + mass(2),
                0.0,
                "{kind:?} {start:?}: {name} moved other tasks' rows"
            );
        }
    }
}
