//! Task losses on the padded logits.

use tch::{Kind, Reduction, Tensor};

/// Label value of rows without a class label (regression rows), as in PyTorch.
pub const IGNORE_INDEX: i64 = -100;

/// Per-example task loss: cross-entropy for classification rows, squared error of column 0
/// for regression rows.
///
/// # Shapes
/// `logits: [B, C]` (padded, see `ModelOutput::logits`), `class_labels: [B]` int64 with
/// [`IGNORE_INDEX`] on regression rows, `regression_targets: [B]` f32, `regression_mask: [B]`
/// bool -> `[B]` f32.
pub fn per_example_loss(
    logits: &Tensor,
    class_labels: &Tensor,
    regression_targets: &Tensor,
    regression_mask: &Tensor,
) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    let ce =
        logits.cross_entropy_loss::<Tensor>(class_labels, None, Reduction::None, IGNORE_INDEX, 0.0);
    let mask = regression_mask.to_kind(Kind::Float);
    // Zero the prediction where there is no target, so NaN-free whatever column 0 holds.
    let error =
        (logits.select(1, 0) * &mask - regression_targets.to_kind(Kind::Float) * &mask).square();
    ce + error
}
