//! The sort-based dispatch plan: which slot goes to which expert row, and which are dropped.

use tch::{Device, Kind, Tensor};

use crate::error::{dims2, invalid, KernelError, Result};
use crate::layout::GroupLayout;

/// How many slots each expert may take.
///
/// With a factor `c`, every expert takes at most `ceil(c * T * k / E)` slots (GShard/Switch
/// capacity); `c = 0` means dropless: every slot is processed, however unbalanced the routing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Capacity {
    /// Every slot is kept.
    Dropless,
    /// `ceil(factor * T * k / E)` slots per expert; `factor > 0`.
    Factor(f64),
}

impl Capacity {
    /// `0` is dropless, a positive finite factor caps the experts; anything else is an error.
    pub fn from_factor(factor: f64) -> Result<Self> {
        if factor == 0.0 {
            Ok(Capacity::Dropless)
        } else if factor.is_finite() && factor > 0.0 {
            Ok(Capacity::Factor(factor))
        } else {
            Err(invalid(
                "capacity",
                format!("capacity_factor must be 0 (dropless) or positive, got {factor}"),
            ))
        }
    }

    /// Slots per expert for `tokens` tokens with `k` choices over `experts` experts, or `None`
    /// when dropless. At least one slot, so a tiny batch never drops everything.
    pub fn slots(&self, tokens: usize, k: usize, experts: usize) -> Option<usize> {
        match *self {
            Capacity::Dropless => None,
            Capacity::Factor(f) => {
                let per_expert = f * (tokens * k) as f64 / experts as f64;
                Some((per_expert.ceil() as usize).max(1))
            }
        }
    }
}

/// Where every `(token, choice)` slot of a routing decision goes.
///
/// Slots are numbered in natural order, `slot = token * k + choice`. The plan orders them by
/// expert with a stable sort over the *priority order* (all first choices in token order, then
/// all second choices, ...), so when an expert is over capacity, first choices are kept before
/// second choices and earlier tokens before later ones (DESIGN.md section 4). A dropped slot
/// contributes nothing: its token keeps only its other choices, or just the residual.
///
/// Building the plan reads the per-expert counts back to the host once (the only host
/// synchronisation of a MoE layer on CUDA): the grouped matmul needs them to slice. Counting
/// is an index-add on the device (`bincount` would synchronise twice more), and every other
/// index (starts, capacity shifts) is derived on the device from the counts tensor rather than
/// copied up from host vectors.
#[derive(Debug)]
pub struct DispatchPlan {
    /// Tokens `T`.
    pub num_tokens: usize,
    /// Choices per token `k`.
    pub k: usize,
    /// Experts `E`.
    pub num_experts: usize,
    /// Slots per expert, `None` when dropless.
    pub capacity: Option<usize>,
    /// Slots each expert was asked to take (before capacity). `[E]` on the host.
    pub requested: Vec<usize>,
    /// Rows each expert takes (after capacity); sums to `R`. `[E]` on the host.
    pub counts: Vec<usize>,
    /// Slot index of each kept row, rows grouped by expert. `[R]` int64
    pub slot_order: Tensor,
    /// Token index of each kept row (`slot_order / k`). `[R]` int64
    pub token_order: Tensor,
    /// Row of each slot, or `R` for a dropped slot. `[T * k]` int64
    pub slot_row: Tensor,
    /// Rank of each slot in its expert's queue; kept iff below capacity. `[T, k]` int64
    pub position: Tensor,
    /// Whether each slot was kept. `[T, k]` bool
    pub kept: Tensor,
    /// The kept rows' expert slices for the grouped matmuls: `counts`, with their ends and
    /// each row's expert derived on the device (no further host transfer).
    pub layout: GroupLayout,
}

impl DispatchPlan {
    /// Plans the dispatch of `experts` (`[T, k]` expert ids, as from [`crate::top_k`]) over
    /// `num_experts` experts.
    pub fn new(experts: &Tensor, num_experts: usize, capacity: Capacity) -> Result<Self> {
        const OP: &str = "DispatchPlan::new";
        let (t, k) = dims2(OP, "experts", experts)?;
        if experts.kind() != Kind::Int64 {
            return Err(invalid(
                OP,
                format!("experts must be int64, got {:?}", experts.kind()),
            ));
        }
        if k == 0 {
            return Err(invalid(OP, "experts has no choices (k = 0)"));
        }
        let device = experts.device();
        let (tokens, choices) = (t as usize, k as usize);
        let slots = t * k;

        // Priority order p = choice * T + token; a stable sort by expert keeps it per expert.
        let priority = experts.transpose(0, 1).reshape([slots]);
        let out_of_range = || invalid(OP, format!("expert ids must lie in 0..{num_experts}"));
        let requested_t =
            crate::count::count_ids(OP, &priority, num_experts).map_err(|_| out_of_range())?;
        // The one host synchronisation: everything below that needs the counts on the device
        // derives them from `requested_t`, so no host vector is copied back (a host-to-device
        // copy of pageable memory synchronises too).
        let requested: Vec<i64> = Vec::try_from(&requested_t)?;
        let requested: Vec<usize> = requested.iter().map(|&c| c as usize).collect();
        let (sorted_experts, sorted_priority) = priority.sort_stable(true, 0, false);

        let starts_t = requested_t.cumsum(0, Kind::Int64) - &requested_t;
        let position_sorted = Tensor::arange(slots, (Kind::Int64, device))
            - starts_t.index_select(0, &sorted_experts);
        // priority p -> natural slot (p % T) * k + p / T
        let slot_sorted = sorted_priority.remainder(t) * k + sorted_priority.floor_divide_scalar(t);

        let cap = capacity.slots(tokens, choices, num_experts);
        let counts: Vec<usize> = match cap {
            None => requested.clone(),
            Some(c) => requested.iter().map(|&r| r.min(c)).collect(),
        };
        let rows: usize = counts.iter().sum();
        let (slot_order, layout) = if rows == tokens * choices {
            let layout = GroupLayout {
                counts: counts.clone(),
                ends: requested_t.cumsum(0, Kind::Int),
                row_group: sorted_experts,
            };
            (slot_sorted, layout)
        } else {
            // Kept rows of expert e are the first counts[e] of its sorted run, which starts at
            // starts[e]: index = row + (starts[e] - kept_starts[e]). All on the device.
            let c = cap.expect("rows < slots only with a capacity") as i64;
            let counts_t = requested_t.clamp_max(c);
            let kept_starts_t = counts_t.cumsum(0, Kind::Int64) - &counts_t;
            let keep = Tensor::arange(rows as i64, (Kind::Int64, device))
                + Tensor::f_repeat_interleave_self_tensor(
                    &(&starts_t - kept_starts_t),
                    &counts_t,
                    0,
                    rows as i64,
                )?;
            let layout = GroupLayout {
                counts: counts.clone(),
                ends: counts_t.cumsum(0, Kind::Int),
                row_group: sorted_experts.index_select(0, &keep),
            };
            (slot_sorted.index_select(0, &keep), layout)
        };
        let token_order = slot_order.floor_divide_scalar(k);
        let slot_row = Tensor::full([slots], rows as i64, (Kind::Int64, device)).index_copy(
            0,
            &slot_order,
            &Tensor::arange(rows as i64, (Kind::Int64, device)),
        );
        let position = Tensor::zeros([slots], (Kind::Int64, device))
            .index_copy(0, &sorted_priority, &position_sorted)
            .reshape([k, t])
            .transpose(0, 1)
            .contiguous();
        let kept = match cap {
            None => position.ones_like().to_kind(Kind::Bool),
            Some(c) => position.lt(c as i64),
        };
        Ok(DispatchPlan {
            num_tokens: tokens,
            k: choices,
            num_experts,
            capacity: cap,
            requested,
            counts,
            slot_order,
            token_order,
            slot_row,
            position,
            kept,
            layout,
        })
    }

    /// Rows `R` that experts will process.
    pub fn num_rows(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Slots dropped by the capacity limit.
    pub fn num_dropped(&self) -> usize {
        self.num_tokens * self.k - self.num_rows()
    }

    /// Checks that `t` has the `[T, k]` shape of this plan's routing decision.
    pub(crate) fn check_tk(&self, op: &'static str, arg: &'static str, t: &Tensor) -> Result<()> {
        let expected = [self.num_tokens as i64, self.k as i64];
        if t.size() != expected {
            return Err(KernelError::Shape {
                op,
                arg,
                got: t.size(),
                expected: format!("{expected:?} (tokens, k)"),
            });
        }
        Ok(())
    }
}

/// `[0, a0, a0 + a1, ...]`, one entry per input.
pub(crate) fn exclusive_cumsum(counts: &[usize]) -> Vec<i64> {
    counts
        .iter()
        .scan(0i64, |acc, &c| {
            let start = *acc;
            *acc += c as i64;
            Some(start)
        })
        .collect()
}

pub(crate) fn to_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// A small host vector as an int64 tensor on `device`.
pub(crate) fn host_tensor(v: &[i64], device: Device) -> Tensor {
    Tensor::from_slice(v).to_device(device)
}
