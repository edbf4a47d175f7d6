//! libtorch's grouped GEMM (`grouped_mm`) equals the per-group loop (`grouped_matmul`) in
//! outputs and in the gradients of rows, weights and biases, on CPU bit for bit: balanced and
//! skewed groups, empty groups, transposed weights, and the layouts it refuses (which fall
//! back to the loop); the dispatch plan's device-built layout equals one built from counts.

use tch::{Device, Kind, Tensor};

use taskmoe_kernels::{
    grouped_matmul, grouped_mm, grouped_mm_supported, Capacity, DispatchPlan, GroupLayout,
};

fn grads(x: &Tensor, w: &Tensor, b: &Tensor, y: &Tensor, probe: &Tensor) -> Vec<Tensor> {
    Tensor::run_backward(&[(y * probe).sum(Kind::Float)], &[x, w, b], false, false)
}

#[test]
fn grouped_mm_equals_the_loop_in_outputs_and_gradients() {
    let _rng = taskmoe_device::lock_global_rng();
    tch::manual_seed(1);
    let cpu = (Kind::Float, Device::Cpu);
    for (counts, d_in, d_out, transposed) in [
        (vec![5usize, 7, 3, 9], 8i64, 12i64, false),
        (vec![0, 20, 0, 1], 16, 4, false),
        (vec![6, 6], 8, 16, true),
        (vec![4, 0, 4], 6, 8, false), // d_in = 6 floats: 24 bytes, refused: the loop runs
    ] {
        let (g, r) = (counts.len() as i64, counts.iter().sum::<usize>() as i64);
        let x = Tensor::randn([r, d_in], cpu).set_requires_grad(true);
        let w = match transposed {
            false => Tensor::randn([g, d_in, d_out], cpu).set_requires_grad(true),
            true => Tensor::randn([g, d_out, d_in], cpu).set_requires_grad(true),
        };
        let wv = if transposed {
            w.transpose(1, 2)
        } else {
            w.shallow_clone()
        };
        let b = Tensor::randn([g, d_out], cpu).set_requires_grad(true);
        assert_eq!(grouped_mm_supported(&x, &wv), d_in != 6, "{counts:?}");
        let layout = GroupLayout::from_counts(&counts, Device::Cpu);
        let probe = Tensor::randn([r, d_out], cpu);
        let ours = grouped_mm(&x, &wv, Some(&b), &layout).unwrap();
        let loop_ = grouped_matmul(&x, &wv, Some(&b), &counts).unwrap();
        assert!(ours.equal(&loop_), "{counts:?}: outputs");
        for (a, c) in grads(&x, &w, &b, &ours, &probe)
            .iter()
            .zip(grads(&x, &w, &b, &loop_, &probe))
        {
            let diff = (a - &c).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{counts:?}: gradients differ by {diff}");
        }
    }
}

#[test]
fn the_plan_layout_is_built_on_the_device_and_matches_its_counts() {
    let experts = Tensor::from_slice(&[3i64, 0, 3, 1, 0, 3, 2, 3]).view([4, 2]);
    for capacity in [Capacity::Dropless, Capacity::Factor(1.0)] {
        let plan = DispatchPlan::new(&experts, 5, capacity).unwrap();
        let want = GroupLayout::from_counts(&plan.counts, Device::Cpu);
        assert_eq!(plan.layout.counts, plan.counts);
        assert!(plan.layout.ends.equal(&want.ends), "{capacity:?}: ends");
        assert!(
            plan.layout.row_group.equal(&want.row_group),
            "{capacity:?}: row experts"
        );
        assert_eq!(plan.layout.ends.kind(), Kind::Int);
    }
}
