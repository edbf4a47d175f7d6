//! Router configuration: one serde struct for every gating function.

use serde::{Deserialize, Serialize};
use taskmoe_kernels::Capacity;

use crate::error::{Result, RouterError};

/// Which gating function routes tokens to experts. See [`crate::Router`] for the formulas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouterKind {
    /// Task-agnostic: `softmax(x W)` per token (Switch top-1, GShard top-2, any `k`).
    Token,
    /// The router sees the token concatenated with a learned task embedding:
    /// `softmax([x, e_task] W)`.
    TaskConcat,
    /// One gate matrix per task over shared experts: `softmax(x W_task)`.
    PerTask,
    /// One decision per task from the task embedding alone: `softmax(e_task W)`; all tokens of
    /// a task use the same `k` experts.
    TaskLevel,
    /// Multi-gate Mixture-of-Experts (MMoE, [Ma et al. 2018](https://doi.org/10.1145/3219819.3220007)):
    /// one gate per task, `softmax(x W_task)`, mixing **every** expert densely (`k` must equal
    /// `num_experts`): the baseline of the multi-task libraries.
    Mmoe,
    /// Customized Gate Control, the extraction layer of PLE
    /// ([Tang et al. 2020](https://doi.org/10.1145/3383313.3412236)): every task owns
    /// `task_experts` experts and shares the rest; its gate `softmax(x W_task)` ranges over its
    /// own experts and the shared ones only, and picks `k` of them (`k` = own + shared is the
    /// paper's dense mixture).
    Cgc,
    /// DSelect-k ([Hazimeh et al. 2021](https://arxiv.org/abs/2106.03760)): per task, `k`
    /// differentiable selectors, each a smooth-step binary code over the `E = 2^m` experts,
    /// mixed by a softmax: a static per-task gate that becomes exactly `k`-sparse as its codes
    /// saturate (pushed there by `selection_entropy_coef`).
    DselectK,
    /// Expert choice ([Zhou et al. 2022](https://arxiv.org/abs/2202.09368)) with per-task
    /// capacity: `p = softmax(x W)`, and each expert takes, within each task of the batch, the
    /// `ceil(k * n_t / E)` tokens of that task with the largest affinity to it, so `k` is the
    /// mean number of experts per token and every task gets its share whatever its size. A
    /// token may be taken by several experts or by none (then only the residual path carries
    /// it). The capacity factors do not apply (see `crate::expert_choice`).
    ExpertChoice,
    /// Routing from a representation of the task's own examples: `x W + s_t M`, where the
    /// task state `s_t` is the running mean of the task's token states entering the layer
    /// (kept per task beside the weights, never trained by gradient, updated from every
    /// training batch with `task_state_momentum`, or set exactly from a task's examples by
    /// `MultiTaskModel::calibrate_routing`) and `M` a learned map trained on the seen tasks. An
    /// unseen task gets its routing from its own examples, with no declared source.
    TaskRepresentation,
}

impl RouterKind {
    /// The configuration's spelling (`token`, `task-concat`, `per-task`, `task-level`).
    pub fn name(self) -> &'static str {
        match self {
            RouterKind::Token => "token",
            RouterKind::TaskConcat => "task-concat",
            RouterKind::PerTask => "per-task",
            RouterKind::TaskLevel => "task-level",
            RouterKind::Mmoe => "mmoe",
            RouterKind::Cgc => "cgc",
            RouterKind::DselectK => "dselect-k",
            RouterKind::ExpertChoice => "expert-choice",
            RouterKind::TaskRepresentation => "task-representation",
        }
    }

    /// Whether the gating function depends on the task.
    pub fn is_task_aware(self) -> bool {
        !matches!(self, RouterKind::Token)
    }

    /// Whether the logits come from one gate matrix per task applied to each token (`per-task`,
    /// `mmoe`, `cgc`): such routers use the tokens grouped by task.
    pub fn has_task_gates(self) -> bool {
        matches!(
            self,
            RouterKind::PerTask | RouterKind::Mmoe | RouterKind::Cgc
        )
    }

    /// Whether the router uses the tokens grouped by task ([`crate::Router::forward_grouped`]):
    /// the per-task gates, and `expert-choice`, whose experts choose within each task. A
    /// caller that knows the per-task counts saves the router reading them back.
    pub fn uses_task_groups(self) -> bool {
        self.has_task_gates() || self == RouterKind::ExpertChoice
    }

    /// Whether the decision depends on the task alone, so every token of a task gets the same
    /// experts (`task-level`, `dselect-k`).
    pub fn decides_per_task(self) -> bool {
        matches!(self, RouterKind::TaskLevel | RouterKind::DselectK)
    }
}

/// How the task-specific part of a task-aware gate starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateStart {
    /// Each task's gate is drawn on its own (`per-task`: `W_t ~ N(0, 0.02^2)` independently;
    /// `task-concat` / `task-level`: task embeddings `~ N(0, 1)`), so tasks start on different
    /// experts whether they are related or not.
    #[default]
    Independent,
    /// Every task starts with the same gate and diverges by gradient: `per-task` gates are a
    /// shared gate plus a per-task delta that starts at zero (`W_t = W + D_t`, the shared part
    /// trained by every task's tokens); `task-concat` / `task-level` task embeddings start at
    /// zero.
    Shared,
}

/// What the load-balancing loss balances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalanceOver {
    /// The batch's tokens (Switch): every token counts once, so the frequent tasks dominate
    /// and the loss pushes every token, of whatever task, towards the experts least used
    /// overall.
    #[default]
    Tokens,
    /// The batch's tasks: each task's slot shares and mean probabilities are averaged over
    /// the tasks present, so the tasks together must use every expert but each task may keep
    /// its own (`taskmoe_kernels::aux::task_load_balance_loss`).
    Tasks,
}

/// Router settings. Every field has a default (the value shown in its doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Gating function. Default `token`.
    pub kind: RouterKind,
    /// Experts `E` routed over. Default 8.
    pub num_experts: usize,
    /// Experts per token `k`. Default 1 (Switch).
    pub k: usize,
    /// Capacity factor in training; `0` = dropless. Default 0: at 1.25 the default run dropped
    /// 5-19% of slots per step, by token order over the flattened batch, so the last examples
    /// of a batch lost their whole MoE path (docs/training.md).
    pub capacity_factor_train: f64,
    /// Capacity factor in evaluation; `0` = dropless. Default 0 (no eval-time drops).
    pub capacity_factor_eval: f64,
    /// Divide the `k` top weights by their sum (GShard/Mixtral) instead of using raw softmax
    /// probabilities (Switch). With `k = 1` the weight is the straight-through gate
    /// `p / stop_gradient(p)`: 1 in the forward pass, so the chosen expert acts at the full
    /// scale of the FFN it replaces, and `∂ log p` in the backward pass, so the task loss still
    /// trains the router (`taskmoe_kernels::top_k`). Raw `k = 1` weights (`false`) start near
    /// `1 / E`, which scales the MoE block down by that much. Default `true`.
    pub renormalize: bool,
    /// Multiplicative input jitter in training, `x * U(1 - eps, 1 + eps)` (Switch). Never in
    /// evaluation. Default 0 (off).
    pub jitter_eps: f64,
    /// Standard deviation of Gaussian noise added to the logits in training before top-k
    /// (noisy top-k with a fixed scale). Never in evaluation. Default 0 (off).
    pub noise_std: f64,
    /// Size of the learned task embedding of `task-concat` and `task-level`. Default 32.
    pub task_embedding_dim: usize,
    /// How task-aware gates start: `independent` (each task's drawn on its own) or `shared`
    /// (every task starts on the same gate and diverges by gradient; `per-task` gates become a
    /// shared gate plus a zero-initialised per-task delta). Ignored by `token`. Default
    /// `independent`.
    pub gate_start: GateStart,
    /// Soft-to-sparse warm-up: over the first `k_warmup_steps` training steps the experts per
    /// token fall linearly from every expert a token may choose (`E`; under `cgc` its own and
    /// the shared ones) to `k`, so routing starts as a dense mixture weighted by the gate
    /// (renormalised top-k) and every expert and gate row gets gradient from every token
    /// before the choice becomes sparse. Evaluation always uses `k`. For `token`,
    /// `task-concat`, `per-task`, `task-level` and `cgc`. Default 0 (off).
    pub k_warmup_steps: u64,
    /// Weight of the Switch load-balancing loss. Default 0.01.
    pub load_balance_coef: f64,
    /// What the load-balancing loss balances: `tokens` (Switch, over every token of the
    /// batch) or `tasks` (over the tasks of the batch, each task weighing the same, so tasks
    /// may partition the experts among them). Default `tokens`.
    pub balance_over: BalanceOver,
    /// Auxiliary-loss-free load balancing (DeepSeek-V3): with a rate `u > 0` each MoE layer
    /// keeps a per-expert bias `b` (saved with the weights, not trained by gradient) that is
    /// added to the logits only to choose the top-k experts, never to their weights; after
    /// every training forward pass `b_e += u * sign(mean load - load_e)` over the batch's
    /// routing slots (over all ranks under data parallelism), so under-used experts are
    /// chosen more. Usually combined with `load_balance_coef = 0`. Default 0 (off).
    pub bias_update_rate: f64,
    /// Weight of the ST-MoE router z-loss. Default 0.001.
    pub z_loss_coef: f64,
    /// Weight of the negative task-expert mutual information (Mod-Squad). Default 0.
    pub mutual_information_coef: f64,
    /// `cgc` only: experts each task owns. The first `tasks * task_experts` experts belong to
    /// the tasks in order (task `t` owns `t * task_experts ..`), the remaining ones are shared
    /// by every task, so `num_experts` must exceed `tasks * task_experts`. Default 1.
    pub task_experts: usize,
    /// `dselect-k` only: the width `gamma` of the smooth step
    /// `S(z) = -2 z^3 / gamma^3 + 3 z / (2 gamma) + 1/2` on `[-gamma/2, gamma/2]` (0 below,
    /// 1 above), which turns a selector's codes into expert weights. Default 1.
    pub smooth_step_gamma: f64,
    /// `dselect-k` only: weight of the mean entropy of the selectors' expert distributions,
    /// which pushes each selector to one expert (exact sparsity). Default 0.001.
    pub selection_entropy_coef: f64,
    /// `task-representation` only: how far each training batch moves a task's state towards
    /// the mean of its tokens in the batch, `s_t <- (1 - m) s_t + m mean_t(x)` (`1`: the last
    /// batch's mean; `0`: states move only by calibration or `init.task_init`, as when
    /// fine-tuning a new task on a state it was given). Default 0.05.
    pub task_state_momentum: f64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            kind: RouterKind::Token,
            num_experts: 8,
            k: 1,
            capacity_factor_train: 0.0,
            capacity_factor_eval: 0.0,
            renormalize: true,
            jitter_eps: 0.0,
            noise_std: 0.0,
            task_embedding_dim: 32,
            gate_start: GateStart::Independent,
            k_warmup_steps: 0,
            load_balance_coef: 0.01,
            balance_over: BalanceOver::Tokens,
            bias_update_rate: 0.0,
            z_loss_coef: 0.001,
            mutual_information_coef: 0.0,
            task_experts: 1,
            smooth_step_gamma: 1.0,
            selection_entropy_coef: 0.001,
            task_state_momentum: 0.05,
        }
    }
}

impl RouterConfig {
    /// Checks every value; errors name the key as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let err = |field: &str, message: String| {
            Err(RouterError::Config {
                key: format!("{prefix}.{field}"),
                message,
            })
        };
        if self.num_experts < 2 {
            return err(
                "num_experts",
                format!(
                    "must be at least 2, got {}: the softmax over one expert is the constant 1,                      so the router would get no gradient (use the dense variant)",
                    self.num_experts
                ),
            );
        }
        if self.k == 0 || self.k > self.num_experts {
            return err(
                "k",
                format!(
                    "must be in 1..={} (num_experts), got {}",
                    self.num_experts, self.k
                ),
            );
        }
        for (field, value) in [
            ("capacity_factor_train", self.capacity_factor_train),
            ("capacity_factor_eval", self.capacity_factor_eval),
        ] {
            if Capacity::from_factor(value).is_err() {
                return err(
                    field,
                    format!("must be 0 (dropless) or positive, got {value}"),
                );
            }
        }
        if !(0.0..1.0).contains(&self.jitter_eps) {
            return err(
                "jitter_eps",
                format!("must be in [0, 1), got {}", self.jitter_eps),
            );
        }
        for (field, value) in [
            ("noise_std", self.noise_std),
            ("load_balance_coef", self.load_balance_coef),
            ("z_loss_coef", self.z_loss_coef),
            ("mutual_information_coef", self.mutual_information_coef),
            ("bias_update_rate", self.bias_update_rate),
            ("selection_entropy_coef", self.selection_entropy_coef),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return err(field, format!("must be finite and >= 0, got {value}"));
            }
        }
        if self.kind.is_task_aware() && self.task_embedding_dim == 0 {
            return err("task_embedding_dim", "must be at least 1".into());
        }
        if self.k_warmup_steps > 0
            && !matches!(
                self.kind,
                RouterKind::Token
                    | RouterKind::TaskConcat
                    | RouterKind::PerTask
                    | RouterKind::TaskLevel
                    | RouterKind::Cgc
            )
        {
            return err(
                "k_warmup_steps",
                format!(
                    "must be 0 for `{}`: the warm-up lowers a token's top-k, which this kind \
                     does not choose",
                    self.kind.name()
                ),
            );
        }
        match self.kind {
            RouterKind::Mmoe if self.k != self.num_experts => {
                return err(
                    "k",
                    format!(
                        "must equal num_experts ({}) for `mmoe`, which mixes every expert, got \
                         {} (a sparse per-task gate is kind = \"per-task\")",
                        self.num_experts, self.k
                    ),
                )
            }
            RouterKind::Cgc if self.task_experts == 0 => {
                return err(
                    "task_experts",
                    "must be at least 1 for `cgc` (with none, use `per-task`)".into(),
                )
            }
            RouterKind::DselectK if self.bias_update_rate > 0.0 => {
                return err(
                    "bias_update_rate",
                    "must be 0 for `dselect-k`, whose gate has no logits for a bias to steer"
                        .into(),
                )
            }
            RouterKind::ExpertChoice if self.bias_update_rate > 0.0 => {
                return err(
                    "bias_update_rate",
                    "must be 0 for `expert-choice`, whose experts take equal shares by \
                     construction"
                        .into(),
                )
            }
            RouterKind::DselectK if !self.num_experts.is_power_of_two() => {
                return err(
                    "num_experts",
                    format!(
                        "must be a power of two for `dselect-k` (each selector is a binary code \
                         over the experts), got {}",
                        self.num_experts
                    ),
                )
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&self.task_state_momentum) {
            return err(
                "task_state_momentum",
                format!("must be in [0, 1], got {}", self.task_state_momentum),
            );
        }
        if !(self.smooth_step_gamma.is_finite() && self.smooth_step_gamma > 0.0) {
            return err(
                "smooth_step_gamma",
                format!("must be finite and > 0, got {}", self.smooth_step_gamma),
            );
        }
        Ok(())
    }

    /// Under `cgc` with `num_tasks` tasks: the experts every task shares, or an error naming
    /// `{prefix}.num_experts` / `{prefix}.k` when the experts do not cover the tasks or `k`
    /// exceeds what a task may choose from.
    pub fn cgc_shared_experts(&self, prefix: &str, num_tasks: usize) -> Result<usize> {
        let owned = num_tasks * self.task_experts;
        if self.num_experts <= owned {
            return Err(RouterError::Config {
                key: format!("{prefix}.num_experts"),
                message: format!(
                    "`cgc` gives each of the {num_tasks} tasks {} experts of its own ({owned} in \
                     all) and shares the rest, so it needs more than {owned} experts, got {}",
                    self.task_experts, self.num_experts
                ),
            });
        }
        let shared = self.num_experts - owned;
        if self.k > self.task_experts + shared {
            return Err(RouterError::Config {
                key: format!("{prefix}.k"),
                message: format!(
                    "a `cgc` task chooses from its {} own and {shared} shared experts, so k must \
                     be at most {}, got {}",
                    self.task_experts,
                    self.task_experts + shared,
                    self.k
                ),
            });
        }
        Ok(shared)
    }

    /// The capacity in training or evaluation.
    pub fn capacity(&self, train: bool) -> Capacity {
        let factor = if train {
            self.capacity_factor_train
        } else {
            self.capacity_factor_eval
        };
        Capacity::from_factor(factor).unwrap_or(Capacity::Dropless)
    }
}
