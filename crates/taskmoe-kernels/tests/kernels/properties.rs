//! Property tests: every tensor kernel against its ndarray reference on random routings.

use crate::common::*;
use ndarray::Array2;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use taskmoe_kernels::{
    aux, combine, grouped_matmul, padded_bmm, permute, reference, top_k, unpermute, Capacity,
    DispatchPlan,
};
use tch::{Kind, Tensor};

const TOL: f32 = 1e-5;

/// A routing problem: tokens, experts, k, hidden size, capacity factor, data seed.
#[derive(Debug, Clone)]
struct Case {
    t: usize,
    e: usize,
    k: usize,
    d: usize,
    factor: f64,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..48,
        1usize..9,
        1usize..5,
        prop::sample::select(vec![0.0, 0.5, 1.0, 1.25, 2.0]),
    )
        .prop_flat_map(|(t, e, d, factor)| {
            (Just(t), Just(e), 1..=e, Just(d), Just(factor), any::<u64>())
        })
        .prop_map(|(t, e, k, d, factor, seed)| Case {
            t,
            e,
            k,
            d,
            factor,
            seed,
        })
}

impl Case {
    fn logits(&self) -> Vec<f32> {
        normal(self.seed, self.t * self.e)
            .iter()
            .map(|v| 2.0 * v)
            .collect()
    }
    fn capacity(&self) -> Capacity {
        Capacity::from_factor(self.factor).unwrap()
    }
    fn route(&self) -> (taskmoe_kernels::TopK, DispatchPlan) {
        let logits = tensor2(&self.logits(), self.t, self.e);
        let routed = top_k(&logits, self.k, true).unwrap();
        let plan = DispatchPlan::new(&routed.experts, self.e, self.capacity()).unwrap();
        (routed, plan)
    }
    fn reference_plan(&self) -> reference::Plan {
        let logits = Array2::from_shape_vec((self.t, self.e), self.logits()).unwrap();
        let (_, _, experts) = reference::top_k(logits.view(), self.k, true);
        let cap = self.capacity().slots(self.t, self.k, self.e);
        reference::dispatch(experts.view(), self.e, cap)
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // A failing case is saved beside this file (`properties.proptest-regressions`).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn top_k_matches_reference(case in cases(), renormalize in any::<bool>()) {
        let logits = case.logits();
        let routed = top_k(&tensor2(&logits, case.t, case.e), case.k, renormalize).unwrap();
        let view = Array2::from_shape_vec((case.t, case.e), logits).unwrap();
        let (probs, weights, experts) = reference::top_k(view.view(), case.k, renormalize);
        prop_assert!(max_rel_diff(&array2(&routed.probs), &probs) < TOL);
        prop_assert!(max_rel_diff(&array2(&routed.weights), &weights) < TOL);
        prop_assert_eq!(array2_i64(&routed.experts), experts);
        prop_assert_eq!(routed.weights.kind(), Kind::Float);
        if renormalize {
            for row in array2(&routed.weights).rows() {
                prop_assert!((row.sum() - 1.0).abs() < TOL);
            }
        }
    }

    #[test]
    fn dispatch_plan_matches_reference_and_invariants(case in cases()) {
        let (routed, plan) = case.route();
        let expected = case.reference_plan();
        let slot_order: Vec<usize> =
            array1_i64(&plan.slot_order).iter().map(|&s| s as usize).collect();
        prop_assert_eq!(&slot_order, &expected.slot_order);
        prop_assert_eq!(&plan.counts, &expected.counts);
        prop_assert_eq!(&plan.requested, &expected.requested);
        prop_assert_eq!(array2_i64(&plan.position), expected.position.clone());
        let kept: Vec<bool> = Vec::try_from(&plan.kept.reshape([-1])).unwrap();
        prop_assert_eq!(kept, expected.kept.iter().copied().collect::<Vec<_>>());

        // Every kept slot appears once, in its own expert's group; no expert over capacity.
        let experts = array2_i64(&routed.experts);
        let mut seen = vec![false; case.t * case.k];
        let mut row = 0;
        for (e, &count) in plan.counts.iter().enumerate() {
            if let Some(cap) = plan.capacity {
                prop_assert!(count <= cap);
            }
            for &slot in &slot_order[row..row + count] {
                prop_assert!(!seen[slot], "slot {} twice", slot);
                seen[slot] = true;
                prop_assert_eq!(experts[[slot / case.k, slot % case.k]] as usize, e);
            }
            row += count;
        }
        prop_assert_eq!(plan.num_rows() + plan.num_dropped(), case.t * case.k);
        // Drop priority: a dropped slot means its expert is full of slots of earlier
        // choices, or of the same choice from earlier tokens.
        let position = array2_i64(&plan.position);
        for token in 0..case.t {
            for choice in 0..case.k {
                if seen[token * case.k + choice] {
                    continue;
                }
                let e = experts[[token, choice]];
                for (slot, &was_kept) in seen.iter().enumerate() {
                    let (t2, c2) = (slot / case.k, slot % case.k);
                    if was_kept && experts[[t2, c2]] == e {
                        prop_assert!(c2 < choice || (c2 == choice && t2 < token));
                    }
                }
                prop_assert!(position[[token, choice]] as usize >= plan.capacity.unwrap());
            }
        }
        // Row and slot maps are inverse on kept slots.
        let slot_row: Vec<i64> = Vec::try_from(&plan.slot_row).unwrap();
        for (r, &slot) in slot_order.iter().enumerate() {
            prop_assert_eq!(slot_row[slot] as usize, r);
        }
    }

    #[test]
    fn permute_then_unpermute_is_identity(case in cases()) {
        let (routed, plan) = case.route();
        let x = tensor2(&normal(case.seed ^ 1, case.t * case.d), case.t, case.d);
        let rows = permute(&x, &plan).unwrap();
        prop_assert_eq!(rows.size(), vec![plan.num_rows() as i64, case.d as i64]);
        let back = unpermute(&rows, &plan).unwrap(); // (tokens, k, d)
        let kept = plan.kept.to_kind(Kind::Float).unsqueeze(-1);
        let expected = x.unsqueeze(1).expand([-1, case.k as i64, -1], false) * &kept;
        prop_assert!(back.equal(&expected));
        // Dropless, the renormalised weights sum to one: combining copies gives x back.
        if plan.num_dropped() == 0 {
            let y = combine(&rows, &routed.weights, &plan).unwrap();
            prop_assert!(max_rel_diff(&array2(&y), &array2(&x)) < TOL);
        }
        let reference_rows = reference::permute(array2(&x).view(), &case.reference_plan(), case.k);
        prop_assert_eq!(array2(&rows), reference_rows);
    }

    #[test]
    fn combine_matches_reference(case in cases()) {
        let (routed, plan) = case.route();
        let r = plan.num_rows();
        let rows = tensor2(&normal(case.seed ^ 2, r * case.d), r, case.d);
        let y = combine(&rows, &routed.weights, &plan).unwrap();
        let expected = reference::combine(
            array2(&rows).view(),
            array2(&routed.weights).view(),
            &case.reference_plan(),
        );
        prop_assert!(max_rel_diff(&array2(&y), &expected) < TOL);
    }

    #[test]
    fn grouped_matmuls_match_reference(case in cases(), with_bias in any::<bool>()) {
        let (_, plan) = case.route();
        let (r, d_out) = (plan.num_rows(), case.d + 1);
        let x = tensor2(&normal(case.seed ^ 3, r * case.d), r, case.d);
        let w = tensor3(&normal(case.seed ^ 4, case.e * case.d * d_out), case.e, case.d, d_out);
        let b = tensor2(&normal(case.seed ^ 5, case.e * d_out), case.e, d_out);
        let bias = with_bias.then_some(&b);
        let expected = reference::grouped_matmul(
            array2(&x).view(),
            array3(&w).view(),
            with_bias.then(|| array2(&b)).as_ref().map(|b| b.view()),
            &plan.counts,
        );
        let grouped = grouped_matmul(&x, &w, bias, &plan.counts).unwrap();
        let padded = padded_bmm(&x, &w, bias, &plan.counts).unwrap();
        prop_assert!(max_rel_diff(&array2(&grouped), &expected) < TOL);
        prop_assert!(max_rel_diff(&array2(&padded), &expected) < TOL);
    }

    #[test]
    fn dropless_top_all_is_the_dense_mixture(case in cases()) {
        // k = E, no capacity: every expert sees every token with its softmax weight.
        let case = Case { k: case.e, factor: 0.0, ..case };
        let logits = tensor2(&case.logits(), case.t, case.e);
        let routed = top_k(&logits, case.k, false).unwrap();
        let plan = DispatchPlan::new(&routed.experts, case.e, Capacity::Dropless).unwrap();
        let x = tensor2(&normal(case.seed ^ 6, case.t * case.d), case.t, case.d);
        let w = tensor3(&normal(case.seed ^ 7, case.e * case.d * case.d), case.e, case.d, case.d);
        let rows = grouped_matmul(&permute(&x, &plan).unwrap(), &w, None, &plan.counts).unwrap();
        let y = combine(&rows, &routed.weights, &plan).unwrap();
        let expected =
            reference::dense_mixture(array2(&x).view(), array2(&routed.probs).view(), array3(&w).view());
        prop_assert!(max_rel_diff(&array2(&y), &expected) < TOL);
    }

    #[test]
    fn aux_losses_match_reference(case in cases(), tasks in 1usize..5) {
        let logits = tensor2(&case.logits(), case.t, case.e);
        let routed = top_k(&logits, case.k, true).unwrap();
        let probs = array2(&routed.probs);
        let lb = scalar(&aux::load_balance_loss(&routed.probs, &routed.experts).unwrap());
        let lb_ref = reference::load_balance_loss(probs.view(), array2_i64(&routed.experts).view());
        prop_assert!((lb - lb_ref).abs() < TOL * lb_ref.abs().max(1.0));
        let z = scalar(&aux::z_loss(&logits).unwrap());
        let z_ref = reference::z_loss(array2(&logits).view());
        prop_assert!((z - z_ref).abs() < TOL * z_ref.abs().max(1.0));
        let task_ids: Vec<i64> = (0..case.t).map(|i| ((i as u64 ^ case.seed) % tasks as u64) as i64).collect();
        let ids = Tensor::from_slice(&task_ids);
        let mi = scalar(&aux::mutual_information_loss(&routed.probs, &ids, tasks).unwrap());
        let mi_ref = reference::mutual_information_loss(probs.view(), ndarray::ArrayView1::from(&task_ids), tasks);
        prop_assert!((mi - mi_ref).abs() < 1e-4, "{} vs {}", mi, mi_ref);
        let tlb = scalar(&aux::task_load_balance_loss(&routed.probs, &routed.experts, &ids, tasks).unwrap());
        let tlb_ref = reference::task_load_balance_loss(
            probs.view(),
            array2_i64(&routed.experts).view(),
            ndarray::ArrayView1::from(&task_ids),
            tasks,
        );
        prop_assert!((tlb - tlb_ref).abs() < TOL * tlb_ref.abs().max(1.0), "{} vs {}", tlb, tlb_ref);
        prop_assert!(mi <= 1e-6, "mutual information is never negative");
    }
}
