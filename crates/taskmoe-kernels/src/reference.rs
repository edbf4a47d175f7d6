//! Plain ndarray implementations of every kernel, written for clarity, not speed.
//!
//! They define what the tensor kernels must compute: the property tests compare the two on
//! random inputs. Loops follow the definitions in the kernel docs one to one.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayView3, Axis};

/// Row-wise softmax.
pub fn softmax(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut out = logits.to_owned();
    for mut row in out.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    out
}

/// Top-k of the softmax: `(probs, weights, experts)`, best first, ties to the lower index.
pub fn top_k(
    logits: ArrayView2<f32>,
    k: usize,
    renormalize: bool,
) -> (Array2<f32>, Array2<f32>, Array2<i64>) {
    let probs = softmax(logits);
    let t = probs.nrows();
    let mut weights = Array2::zeros((t, k));
    let mut experts = Array2::zeros((t, k));
    for (i, row) in probs.rows().into_iter().enumerate() {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let total: f32 = order[..k].iter().map(|&e| row[e]).sum();
        for (j, &e) in order[..k].iter().enumerate() {
            experts[[i, j]] = e as i64;
            weights[[i, j]] = if renormalize { row[e] / total } else { row[e] };
        }
    }
    (probs, weights, experts)
}

/// The dispatch plan by queues: first choices of all tokens in order, then second choices...
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Kept slot indices (`token * k + choice`), grouped by expert.
    pub slot_order: Vec<usize>,
    /// Kept rows per expert.
    pub counts: Vec<usize>,
    /// Requested slots per expert.
    pub requested: Vec<usize>,
    /// Queue position of each slot. `[T, k]`
    pub position: Array2<i64>,
    /// Kept flag of each slot. `[T, k]`
    pub kept: Array2<bool>,
}

/// Plans a dispatch of `experts: [T, k]` over `num_experts` with an optional capacity.
pub fn dispatch(experts: ArrayView2<i64>, num_experts: usize, capacity: Option<usize>) -> Plan {
    let (t, k) = experts.dim();
    let mut queues: Vec<Vec<usize>> = vec![Vec::new(); num_experts];
    let mut position = Array2::zeros((t, k));
    let mut kept = Array2::from_elem((t, k), false);
    for choice in 0..k {
        for token in 0..t {
            let e = experts[[token, choice]] as usize;
            let pos = queues[e].len();
            position[[token, choice]] = pos as i64;
            kept[[token, choice]] = capacity.is_none_or(|c| pos < c);
            queues[e].push(token * k + choice);
        }
    }
    let requested: Vec<usize> = queues.iter().map(Vec::len).collect();
    let mut slot_order = Vec::new();
    let mut counts = Vec::new();
    for q in &queues {
        let n = capacity.map_or(q.len(), |c| q.len().min(c));
        slot_order.extend_from_slice(&q[..n]);
        counts.push(n);
    }
    Plan {
        slot_order,
        counts,
        requested,
        position,
        kept,
    }
}

/// Rows of `x` in the plan's order. `[T, d]` -> `[R, d]`
pub fn permute(x: ArrayView2<f32>, plan: &Plan, k: usize) -> Array2<f32> {
    let tokens: Vec<usize> = plan.slot_order.iter().map(|s| s / k).collect();
    x.select(Axis(0), &tokens)
}

/// `y_t = sum_j w_{t,j} rows[row(t, j)]`, dropped slots skipped. `[R, d]`, `[T, k]` -> `[T, d]`
pub fn combine(rows: ArrayView2<f32>, weights: ArrayView2<f32>, plan: &Plan) -> Array2<f32> {
    let (t, k) = weights.dim();
    let mut out = Array2::zeros((t, rows.ncols()));
    for (r, &slot) in plan.slot_order.iter().enumerate() {
        let (token, choice) = (slot / k, slot % k);
        let w = weights[[token, choice]];
        let mut o = out.row_mut(token);
        o.scaled_add(w, &rows.row(r));
    }
    out
}

/// Per-expert `x_e @ w[e] + b[e]` over consecutive row groups. `[R, din]` -> `[R, dout]`
pub fn grouped_matmul(
    x: ArrayView2<f32>,
    w: ArrayView3<f32>,
    bias: Option<ArrayView2<f32>>,
    counts: &[usize],
) -> Array2<f32> {
    let mut out = Array2::zeros((x.nrows(), w.dim().2));
    let mut start = 0;
    for (e, &c) in counts.iter().enumerate() {
        for r in start..start + c {
            let mut y = x.row(r).dot(&w.index_axis(Axis(0), e));
            if let Some(b) = bias {
                y += &b.row(e);
            }
            out.row_mut(r).assign(&y);
        }
        start += c;
    }
    out
}

/// `E * sum_i f_i P_i` with `f` the share of slots per expert.
pub fn load_balance_loss(probs: ArrayView2<f32>, experts: ArrayView2<i64>) -> f32 {
    let e = probs.ncols();
    let mut f = vec![0f32; e];
    for &x in experts.iter() {
        f[x as usize] += 1.0 / experts.len() as f32;
    }
    let p = probs.mean_axis(Axis(0)).expect("at least one token");
    e as f32 * f.iter().zip(p.iter()).map(|(a, b)| a * b).sum::<f32>()
}

/// `E * sum_i f_i P_i` with `f`, `P` the means over present tasks of each task's slot share
/// and mean probability.
pub fn task_load_balance_loss(
    probs: ArrayView2<f32>,
    experts: ArrayView2<i64>,
    task_ids: ArrayView1<i64>,
    num_tasks: usize,
) -> f32 {
    let e = probs.ncols();
    let k = experts.ncols();
    let mut f = vec![0f32; e];
    let mut p = vec![0f32; e];
    let mut present = 0f32;
    for task in 0..num_tasks as i64 {
        let rows: Vec<usize> = (0..task_ids.len())
            .filter(|&r| task_ids[r] == task)
            .collect();
        if rows.is_empty() {
            continue;
        }
        present += 1.0;
        let n = rows.len() as f32;
        for &r in &rows {
            for &x in experts.row(r).iter() {
                f[x as usize] += 1.0 / (n * k as f32);
            }
            for (i, &q) in probs.row(r).iter().enumerate() {
                p[i] += q / n;
            }
        }
    }
    e as f32 * f.iter().zip(&p).map(|(a, b)| a * b).sum::<f32>() / (present * present)
}

/// `mean_t logsumexp(logits_t)^2`.
pub fn z_loss(logits: ArrayView2<f32>) -> f32 {
    let sq: Vec<f32> = logits
        .rows()
        .into_iter()
        .map(|row| {
            let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let lse = max + row.mapv(|v| (v - max).exp()).sum().ln();
            lse * lse
        })
        .collect();
    sq.iter().sum::<f32>() / sq.len() as f32
}

/// `-I(task; expert)` from the batch joint distribution.
pub fn mutual_information_loss(
    probs: ArrayView2<f32>,
    task_ids: ArrayView1<i64>,
    num_tasks: usize,
) -> f32 {
    let (t, e) = probs.dim();
    let mut joint = Array2::<f64>::zeros((num_tasks, e));
    for (i, &task) in task_ids.iter().enumerate() {
        for j in 0..e {
            joint[[task as usize, j]] += probs[[i, j]] as f64 / t as f64;
        }
    }
    let p_task: Array1<f64> = joint.sum_axis(Axis(1));
    let p_expert: Array1<f64> = joint.sum_axis(Axis(0));
    let mut mi = 0.0;
    for ((a, b), &p) in joint.indexed_iter() {
        if p > 0.0 {
            mi += p * (p / (p_task[a] * p_expert[b])).ln();
        }
    }
    -(mi as f32)
}

/// Dense mixture `sum_e p_{t,e} (x_t @ w[e])`, what dropless top-`E` routing must reproduce.
pub fn dense_mixture(
    x: ArrayView2<f32>,
    probs: ArrayView2<f32>,
    w: ArrayView3<f32>,
) -> Array2<f32> {
    let mut out = Array2::zeros((x.nrows(), w.dim().2));
    for t in 0..x.nrows() {
        for e in 0..w.dim().0 {
            let y = x.row(t).dot(&w.index_axis(Axis(0), e));
            out.row_mut(t).scaled_add(probs[[t, e]], &y);
        }
    }
    out
}
