//! The code paths chosen for CUDA, run on the CPU: the deterministic permute, the sync-free
//! counts, and the fp32 top-k under bf16 autocast.

use tch::{Device, Kind, Tensor};

use taskmoe_device::{autocast, Precision};
use taskmoe_kernels::{count_ids, permute, permute_by_slots, top_k, Capacity, DispatchPlan};

fn routing(t: i64, e: usize, k: usize) -> Tensor {
    tch::manual_seed(7);
    let logits = Tensor::randn([t, e as i64], (Kind::Float, Device::Cpu));
    top_k(&logits, k, true).unwrap().experts
}

#[test]
fn permute_by_slots_matches_permute_in_values_and_gradients() {
    let _rng = taskmoe_device::lock_global_rng();
    for (capacity, k) in [
        (Capacity::Dropless, 2),
        (Capacity::Factor(0.5), 2),
        (Capacity::Factor(1.0), 3),
    ] {
        let experts = routing(37, 5, k);
        let plan = DispatchPlan::new(&experts, 5, capacity).unwrap();
        let x = Tensor::randn([37, 6], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::randn([plan.num_rows() as i64, 6], (Kind::Float, Device::Cpu));
        let a = permute(&x, &plan).unwrap();
        let b = permute_by_slots(&x, &plan).unwrap();
        assert!(a.equal(&b));
        let ga = Tensor::run_backward(&[(&a * &w).sum(Kind::Float)], &[&x], false, false);
        let gb = Tensor::run_backward(&[(&b * &w).sum(Kind::Float)], &[&x], false, false);
        let diff = (&ga[0] - &gb[0]).abs().max().double_value(&[]);
        assert!(
            diff < 1e-5,
            "{capacity:?} k={k}: gradient differs by {diff}"
        );
    }
}

#[test]
fn counts_stay_on_the_device_and_check_their_range() {
    let _rng = taskmoe_device::lock_global_rng();
    let ids = Tensor::from_slice(&[0i64, 2, 2, 3, 0, 2]).view([3, 2]);
    let counts = count_ids("test", &ids, 5).unwrap();
    assert_eq!(Vec::<i64>::try_from(&counts).unwrap(), vec![2, 0, 3, 1, 0]);
    let err = count_ids("test", &ids, 3).unwrap_err().to_string();
    assert!(err.contains("ids must lie in 0..3"), "{err}");
    let negative = Tensor::from_slice(&[0i64, -1]);
    assert!(count_ids("test", &negative, 3).is_err());
}

#[test]
fn top_k_is_fp32_under_bf16_autocast() {
    let _rng = taskmoe_device::lock_global_rng();
    let logits = Tensor::randn([16, 8], (Kind::Float, Device::Cpu));
    let plain = top_k(&logits, 2, true).unwrap();
    let cast = autocast(Device::Cpu, Precision::Bf16, || top_k(&logits, 2, true)).unwrap();
    assert_eq!(cast.probs.kind(), Kind::Float);
    assert_eq!(cast.weights.kind(), Kind::Float);
    assert!(cast.experts.equal(&plain.experts));
    assert!(cast.probs.allclose(&plain.probs, 1e-6, 1e-7, false));
}
