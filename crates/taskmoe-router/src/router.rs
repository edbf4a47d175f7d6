//! The gating functions.

use std::sync::atomic::{AtomicUsize, Ordering};

use tch::{nn, Kind, Tensor};

use taskmoe_kernels::{grouped_mm, top_k, top_k_biased, TaskGroups, TopK};

use crate::config::{GateStart, RouterConfig, RouterKind};
use crate::dselect;
use crate::expert_choice::{self, ExpertChoice};
use crate::task_state::TaskStates;

use crate::error::{Result, RouterError};

/// A router: maps token representations (and their task) to `k` experts with weights.
///
/// With `x` a token (`d`), `t` its task, `e_t` a learned task embedding (`d_task`) and
/// `p = softmax(logits)` computed in fp32, the logits are:
///
/// | kind | logits | parameters |
/// |---|---|---|
/// | `token` | `x W` | `weight [E, d]` |
/// | `task-concat` | `[x ; e_t] W = x W_x + e_t W_e` | `weight [E, d + d_task]`, `task_embedding [tasks, d_task]` |
/// | `per-task` | `x W_t` | `weight [tasks, E, d]` |
/// | `task-level` | `e_t W` (no token term) | `weight [E, d_task]`, `task_embedding [tasks, d_task]` |
/// | `mmoe` | `x W_t`, every expert mixed (`k = E`) | `weight [tasks, E, d]` |
/// | `cgc` | `x W_t + M_t` (`M_t = -1e9` outside task `t`'s own and the shared experts) | `weight [tasks, E, d]` |
/// | `dselect-k` | none: `p_t = sum_i softmax(a_t)_i r(z_ti)` (`crate::dselect`) | `codes [tasks, k, log2 E]`, `selector_logits [tasks, k]` |
/// | `expert-choice` | `x W`, experts then take tokens task by task ([`ExpertChoice`]) | `weight [E, d]` |
/// | `task-representation` | `x W + s_t M`, `s_t` the task's state (mean token state) | `weight [E, d]`, `task_map [E, d]`, state `task_state [tasks, d]` (not trained) |
///
/// Then the `k` largest of `p` are chosen, with weights renormalised or raw
/// ([`RouterConfig::renormalize`]). `task-level` makes one decision per task: every token of a
/// task gets the same experts, so experts that no task of the batch selected are never
/// computed, and [`Router::task_experts`] names a task's sub-network. `dselect-k` decides per
/// task too, and sends each token to every expert its task's gate weighs above zero (all of
/// them while the codes are soft, at most `k` once they saturate) with the gate's weights,
/// which already sum to 1 (`renormalize`, noise and jitter do not apply to it).
///
/// Everything here runs in fp32 with autocast disabled, whatever the surrounding precision.
/// Training adds the configured input jitter and logit noise (from libtorch's seeded RNG);
/// evaluation never does.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    num_tasks: usize,
    d_model: usize,
    weight: Tensor,
    task_embedding: Option<Tensor>,
    /// The gate every task shares, under `per-task` with `gate_start = "shared"` (`weight`
    /// then holds each task's delta from it). `[E, d]`
    shared_weight: Option<Tensor>,
    /// The per-expert selection bias of auxiliary-loss-free balancing
    /// ([`RouterConfig::bias_update_rate`] > 0), a non-trainable variable. `[E]`
    expert_bias: Option<Tensor>,
    /// `cgc`: the additive mask of the experts each task may choose (0) or not (`-1e9`), a
    /// constant. `[tasks, E]`
    allowed: Option<Tensor>,
    /// `dselect-k`: the selector logits `a` (`weight` holds the codes `z`) and the experts'
    /// binary digits. `[tasks, k]`, `[log2 E, E]`
    selectors: Option<(Tensor, Tensor)>,
    /// `task-representation`: the learned map `M` of a task's state to logits. `[E, d]`
    task_map: Option<Tensor>,
    /// `task-representation`: each task's state `s_t`.
    task_state: Option<TaskStates>,
    /// Experts per token in training, `k` after the soft-to-sparse warm-up
    /// ([`Router::set_training_step`]).
    training_k: AtomicUsize,
}

/// What a router decided for a batch of tokens.
#[derive(Debug)]
pub struct RouterOutput {
    /// Router logits in fp32. `[T, E]`
    pub logits: Tensor,
    /// Probabilities, chosen experts and their weights. `[T, E]`, `[T, k]`, `[T, k]`
    pub routed: TopK,
    /// `dselect-k`: the mean entropy of the selectors' expert distributions (fp32 scalar),
    /// which its `selection_entropy_coef` weighs; `None` for other kinds.
    pub selection_entropy: Option<Tensor>,
    /// `expert-choice`: the tokens each expert took and their weights, which replace
    /// `routed`'s choices in the MoE layer (`routed` then holds each token's preferred expert,
    /// for the router statistics); `None` for other kinds.
    pub expert_choice: Option<ExpertChoice>,
}

impl Router {
    /// Creates a router's parameters under `p` for `d_model`-wide tokens and `num_tasks` tasks
    /// (all tasks that will ever be routed, unseen ones included). Validates `cfg` first.
    ///
    /// Weights start at `N(0, 0.02^2)`, so initial routing is near uniform; task embeddings at
    /// `N(0, 1)`, so tasks start distinguishable. With `gate_start = "shared"` every task
    /// starts on the same gate: `per-task` deltas and task embeddings start at zero.
    ///
    /// The parameters come from the router's own keyed stream under
    /// [`taskmoe_device::keyed_initialisation`].
    pub fn new(p: nn::Path, cfg: &RouterConfig, d_model: usize, num_tasks: usize) -> Result<Self> {
        cfg.validate("router")?;
        taskmoe_device::draw_for(&taskmoe_device::module_name(&p), || {
            Self::draw(&p, cfg, d_model, num_tasks)
        })
    }

    fn draw(p: &nn::Path, cfg: &RouterConfig, d_model: usize, num_tasks: usize) -> Result<Self> {
        if num_tasks == 0 {
            return Err(RouterError::Input("num_tasks must be at least 1".into()));
        }
        let (e, d, dt) = (
            cfg.num_experts as i64,
            d_model as i64,
            cfg.task_embedding_dim as i64,
        );
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let shared = cfg.gate_start == GateStart::Shared;
        let tasks = num_tasks as i64;
        let (weight, shared_weight) = match cfg.kind {
            RouterKind::Token | RouterKind::ExpertChoice | RouterKind::TaskRepresentation => {
                (p.var("weight", &[e, d], init), None)
            }
            RouterKind::TaskConcat => (p.var("weight", &[e, d + dt], init), None),
            kind if kind.has_task_gates() && shared => (
                p.var("weight", &[tasks, e, d], nn::Init::Const(0.0)),
                Some(p.var("shared_weight", &[e, d], init)),
            ),
            kind if kind.has_task_gates() => (p.var("weight", &[tasks, e, d], init), None),
            RouterKind::TaskLevel => (p.var("weight", &[e, dt], init), None),
            RouterKind::DselectK => (Self::draw_codes(p, cfg, num_tasks), None),
            _ => unreachable!("every kind is matched above"),
        };
        let allowed = match cfg.kind {
            RouterKind::Cgc => Some(Self::cgc_mask(p.device(), cfg, num_tasks)?),
            _ => None,
        };
        let task_map = (cfg.kind == RouterKind::TaskRepresentation).then(|| {
            let init = match shared {
                true => nn::Init::Const(0.0),
                false => init,
            };
            p.var("task_map", &[e, d], init)
        });
        let task_state = (cfg.kind == RouterKind::TaskRepresentation)
            .then(|| TaskStates::new(p, tasks, d, cfg.task_state_momentum));
        let selectors = (cfg.kind == RouterKind::DselectK).then(|| {
            // Uniform in (-0.05, 0.05), as the paper's implementation draws them.
            let logits = Self::per_task_draw(p, num_tasks, &[cfg.k as i64], 0.05, shared);
            let logits = p.var_copy("selector_logits", &logits);
            (logits, dselect::code_bits(cfg.num_experts, p.device()))
        });
        let task_embedding = matches!(cfg.kind, RouterKind::TaskConcat | RouterKind::TaskLevel)
            .then(|| {
                let init = match shared {
                    true => nn::Init::Const(0.0),
                    false => nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                };
                p.var("task_embedding", &[num_tasks as i64, dt], init)
            });
        let expert_bias =
            (cfg.bias_update_rate > 0.0).then(|| p.zeros_no_train("expert_bias", &[e]));
        Ok(Router {
            cfg: cfg.clone(),
            num_tasks,
            d_model,
            weight,
            task_embedding,
            shared_weight,
            expert_bias,
            allowed,
            selectors,
            task_map,
            task_state,
            training_k: AtomicUsize::new(cfg.k),
        })
    }

    /// Tells the router the training step about to run, for the soft-to-sparse warm-up
    /// ([`RouterConfig::k_warmup_steps`]): at step `s < W` a token takes
    /// `k + ceil((K - k) (W - s) / W)` experts, `K` being all it may choose from; from step `W`
    /// on, `k`. Nothing changes without a warm-up.
    pub fn set_training_step(&self, step: u64) {
        let w = self.cfg.k_warmup_steps;
        if w == 0 {
            return;
        }
        let most = match &self.allowed {
            Some(_) => {
                self.cfg.task_experts
                    + (self.cfg.num_experts - self.num_tasks * self.cfg.task_experts)
            }
            None => self.cfg.num_experts,
        };
        let extra = (most - self.cfg.k) as u64;
        let k = match step < w {
            true => self.cfg.k + (extra * (w - step)).div_ceil(w) as usize,
            false => self.cfg.k,
        };
        self.training_k.store(k, Ordering::Relaxed);
    }

    /// Experts per token in training at the step last set ([`Router::set_training_step`]).
    pub fn training_k(&self) -> usize {
        self.training_k.load(Ordering::Relaxed)
    }

    /// `dselect-k`'s codes `z [tasks, k, log2 E]`, uniform in `(-gamma/100, gamma/100)` (the
    /// paper's implementation): every selector starts near the uniform distribution over the
    /// experts, each a little different.
    fn draw_codes(p: &nn::Path, cfg: &RouterConfig, num_tasks: usize) -> Tensor {
        let m = cfg.num_experts.trailing_zeros() as i64;
        let shape = [cfg.k as i64, m];
        let shared = cfg.gate_start == GateStart::Shared;
        let bound = cfg.smooth_step_gamma / 100.0;
        let codes = Self::per_task_draw(p, num_tasks, &shape, bound, shared);
        p.var_copy("codes", &codes)
    }

    /// `num_tasks` draws of `shape`, uniform in `(-bound, bound)`: one per task, or (`shared`)
    /// one repeated for every task, so all tasks start on the same gate (a zero start would
    /// leave every selector identical forever). `[tasks, shape...]`
    fn per_task_draw(
        p: &nn::Path,
        tasks: usize,
        shape: &[i64],
        bound: f64,
        shared: bool,
    ) -> Tensor {
        let draws = if shared { 1 } else { tasks as i64 };
        let full: Vec<i64> = std::iter::once(draws)
            .chain(shape.iter().copied())
            .collect();
        let u = (Tensor::rand(&full, (Kind::Float, p.device())) * 2.0 - 1.0) * bound;
        let every: Vec<i64> = std::iter::once(tasks as i64)
            .chain(shape.iter().copied())
            .collect();
        u.expand(&every, false).contiguous()
    }

    /// `cgc`'s mask: task `t` may choose its own experts `t * m .. (t + 1) * m` and the shared
    /// ones after all tasks' own.
    fn cgc_mask(device: tch::Device, cfg: &RouterConfig, num_tasks: usize) -> Result<Tensor> {
        // The key as a run configuration names it (the router knows the task count only here).
        cfg.cgc_shared_experts("model.moe.router", num_tasks)?;
        let (m, e) = (cfg.task_experts, cfg.num_experts);
        let owned = num_tasks * m;
        let mask: Vec<f32> = (0..num_tasks)
            .flat_map(|t| {
                (0..e).map(
                    move |x| match x >= owned || (t * m..(t + 1) * m).contains(&x) {
                        true => 0.0,
                        false => -1e9,
                    },
                )
            })
            .collect();
        Ok(Tensor::from_slice(&mask)
            .view([num_tasks as i64, e as i64])
            .to_device(device))
    }

    /// The configuration this router was built with.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// The names (under the router's path) of its trained variables that hold one row per
    /// task along their first dimension, row `t` used by task `t` alone: the per-task gates
    /// (`weight` of `per-task`, `mmoe`, `cgc`; with `gate_start = "shared"` the tasks' deltas),
    /// the task embeddings (`task-concat`, `task-level`) and DSelect-k's codes and selector
    /// logits. The router's other variables are shared by every task.
    pub fn task_indexed_variables(&self) -> Vec<&'static str> {
        self.task_rows().into_iter().map(|(name, _)| name).collect()
    }

    /// The trained variables with one row per task, with their names under the router's path
    /// (what [`Router::task_indexed_variables`] lists and [`Router::init_task_from`] mixes).
    fn task_rows(&self) -> Vec<(&'static str, &Tensor)> {
        match self.cfg.kind {
            kind if kind.has_task_gates() => vec![("weight", &self.weight)],
            RouterKind::TaskConcat | RouterKind::TaskLevel => {
                vec![("task_embedding", self.task_embedding())]
            }
            RouterKind::DselectK => {
                let (logits, _) = self.selectors.as_ref().expect("dselect-k has selectors");
                vec![("codes", &self.weight), ("selector_logits", logits)]
            }
            _ => Vec::new(),
        }
    }

    /// Number of task slots.
    pub fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    /// Routes tokens `x` of tasks `task_ids`; `train` enables jitter and noise. Task ids must
    /// lie in `0..num_tasks` (an out-of-range id is a libtorch index error).
    ///
    /// # Shapes
    /// `x: [T, d]` (any float dtype), `task_ids: [T]` int64 -> logits `[T, E]`, routed
    /// `[T, k]`.
    pub fn forward(&self, x: &Tensor, task_ids: &Tensor, train: bool) -> Result<RouterOutput> {
        self.forward_grouped(x, task_ids, None, train)
    }

    /// [`Router::forward`] with the tokens' [`TaskGroups`] (`task_ids` grouped by task) when
    /// the caller has them: the per-task gates (`per-task`, `mmoe`, `cgc`) run each token
    /// through its own task's gate as one grouped matmul over the task-ordered tokens, and
    /// `expert-choice`'s experts choose within each task's group. Without them these kinds
    /// group the ids themselves, reading the `[tasks]` counts back (on CUDA a host
    /// synchronisation; the model builds the groups once per batch from what it already read,
    /// [`RouterKind::uses_task_groups`]). Other kinds ignore them.
    ///
    /// # Shapes
    /// `x: [T, d]`, `task_ids: [T]` int64, groups over `T` rows -> logits `[T, E]`, routed
    /// `[T, k]`.
    pub fn forward_grouped(
        &self,
        x: &Tensor,
        task_ids: &Tensor,
        groups: Option<&TaskGroups>,
        train: bool,
    ) -> Result<RouterOutput> {
        self.check_inputs(x, task_ids)?;
        if let Some(g) = groups {
            if g.num_rows() != x.size()[0] as usize || g.layout.counts.len() != self.num_tasks {
                return Err(RouterError::Input(format!(
                    "task groups of {} rows over {} tasks for {} tokens over {} tasks",
                    g.num_rows(),
                    g.layout.counts.len(),
                    x.size()[0],
                    self.num_tasks
                )));
            }
        }
        // Autocast off on CPU and CUDA (tch::autocast only knows CUDA): logits, softmax and
        // top-k stay fp32 under bf16 mixed precision.
        taskmoe_device::full_precision(|| self.forward_fp32(x, task_ids, groups, train))
    }

    fn forward_fp32(
        &self,
        x: &Tensor,
        task_ids: &Tensor,
        groups: Option<&TaskGroups>,
        train: bool,
    ) -> Result<RouterOutput> {
        let cfg = &self.cfg;
        if cfg.kind == RouterKind::TaskLevel {
            // One decision per task, then every token takes its task's row.
            let mut task_logits = self.task_embedding().matmul(&self.weight.tr()); // (tasks, E)
            if train && cfg.noise_std > 0.0 {
                task_logits = &task_logits + task_logits.randn_like() * cfg.noise_std;
            }
            let per_task = self.select(&task_logits, train)?;
            let take = |t: &Tensor| t.f_index_select(0, task_ids);
            return Ok(RouterOutput {
                logits: take(&task_logits)?,
                routed: TopK {
                    probs: take(&per_task.probs)?,
                    weights: take(&per_task.weights)?,
                    experts: take(&per_task.experts)?,
                },
                selection_entropy: None,
                expert_choice: None,
            });
        }
        if cfg.kind == RouterKind::DselectK {
            return self.forward_dselect(task_ids);
        }
        // Out of place: `to_kind` returns the caller's own tensor when it is fp32 already, and
        // the jitter is the router's view of the tokens only (experts see them unjittered).
        let mut x = x.to_kind(Kind::Float);
        if train && cfg.jitter_eps > 0.0 {
            let noise = x.rand_like() * (2.0 * cfg.jitter_eps) + (1.0 - cfg.jitter_eps);
            x = &x * noise;
        }
        let d = self.d_model as i64;
        let mut logits = match cfg.kind {
            RouterKind::Token | RouterKind::ExpertChoice => x.matmul(&self.weight.tr()),
            RouterKind::TaskRepresentation => {
                let (map, state) = (
                    self.task_map
                        .as_ref()
                        .expect("task-representation has a map"),
                    self.task_state
                        .as_ref()
                        .expect("task-representation has states"),
                );
                // The task part once per task, then each token takes its task's row.
                let per_task = state.state.detach().matmul(&map.tr()); // (tasks, E)
                x.matmul(&self.weight.tr()) + per_task.f_index_select(0, task_ids)?
            }
            RouterKind::TaskConcat => {
                // [x ; e_t] W^T, with the task part computed once per task.
                let w_x = self.weight.narrow(1, 0, d);
                let w_e = self.weight.narrow(1, d, cfg.task_embedding_dim as i64);
                let per_task = self.task_embedding().matmul(&w_e.tr()); // (tasks, E)
                x.matmul(&w_x.tr()) + per_task.f_index_select(0, task_ids)?
            }
            kind if kind.has_task_gates() => {
                // Each token through its own task's gate: tokens grouped by task, one grouped
                // matmul over the per-task slices (exactly T * E * d multiply-adds, whatever
                // the number of tasks), and back to token order. Both gathers are by
                // permutations, so the backward adds into distinct rows (deterministic).
                let gates = match &self.shared_weight {
                    Some(shared) => (&self.weight + shared.unsqueeze(0)).transpose(1, 2),
                    None => self.weight.transpose(1, 2), // (tasks, d, E), a view
                };
                self.with_groups(task_ids, groups, |groups| {
                    let rows = groups.group(&x)?;
                    Ok(groups.ungroup(&grouped_mm(&rows, &gates, None, &groups.layout)?)?)
                })?
            }
            _ => unreachable!("task-level and dselect-k are handled above"),
        };
        if train && cfg.noise_std > 0.0 {
            logits = &logits + logits.randn_like() * cfg.noise_std;
        }
        if let Some(allowed) = &self.allowed {
            logits += allowed.f_index_select(0, task_ids)?;
        }
        if cfg.kind == RouterKind::ExpertChoice {
            let preferred = top_k(&logits, 1, cfg.renormalize)?;
            let choice = self.with_groups(task_ids, groups, |groups| {
                expert_choice::choose(&preferred.probs, groups, cfg.k, cfg.renormalize)
            })?;
            return Ok(RouterOutput {
                logits,
                routed: preferred,
                selection_entropy: None,
                expert_choice: Some(choice),
            });
        }
        let routed = self.select(&logits, train)?;
        Ok(RouterOutput {
            logits,
            routed,
            selection_entropy: None,
            expert_choice: None,
        })
    }

    /// `f` of the tokens grouped by task: the caller's groups, or built here from the ids
    /// (reading the per-task counts back).
    fn with_groups<R>(
        &self,
        task_ids: &Tensor,
        groups: Option<&TaskGroups>,
        f: impl FnOnce(&TaskGroups) -> Result<R>,
    ) -> Result<R> {
        match groups {
            Some(g) => f(g),
            None => f(&TaskGroups::new(task_ids, self.num_tasks)?),
        }
    }

    /// `dselect-k`'s decision ([`dselect::route`]).
    fn forward_dselect(&self, task_ids: &Tensor) -> Result<RouterOutput> {
        let (logits, bits) = self.selectors.as_ref().expect("dselect-k has selectors");
        dselect::route(
            &self.weight,
            logits,
            bits,
            self.cfg.smooth_step_gamma,
            task_ids,
        )
    }

    /// The top-k choice from `logits`, through the selection bias when balancing by bias; in
    /// training, `k` as the warm-up has it.
    fn select(&self, logits: &Tensor, train: bool) -> Result<TopK> {
        let k = match train {
            true => self.training_k(),
            false => self.cfg.k,
        };
        let renormalize = self.cfg.renormalize;
        Ok(match &self.expert_bias {
            Some(bias) => top_k_biased(logits, bias, k, renormalize)?,
            None => top_k(logits, k, renormalize)?,
        })
    }

    /// Whether this router keeps task states (`task-representation`), which its MoE layer
    /// updates through [`Router::observe_task_states`] before routing a training batch.
    pub fn observes_task_states(&self) -> bool {
        self.task_state.is_some()
    }

    /// The task states of a `task-representation` router, `None` for other kinds.
    /// `[tasks, d]`
    pub fn task_states(&self) -> Option<&Tensor> {
        self.task_state.as_ref().map(|t| &t.state)
    }

    /// Moves the task states towards a batch's per-task means of the token states entering
    /// the layer, from their sums `[tasks, d]` and token counts `[tasks]` (summed over the
    /// ranks that share the router): `s_t <- (1 - m) s_t + m sum_t / count_t` for every task
    /// with tokens. While calibrating, the states of the tasks seen since
    /// [`Router::begin_calibration`] become exactly the mean of all their observed tokens.
    /// Nothing happens for other kinds.
    pub fn observe_task_states(&self, sums: &Tensor, counts: &Tensor) -> Result<()> {
        match &self.task_state {
            Some(states) => states.observe(sums, counts),
            None => Ok(()),
        }
    }

    /// Starts a calibration: until [`Router::end_calibration`], the observed batches set the
    /// task states to the exact mean of their tokens (the layer observes in evaluation too).
    pub fn begin_calibration(&self) {
        if let Some(states) = &self.task_state {
            states.begin_calibration();
        }
    }

    /// Ends a calibration.
    pub fn end_calibration(&self) {
        if let Some(states) = &self.task_state {
            states.end_calibration();
        }
    }

    /// Whether a calibration is under way.
    pub fn is_calibrating(&self) -> bool {
        self.task_state
            .as_ref()
            .is_some_and(TaskStates::is_calibrating)
    }

    /// The selection bias of auxiliary-loss-free balancing, `None` when it is off. `[E]`
    pub fn expert_bias(&self) -> Option<&Tensor> {
        self.expert_bias.as_ref()
    }

    /// One update of the selection bias from the routing slots each expert received in a
    /// training step (`slots: [E]`, summed over the ranks that share the bias):
    /// `b_e += rate * sign(mean(slots) - slots_e)`. Nothing happens when balancing by bias is
    /// off.
    pub fn update_expert_bias(&self, slots: &Tensor) -> Result<()> {
        let Some(bias) = &self.expert_bias else {
            return Ok(());
        };
        if slots.size() != bias.size() {
            return Err(RouterError::Input(format!(
                "expert slot counts of shape {:?} for a bias of shape {:?}",
                slots.size(),
                bias.size()
            )));
        }
        tch::no_grad(|| -> Result<()> {
            let slots = slots.to_kind(Kind::Float);
            let step = (slots.mean(Kind::Float) - &slots).sign() * self.cfg.bias_update_rate;
            let _ = bias.shallow_clone().f_add_(&step)?;
            Ok(())
        })
    }

    /// The experts a `task-level` router sends every token of `task` to, best first (the
    /// task's sub-network; noise-free). `None` for other router kinds, whose choice depends on
    /// the token.
    pub fn task_experts(&self, task: usize) -> Result<Option<Vec<usize>>> {
        if self.cfg.kind != RouterKind::TaskLevel {
            return Ok(None);
        }
        self.check_task(task)?;
        let logits = tch::no_grad(|| {
            self.task_embedding()
                .get(task as i64)
                .unsqueeze(0)
                .matmul(&self.weight.tr())
        });
        let routed = self.select(&logits, false)?;
        let experts: Vec<i64> = Vec::try_from(&routed.experts.reshape([-1]))?;
        Ok(Some(experts.into_iter().map(|e| e as usize).collect()))
    }

    /// Initialises the routing of `task` from other tasks: the task-specific parameters (task
    /// embedding row, or per-task gate matrix) become `sum_i w_i * param[source_i] / sum_i w_i`.
    /// A single source with any positive weight copies it. The token router has no task
    /// parameters: nothing changes and `Ok(false)` says so. `dselect-k` mixes the selector codes
    /// and logits; `cgc` mixes the gates, but the new task's mask hides its sources' own
    /// experts, so only their routing over the shared experts carries over.
    /// `task-representation` mixes the task states (the new task's own examples would set
    /// its state instead: [`Router::observe_task_states`]); `expert-choice` has no task
    /// parameters.
    ///
    /// This is how an unseen task reuses the routing of related seen tasks.
    pub fn init_task_from(&self, task: usize, sources: &[(usize, f64)]) -> Result<bool> {
        self.check_task(task)?;
        let total: f64 = sources.iter().map(|(_, w)| w).sum();
        if sources.is_empty()
            || !total.is_finite()
            || total <= 0.0
            || sources.iter().any(|&(_, w)| w < 0.0)
        {
            return Err(RouterError::Input(
                "init_task_from needs at least one source and non-negative weights with a \
                 positive sum"
                    .into(),
            ));
        }
        for &(s, _) in sources {
            self.check_task(s)?;
        }
        // The per-task rows of the trained variables, and task-representation's task states.
        let mut params: Vec<&Tensor> = self.task_rows().into_iter().map(|(_, t)| t).collect();
        if let Some(states) = &self.task_state {
            params.push(&states.state);
        }
        if params.is_empty() {
            return Ok(false);
        }
        tch::no_grad(|| {
            for param in params {
                let mut mix = param.get(sources[0].0 as i64).zeros_like();
                for &(s, w) in sources {
                    mix += param.get(s as i64) * (w / total);
                }
                param.get(task as i64).copy_(&mix);
            }
        });
        Ok(true)
    }

    fn task_embedding(&self) -> &Tensor {
        self.task_embedding
            .as_ref()
            .expect("task-aware routers have a task embedding")
    }

    fn check_task(&self, task: usize) -> Result<()> {
        if task >= self.num_tasks {
            return Err(RouterError::Input(format!(
                "task {task} is out of range: the router has {} task slots",
                self.num_tasks
            )));
        }
        Ok(())
    }

    fn check_inputs(&self, x: &Tensor, task_ids: &Tensor) -> Result<()> {
        let xs = x.size();
        if xs.len() != 2 || xs[1] != self.d_model as i64 {
            return Err(RouterError::Input(format!(
                "x has shape {xs:?}, expected [tokens, {}]",
                self.d_model
            )));
        }
        if task_ids.size() != [xs[0]] || task_ids.kind() != Kind::Int64 {
            return Err(RouterError::Input(format!(
                "task_ids has shape {:?} and dtype {:?}, expected [{}] int64 (one per token)",
                task_ids.size(),
                task_ids.kind(),
                xs[0]
            )));
        }
        // Id ranges are not read back here (that would be a host sync per layer): the model
        // checks each batch once on the host, and libtorch rejects out-of-range indices.
        Ok(())
    }
}
