//! Parameter and compute accounting for any configuration, without building the model.

use std::fmt;

use taskmoe_experts::ExpertKind;
use taskmoe_router::{GateStart, RouterKind};

use crate::config::{ModelConfig, NormPlacement, TaskEmbedding};
use crate::heads::HeadSpec;

/// Sizes and cost of a model, so "the compute of a dense model" can be checked per variant.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamReport {
    /// Every parameter, trained or frozen (the frozen base FFNs of LoRA experts are weights
    /// and count; buffers that other rules move, such as a router's selection bias or task
    /// states, do not).
    pub total: u64,
    /// The parameters a gradient reaches and the optimizer holds: [`ParamReport::total`] less
    /// the frozen base FFNs of LoRA experts, the frozen bottom (`frozen_layers`: embeddings and
    /// those blocks; an `added` task embedding above them trains) and, after
    /// [`ParamReport::with_frozen_pretrained`], less the pretrained encoder
    /// (`train.freeze_pretrained`). `train.train_only` is not reflected here.
    pub trainable: u64,
    /// Parameters one token of one task uses: everything except the experts its router does
    /// not select (`E - k` per MoE block; `k` on average under `expert-choice`, at most `k`
    /// once `dselect-k`'s codes saturate, all `E` under `mmoe`; with LoRA experts the base FFN
    /// is used by every token and only unselected experts' factors are left out), other
    /// tasks' router parameters, task embeddings and heads (the widest head is counted).
    /// Embedding tables are counted whole.
    pub active_per_token: u64,
    /// Forward FLOPs per token (a multiply-add is 2) of the matmuls: attention projections,
    /// attention scores at `seq_len`, the FFN or the router (as implemented: `per-task`
    /// scores all tasks' gates, `task-level` nothing per token) plus `k` experts (plus shared
    /// experts; LoRA experts: the base FFN once plus `k` rank-`r` updates, `4 r (d + d_ff)`
    /// each), and the head amortised over `seq_len`. LayerNorm, softmax and activations are
    /// left out.
    pub flops_per_token: u64,
    /// Forward FLOPs per token of the blocks above the frozen ones (`frozen_layers`) and the
    /// head: what a training step runs once the frozen blocks' states are cached. Equal to
    /// [`ParamReport::flops_per_token`] without frozen blocks.
    pub trained_flops_per_token: u64,
    /// The sequence length the FLOPs assume.
    pub seq_len: usize,
    /// Total parameters by part: embeddings, attention, dense FFNs, routers, experts, shared
    /// experts, heads; with LoRA experts, `experts` counts their factors and `expert base
    /// FFNs` the frozen FFNs they update.
    pub parts: Vec<(&'static str, u64)>,
    /// What [`ParamReport::with_frozen_pretrained`] takes out of the trainable count: the
    /// embeddings (less task embeddings), attention, LayerNorms and dense FFNs.
    pretrained: u64,
}

/// Computes the report for `cfg` with these heads at sequence length `seq_len`.
pub fn param_report(cfg: &ModelConfig, heads: &[HeadSpec], seq_len: usize) -> ParamReport {
    let (d, t, l) = (cfg.d_model as u64, heads.len() as u64, seq_len as u64);
    let ffn = |f: u64| d * f + f + f * d + d;
    let layer_norm = 2 * d;

    let mut embeddings =
        (cfg.vocab_size + cfg.max_position + cfg.type_vocab_size) as u64 * d + layer_norm;
    let task_embedding = match cfg.task_embedding {
        TaskEmbedding::None => 0,
        TaskEmbedding::Added | TaskEmbedding::Prefix => t * d,
    };
    embeddings += task_embedding;
    let attention_block = 4 * (d * d + d) + 2 * layer_norm;
    let final_norm = if cfg.norm == NormPlacement::Pre {
        layer_norm
    } else {
        0
    };

    let r = &cfg.moe.router;
    let (e, k, fe) = (r.num_experts as u64, r.k as u64, cfg.moe.d_ff as u64);
    // One expert's own parameters and forward FLOPs per token, and the frozen base FFN a LoRA
    // bank's experts share (one per MoE block).
    let lora = cfg.variant.is_moe() && cfg.moe.expert_kind == ExpertKind::Lora;
    let rank = cfg.moe.lora_rank as u64;
    let (expert_params, expert_flops, base_params, base_flops) = match lora {
        false => (ffn(fe), 4 * d * fe, 0, 0),
        true => (
            2 * rank * (d + fe),
            4 * rank * (d + fe),
            ffn(fe),
            4 * d * fe,
        ),
    };
    let dt = r.task_embedding_dim as u64;
    let (router, router_inactive) = match r.kind {
        RouterKind::Token | RouterKind::ExpertChoice => (e * d, 0),
        RouterKind::TaskConcat => (e * (d + dt) + t * dt, (t - 1) * dt),
        // A shared per-task gate (`gate_start = "shared"`) adds the gate every task uses.
        kind if kind.has_task_gates() && r.gate_start == GateStart::Shared => {
            (t * e * d + e * d, (t - 1) * e * d)
        }
        RouterKind::PerTask | RouterKind::Mmoe | RouterKind::Cgc => (t * e * d, (t - 1) * e * d),
        RouterKind::TaskLevel => (e * dt + t * dt, (t - 1) * dt),
        // The token gate and the map of task states (the states are not trained).
        RouterKind::TaskRepresentation => (2 * e * d, 0),
        // Codes `[tasks, k, log2 E]` and selector logits `[tasks, k]`.
        RouterKind::DselectK => {
            let per_task = k * (e.trailing_zeros() as u64 + 1);
            (t * per_task, (t - 1) * per_task)
        }
    };
    let shared_width = cfg.moe.num_shared_experts as u64 * fe;
    let shared = if shared_width > 0 {
        ffn(shared_width)
    } else {
        0
    };

    let moe_blocks = (0..cfg.num_layers).filter(|&i| cfg.is_moe_block(i)).count() as u64;
    let dense_blocks = cfg.num_layers as u64 - moe_blocks;
    let head_params = |h: &HeadSpec| {
        let c = h.num_outputs() as u64;
        let dense = match cfg.head {
            crate::config::HeadStyle::Mlp => d * d + d,
            crate::config::HeadStyle::Linear => 0,
        };
        dense + d * c + c
    };
    let heads_total: u64 = heads.iter().map(head_params).sum();
    let widest_head = heads.iter().map(head_params).max().unwrap_or(0);
    let widest_outputs = heads.iter().map(|h| h.num_outputs()).max().unwrap_or(0) as u64;

    let attention = cfg.num_layers as u64 * attention_block + final_norm;
    let dense_ffns = dense_blocks * ffn(cfg.d_ff as u64);
    let mut parts = vec![
        ("embeddings", embeddings),
        ("attention", attention),
        ("dense FFNs", dense_ffns),
        ("routers", moe_blocks * router),
        ("experts", moe_blocks * e * expert_params),
    ];
    if lora {
        parts.push(("expert base FFNs", moe_blocks * base_params));
    }
    // Tower blocks (`tower_layers`): a LayerNorm and a MoE layer (MoE variants) or a dense
    // FFN, once per example rather than per token.
    let tower_blocks = cfg.tower_layers as u64;
    let tower_moe = cfg.variant.is_moe();
    let tower_block = layer_norm
        + match tower_moe {
            true => router + e * expert_params + base_params + shared,
            false => ffn(cfg.d_ff as u64),
        };
    parts.extend([
        ("shared experts", moe_blocks * shared),
        ("tower", tower_blocks * tower_block),
        ("heads", heads_total),
    ]);
    let total: u64 = parts.iter().map(|(_, n)| n).sum();
    let routed_blocks = moe_blocks + if tower_moe { tower_blocks } else { 0 };
    let inactive = routed_blocks * ((e - k) * expert_params + router_inactive)
        + if task_embedding > 0 { (t - 1) * d } else { 0 }
        + (heads_total - widest_head);

    let attention_flops = 8 * d * d + 4 * l * d;
    let dense_ffn_flops = 4 * d * cfg.d_ff as u64;
    // Router: token and task-concat score E experts per token (the task part of task-concat
    // is per task); per-task scores every task's gate in one matmul; task-level decides per
    // task, nothing per token.
    let router_flops = match r.kind {
        RouterKind::Token
        | RouterKind::TaskConcat
        | RouterKind::ExpertChoice
        | RouterKind::TaskRepresentation => 2 * d * e,
        RouterKind::PerTask | RouterKind::Mmoe | RouterKind::Cgc => 2 * d * e * t,
        RouterKind::TaskLevel | RouterKind::DselectK => 0,
    };
    let moe_flops = router_flops + base_flops + k * expert_flops + 4 * d * shared_width;
    let head_flops = (2 * d * d + 2 * d * widest_outputs) / l.max(1);
    let tower_flops = tower_blocks
        * match tower_moe {
            true => moe_flops,
            false => dense_ffn_flops,
        }
        / l.max(1);
    let flops_per_token = cfg.num_layers as u64 * attention_flops
        + dense_blocks * dense_ffn_flops
        + moe_blocks * moe_flops
        + tower_flops
        + head_flops;
    // The frozen bottom (`frozen_layers`) is dense and sees no task: the embeddings (less an
    // `added` task table, which enters above it and trains) and whole dense blocks.
    let frozen_blocks = cfg.frozen_layers as u64;
    let frozen = match frozen_blocks {
        0 => 0,
        n => embeddings - task_embedding + n * (attention_block + ffn(cfg.d_ff as u64)),
    };
    let frozen_flops = frozen_blocks * (attention_flops + dense_ffn_flops);
    ParamReport {
        total,
        trainable: total - routed_blocks * base_params - frozen,
        active_per_token: total - inactive,
        flops_per_token,
        trained_flops_per_token: flops_per_token - frozen_flops,
        seq_len,
        parts,
        pretrained: embeddings - task_embedding + attention + dense_ffns - frozen,
    }
}

impl ParamReport {
    /// The report of the same model trained with `train.freeze_pretrained`: the embeddings,
    /// attention, LayerNorms and dense FFNs (everything a BERT import fills by name,
    /// [`crate::is_pretrained_param`]) leave the trainable count.
    pub fn with_frozen_pretrained(mut self) -> Self {
        self.trainable -= self.pretrained.min(self.trainable);
        self.pretrained = 0;
        self
    }
}

impl fmt::Display for ParamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "parameters          {:>14}", group(self.total))?;
        writeln!(f, "trainable           {:>14}", group(self.trainable))?;
        writeln!(
            f,
            "active per token    {:>14}",
            group(self.active_per_token)
        )?;
        writeln!(
            f,
            "forward FLOPs/token {:>14}  (sequence length {})",
            group(self.flops_per_token),
            self.seq_len
        )?;
        if self.trained_flops_per_token != self.flops_per_token {
            writeln!(
                f,
                "  above frozen      {:>14}  (what a step runs once the frozen blocks' states \
                 are cached)",
                group(self.trained_flops_per_token)
            )?;
        }
        for (part, n) in &self.parts {
            writeln!(f, "  {part:<17} {:>14}", group(*n))?;
        }
        Ok(())
    }
}

/// `1234567` -> `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
