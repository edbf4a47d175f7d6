//! Every metric against values computed by hand (the arithmetic is in the comments), edge
//! cases, and the metric names.

use taskmoe_data::Metric;
use taskmoe_eval::{
    accuracy, average_ranks, balanced_accuracy, binary_f1, compute, macro_f1, majority_baseline,
    majority_class, matthews, mse, pearson, spearman, EvalError, MetricKind, Values,
};

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

// Binary example: preds [1,1,0,0,1], labels [1,0,0,1,1] -> TP 2 (0, 4), FP 1 (1), FN 1 (3),
// TN 1 (2).
const BIN_P: [usize; 5] = [1, 1, 0, 0, 1];
const BIN_L: [usize; 5] = [1, 0, 0, 1, 1];
// Three classes: labels [0,0,1,1,2,2], preds [0,1,1,1,2,0].
const MC_P: [usize; 6] = [0, 1, 1, 1, 2, 0];
const MC_L: [usize; 6] = [0, 0, 1, 1, 2, 2];

#[test]
fn accuracy_counts_matches() {
    close(accuracy(&BIN_P, &BIN_L).unwrap(), 3.0 / 5.0);
    close(accuracy(&MC_P, &MC_L).unwrap(), 4.0 / 6.0);
    close(accuracy(&[2, 2], &[2, 2]).unwrap(), 1.0);
}

#[test]
fn binary_f1_of_the_positive_class() {
    // 2 TP / (2 TP + FP + FN) = 4 / 6.
    close(binary_f1(&BIN_P, &BIN_L).unwrap(), 2.0 / 3.0);
    // No positive anywhere: zero_division = 0.
    close(binary_f1(&[0, 0], &[0, 0]).unwrap(), 0.0);
    // Positives only predicted: precision 0 -> F1 0.
    close(binary_f1(&[1, 1], &[0, 0]).unwrap(), 0.0);
}

#[test]
fn macro_f1_averages_present_classes() {
    // class 0: TP 1, FP 1, FN 1 -> 2/4; class 1: TP 2, FP 1, FN 0 -> 4/5; class 2: TP 1, FP 0,
    // FN 1 -> 2/3.
    close(
        macro_f1(&MC_P, &MC_L).unwrap(),
        (0.5 + 0.8 + 2.0 / 3.0) / 3.0,
    );
    // Class 1 occurs nowhere and is not averaged in: perfect predictions score 1.
    close(macro_f1(&[0, 0, 2], &[0, 0, 2]).unwrap(), 1.0);
    // A class only predicted counts, with F1 0: class 0 -> 2/3 (TP 1, FN 1), class 1 -> 0.
    close(macro_f1(&[0, 1], &[0, 0]).unwrap(), (2.0 / 3.0 + 0.0) / 2.0);
}

#[test]
fn matthews_binary_matches_the_textbook_formula() {
    // (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3*3*2*2) = 1/6.
    close(matthews(&BIN_P, &BIN_L).unwrap(), 1.0 / 6.0);
    close(matthews(&[0, 1, 0, 1], &[0, 1, 0, 1]).unwrap(), 1.0);
    close(matthews(&[1, 0, 1, 0], &[0, 1, 0, 1]).unwrap(), -1.0);
}

#[test]
fn matthews_multiclass_is_gorodkin_rk() {
    // n = 6, correct c = 4, true counts t = [2,2,2], predicted p = [2,3,1].
    // c n - sum p t = 24 - 12 = 12; n^2 - sum p^2 = 36 - 14 = 22; n^2 - sum t^2 = 24.
    close(
        matthews(&MC_P, &MC_L).unwrap(),
        12.0 / (22.0f64 * 24.0).sqrt(),
    );
    close(matthews(&MC_L, &MC_L).unwrap(), 1.0);
}

#[test]
fn matthews_of_constant_inputs_is_zero_not_nan() {
    close(matthews(&[1, 1, 1, 1], &[0, 1, 0, 1]).unwrap(), 0.0);
    close(matthews(&[0, 1, 0, 1], &[1, 1, 1, 1]).unwrap(), 0.0);
    close(matthews(&[3], &[3]).unwrap(), 0.0);
}

#[test]
fn pearson_by_hand() {
    // mean x 2.5, mean y 5; dx [-1.5,-.5,.5,1.5], dy [-3,-1,0,4]: sxy 11, sxx 5, syy 26.
    let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 5.0, 9.0]).unwrap();
    close(r, 11.0 / 130f64.sqrt());
    close(
        pearson(&[1.0, 2.0, 3.0], &[-2.0, -4.0, -6.0]).unwrap(),
        -1.0,
    );
    // Constant side: 0, not NaN; one example is constant too.
    close(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap(), 0.0);
    close(pearson(&[5.0], &[7.0]).unwrap(), 0.0);
}

#[test]
fn spearman_uses_average_ranks_for_ties() {
    assert_eq!(average_ranks(&[10.0, 20.0, 20.0]), vec![1.0, 2.5, 2.5]);
    assert_eq!(
        average_ranks(&[3.0, 1.0, 2.0, 1.0, 1.0]),
        vec![5.0, 2.0, 4.0, 2.0, 2.0]
    );
    // ranks x [1, 2.5, 2.5, 4], y [1, 3, 2, 4]: sxy 4.5, sxx 4.5, syy 5 -> 4.5 / sqrt(22.5)
    // (scipy.stats.spearmanr gives 0.9486832980505138).
    let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
    close(rho, 4.5 / 22.5f64.sqrt());
    // Monotone but not linear: rank correlation 1, Pearson below 1.
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    let y = [1.0, 8.0, 27.0, 64.0, 125.0];
    close(spearman(&x, &y).unwrap(), 1.0);
    assert!(pearson(&x, &y).unwrap() < 0.99);
    close(spearman(&[2.0, 2.0], &[1.0, 3.0]).unwrap(), 0.0);
}

#[test]
fn mse_by_hand() {
    close(mse(&[1.0, 2.0], &[2.0, 4.0]).unwrap(), 2.5);
    close(mse(&[0.5], &[0.5]).unwrap(), 0.0);
}

#[test]
fn balanced_accuracy_averages_the_recall_of_the_classes_present() {
    // Class 0: 3 of 4 right; class 1: 0 of 1 right; class 2 absent. (0.75 + 0) / 2.
    close(
        balanced_accuracy(&[0, 0, 0, 1, 0], &[0, 0, 0, 0, 1]).unwrap(),
        0.375,
    );
    // A constant predictor scores 1 / classes present, whatever the balance (accuracy 0.8).
    close(balanced_accuracy(&[0; 5], &[0, 0, 0, 0, 1]).unwrap(), 0.5);
    close(balanced_accuracy(&[2, 1, 0], &[2, 1, 0]).unwrap(), 1.0);
    assert!(balanced_accuracy(&[], &[]).is_err());
    assert!(balanced_accuracy(&[0], &[0, 1]).is_err());
}

#[test]
fn majority_baseline_predicts_the_most_frequent_class() {
    assert_eq!(majority_class(&[2, 0, 2, 1]), Some(2));
    // Ties go to the smaller index.
    assert_eq!(majority_class(&[1, 0, 1, 0]), Some(0));
    assert_eq!(majority_class(&[]), None);
    close(
        majority_baseline(&[2, 0, 2, 1], &[2, 0, 2, 1]).unwrap(),
        0.5,
    );
    // The training majority (1) scored on another split.
    close(majority_baseline(&[1, 1, 0], &[0, 0, 0, 1]).unwrap(), 0.25);
}

#[test]
fn empty_inputs_mismatches_and_nan_are_errors() {
    let empty_c: [usize; 0] = [];
    let empty_r: [f64; 0] = [];
    for result in [
        accuracy(&empty_c, &empty_c),
        binary_f1(&empty_c, &empty_c),
        macro_f1(&empty_c, &empty_c),
        matthews(&empty_c, &empty_c),
        majority_baseline(&empty_c, &empty_c),
        majority_baseline(&[0], &empty_c),
        pearson(&empty_r, &empty_r),
        spearman(&empty_r, &empty_r),
        mse(&empty_r, &empty_r),
    ] {
        assert!(matches!(result, Err(EvalError::Empty { .. })), "{result:?}");
    }
    assert_eq!(
        accuracy(&[0, 1], &[0]).unwrap_err().to_string(),
        "accuracy: 2 predictions for 1 labels"
    );
    let err = spearman(&[1.0, f64::NAN], &[1.0, 2.0]).unwrap_err();
    assert!(matches!(
        err,
        EvalError::NonFinite {
            which: "predictions",
            index: 1,
            ..
        }
    ));
    assert!(pearson(&[1.0, 2.0], &[f64::INFINITY, 2.0]).is_err());
}

#[test]
fn compute_dispatches_by_kind_and_checks_value_types() {
    let (p, l) = (BIN_P.to_vec(), BIN_L.to_vec());
    close(compute(MetricKind::Accuracy, &p, &l).unwrap(), 0.6);
    close(compute(MetricKind::F1, &p, &l).unwrap(), 2.0 / 3.0);
    close(compute(MetricKind::Matthews, &p, &l).unwrap(), 1.0 / 6.0);
    close(compute(MetricKind::MajorityBaseline, &p, &l).unwrap(), 0.6);
    let (x, y) = (vec![1.0, 2.0], vec![2.0, 4.0]);
    close(compute(MetricKind::Mse, &x, &y).unwrap(), 2.5);
    close(compute(MetricKind::Pearson, &x, &y).unwrap(), 1.0);
    assert_eq!(
        compute(MetricKind::Pearson, &p, &l).unwrap_err(),
        EvalError::WrongValues {
            metric: "pearson".into(),
            expected: "real"
        }
    );
    assert!(compute(MetricKind::Accuracy, Values::Reals(&x), Values::Classes(&l)).is_err());
}

#[test]
fn names_are_kebab_case_and_match_the_task_spec_metrics() {
    for kind in MetricKind::ALL {
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", kind.name()));
        assert_eq!(serde_json::from_str::<MetricKind>(&json).unwrap(), kind);
        assert_eq!(kind.to_string(), kind.name());
    }
    assert_eq!(
        serde_json::from_str::<MetricKind>("\"macro_f1\"").unwrap(),
        MetricKind::MacroF1
    );
    assert!(serde_json::from_str::<MetricKind>("\"f1-macro\"").is_err());
    // A task spec's metric names parse to the converted kind, with the same task kind.
    for metric in [
        Metric::Accuracy,
        Metric::F1,
        Metric::Matthews,
        Metric::Pearson,
        Metric::Spearman,
        Metric::Mse,
    ] {
        let name = serde_json::to_string(&metric).unwrap();
        let kind: MetricKind = serde_json::from_str(&name).unwrap();
        assert_eq!(kind, MetricKind::from(metric));
        assert!(metric.applies_to(kind.task_kind()));
    }
    assert!(!MetricKind::Mse.higher_is_better());
    assert!(MetricKind::Matthews.higher_is_better());
}
