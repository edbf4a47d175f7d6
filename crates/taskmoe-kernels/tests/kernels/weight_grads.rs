//! Weight gradients accumulated in place (`WeightGrads::InPlace`) against autograd's own
//! (`WeightGrads::Autograd`): the same outputs and row gradients bit for bit, the same weight
//! and bias gradients (bit for bit into a zero `.grad`, to rounding when accumulating), on
//! both GEMM paths, with empty groups; gradients accumulate over several backward passes into
//! the same buffer; the cases it does not apply to fall back to autograd.

use tch::{Device, Kind, Tensor};

use taskmoe_kernels::{
    grad_enabled, grouped_linear_with, in_place_applies, is_leaf, GemmPath, GroupLayout,
    WeightGrads,
};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// Leaves `x`, `w`, `b` drawn from `seed` for `counts` rows of `d_in -> d_out`.
fn leaves(seed: i64, counts: &[usize], d_in: i64, d_out: i64) -> [Tensor; 3] {
    tch::manual_seed(seed);
    let (g, r) = (counts.len() as i64, counts.iter().sum::<usize>() as i64);
    [
        Tensor::randn([r, d_in], CPU).set_requires_grad(true),
        Tensor::randn([g, d_in, d_out], CPU).set_requires_grad(true),
        Tensor::randn([g, d_out], CPU).set_requires_grad(true),
    ]
}

/// Output and the gradients of `x`, `w`, `b` after `passes` backward passes of `(y * probe)`.
fn run(
    counts: &[usize],
    path: GemmPath,
    grads: WeightGrads,
    passes: usize,
) -> (Tensor, [Tensor; 3]) {
    let [x, w, b] = leaves(3, counts, 16, 8);
    let layout = GroupLayout::for_path(counts, Device::Cpu, path);
    let probe = Tensor::randn([x.size()[0], 8], CPU);
    let mut y = Tensor::new();
    for _ in 0..passes {
        y = grouped_linear_with(&x, &w, Some(&b), &layout, path, grads).unwrap();
        (&y * &probe).sum(Kind::Float).backward();
    }
    (y.detach(), [x.grad(), w.grad(), b.grad()])
}

/// `grouped_linear_with` on the grouped GEMM with gradients in place.
fn in_place(x: &Tensor, w: &Tensor, b: &Tensor, layout: &GroupLayout) -> Tensor {
    grouped_linear_with(
        x,
        w,
        Some(b),
        layout,
        GemmPath::Grouped,
        WeightGrads::InPlace,
    )
    .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn in_place_equals_autograd_on_both_paths_with_empty_groups() {
    let _rng = taskmoe_device::lock_global_rng();
    for counts in [
        vec![5usize, 7, 3, 9],
        vec![0, 20, 0, 1],
        vec![0, 0, 6],
        vec![4],
    ] {
        for path in [GemmPath::Grouped, GemmPath::Loop] {
            let (y_a, g_a) = run(&counts, path, WeightGrads::Autograd, 1);
            let (y_i, g_i) = run(&counts, path, WeightGrads::InPlace, 1);
            assert!(y_a.equal(&y_i), "{counts:?} {path:?}: outputs");
            assert!(g_a[0].equal(&g_i[0]), "{counts:?} {path:?}: row gradients");
            for (name, a, i) in [("w", &g_a[1], &g_i[1]), ("b", &g_a[2], &g_i[2])] {
                let diff = max_diff(a, i);
                assert!(
                    diff < 1e-5,
                    "{counts:?} {path:?}: {name}.grad differs by {diff}"
                );
            }
            // Empty groups get exactly nothing.
            for (g, _) in counts.iter().enumerate().filter(|(_, &c)| c == 0) {
                let g = g as i64;
                assert_eq!(g_i[1].get(g).abs().sum(Kind::Float).double_value(&[]), 0.0);
                assert_eq!(g_i[2].get(g).abs().sum(Kind::Float).double_value(&[]), 0.0);
            }
        }
    }
}

#[test]
fn the_loop_path_gives_the_weight_gradients_bit_for_bit() {
    let _rng = taskmoe_device::lock_global_rng();
    let counts = [3usize, 0, 11, 2];
    let (_, a) = run(&counts, GemmPath::Loop, WeightGrads::Autograd, 1);
    let (_, i) = run(&counts, GemmPath::Loop, WeightGrads::InPlace, 1);
    assert!(a[1].equal(&i[1]), "w.grad");
    assert!(a[2].equal(&i[2]), "b.grad");
}

#[test]
fn gradients_accumulate_over_backward_passes_in_the_same_buffer() {
    let _rng = taskmoe_device::lock_global_rng();
    let counts = [4usize, 0, 9];
    let (_, once) = run(&counts, GemmPath::Grouped, WeightGrads::InPlace, 1);
    let (_, thrice) = run(&counts, GemmPath::Grouped, WeightGrads::InPlace, 3);
    for (name, a, b) in [("w", &once[1], &thrice[1]), ("b", &once[2], &thrice[2])] {
        let diff = max_diff(&(a * 3.0), b);
        assert!(
            diff < 1e-4,
            "{name}: three passes differ from 3x one by {diff}"
        );
    }
    // An existing `.grad` (say an optimizer's flat buffer view) is written in place.
    let [x, w, b] = leaves(5, &counts, 16, 8);
    let layout = GroupLayout::from_counts(&counts, Device::Cpu);
    let y = in_place(&x, &w, &b, &layout);
    y.sum(Kind::Float).backward();
    let ptr = w.grad().data_ptr();
    let y = in_place(&x, &w, &b, &layout);
    y.sum(Kind::Float).backward();
    assert_eq!(
        w.grad().data_ptr(),
        ptr,
        "the second pass wrote a new gradient tensor"
    );
}

#[test]
fn it_applies_to_leaves_under_grad_mode_and_falls_back_elsewhere() {
    let _rng = taskmoe_device::lock_global_rng();
    let counts = [2usize, 5];
    let [x, w, b] = leaves(7, &counts, 8, 8);
    assert!(is_leaf(&w) && !is_leaf(&(&w * 2.0)));
    assert!(grad_enabled() && !tch::no_grad(grad_enabled));
    assert!(in_place_applies(&x, &w, Some(&b)));
    assert!(
        !tch::no_grad(|| in_place_applies(&x, &w, Some(&b))),
        "no_grad"
    );
    let view = w.narrow(0, 0, 2);
    assert!(
        !in_place_applies(&x, &view, Some(&b)),
        "a view of a parameter"
    );
    assert!(
        !in_place_applies(&x.to_kind(Kind::Double), &w, None),
        "dtypes differ"
    );
    // A view (expert parallelism's shard) still gets its gradient, through autograd.
    let layout = GroupLayout::from_counts(&counts, Device::Cpu);
    let y = in_place(&x, &view, &b, &layout);
    // (Not `y.sum()`: autograd's grouped GEMM refuses the broadcast gradient that makes.)
    (y * Tensor::ones([7, 8], CPU)).sum(Kind::Float).backward();
    assert!(w.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    // Without gradients the output is the same and carries no graph.
    let plain = in_place(&x, &w, &b, &layout);
    let quiet = tch::no_grad(|| in_place(&x, &w, &b, &layout));
    assert!(plain.detach().equal(&quiet));
    assert!(!quiet.requires_grad());
}
