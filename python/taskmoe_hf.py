"""Load a `taskmoe export --format hf` folder in PyTorch and reproduce taskmoe's logits.

With this module (`python/` of the repository) importable, `TaskMoeExport` is the model:

    model = TaskMoeExport("runs/task-moe-seed0/export-hf-step2000")
    logits = model(input_ids, attention_mask, token_type_ids, task_ids)  # [B, widest head]

(No import line stands in this docstring: `transformers` scans the files an export carries
for `import` lines, docstrings included, and refuses modules it cannot import.)

Two layouts (see docs/checkpoints.md, "Exporting"):

- `model_type: "bert"` (dense models, and one task's sub-network of a task-level MoE model):
  the encoder is loaded with `transformers.BertModel`; taskmoe's heads run on its pooled
  output.
- `model_type: "taskmoe"` (MoE models): the encoder is written out below with the tensors of
  `model.safetensors` under their taskmoe names: embeddings (+ a task embedding, added or as a
  prefix token), post- or pre-LN blocks, dense FFNs or MoE layers (routers `token`,
  `task-concat`, `per-task` with independent or shared gates, `task-level`; fp32 softmax,
  top-k (through the selection bias of bias balancing when there is one), optional
  renormalisation, the evaluation capacity with taskmoe's drop order, shared experts),
  pooling and heads.

Logits follow taskmoe: one row per example, padded to the widest head with -1e9.

As a script it writes the logits of a folder on given inputs (how the golden fixtures of
`crates/taskmoe-model/tests/export.rs` were made):

    python python/taskmoe_hf.py FOLDER --inputs inputs.json --out expected.json

Needs `torch` and `safetensors` (and `transformers` for the bert layout).

`taskmoe export` writes this file, unchanged, into every taskmoe-layout export folder, where
`modeling_taskmoe.py` (`TaskmoeModel`, what `AutoModel.from_pretrained(folder,
trust_remote_code=True)` loads) runs its `TaskMoeExport`.
"""

import argparse
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

MISSING_CLASS_LOGIT = -1e9


class TaskMoeExport(torch.nn.Module):
    """An exported taskmoe model in evaluation mode (no dropout, no router noise)."""

    def __init__(self, folder):
        super().__init__()
        with open(os.path.join(folder, "config.json")) as f:
            self.config = json.load(f)
        meta = self.config["taskmoe"]
        self.layout = meta["layout"]
        self.head_specs = meta["heads"]
        self.heads = {
            k: v.float() for k, v in load_file(os.path.join(folder, meta["heads_file"])).items()
        }
        if self.layout == "bert":
            from transformers import BertModel

            self.bert = BertModel.from_pretrained(folder, add_pooling_layer=False).float().eval()
            self.pooling = meta["pooling"]
            self.eps = self.config["layer_norm_eps"]
        else:
            self.m = meta["model"]
            # taskmoe exports LoRA experts merged into FFN experts; any other kind is a layout
            # this reader does not know, refused rather than run wrong.
            kind = self.m.get("moe", {}).get("expert_kind", "ffn")
            if kind != "ffn":
                raise ValueError(
                    f"model.moe.expert_kind = {kind!r}: this reader runs FFN experts only "
                    "(taskmoe export merges LoRA experts into them)"
                )
            self.pooling = self.m["pooling"]
            self.eps = self.m["layer_norm_eps"]
            self.state = {
                k: v.float() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()
            }

    # -- building blocks -------------------------------------------------------------------

    def _ln(self, x, name):
        s = self.state
        return F.layer_norm(x, x.shape[-1:], s[name + ".weight"], s[name + ".bias"], self.eps)

    def _linear(self, x, name):
        return F.linear(x, self.state[name + ".weight"], self.state[name + ".bias"])

    def _dense_ffn(self, x, prefix):
        h = F.gelu(self._linear(x, prefix + ".intermediate.dense"))
        return self._linear(h, prefix + ".output.dense")

    def _attention(self, x, mask, prefix):
        b, l, d = x.shape
        heads = self.m["num_heads"]

        def split(t):
            return t.view(b, l, heads, d // heads).transpose(1, 2)

        q = split(self._linear(x, prefix + ".self.query"))
        k = split(self._linear(x, prefix + ".self.key"))
        v = split(self._linear(x, prefix + ".self.value"))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // heads)
        scores = scores.masked_fill(~mask.view(b, 1, 1, l), float("-inf"))
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, l, d)
        return self._linear(context, prefix + ".output.dense")

    def _router_logits(self, x, tasks, prefix, r):
        w = self.state[prefix + ".router.weight"]
        kind = r["kind"]
        if kind == "token":
            return x @ w.T
        emb = self.state.get(prefix + ".router.task_embedding")
        if kind == "task-concat":
            d = x.shape[1]
            return x @ w[:, :d].T + (emb @ w[:, d:].T)[tasks]
        if kind in ("per-task", "mmoe", "cgc"):
            shared = self.state.get(prefix + ".router.shared_weight")
            if shared is not None:  # gate_start = "shared": each task's gate is W + D_t
                w = w + shared.unsqueeze(0)
            logits = torch.einsum("ted,td->te", w[tasks], x)
            if kind == "cgc":  # each task over its own experts and the shared ones
                n_tasks, e_count, m = w.shape[0], w.shape[1], r["task_experts"]
                expert = torch.arange(e_count)
                own = expert[None, :] // m == torch.arange(n_tasks)[:, None]
                allowed = own | (expert >= n_tasks * m)[None, :]
                logits = logits + torch.where(allowed, 0.0, -1e9)[tasks]
            return logits
        if kind == "task-level":
            return (emb @ w.T)[tasks]
        if kind == "task-representation":  # x W + s_t M, s_t the task's saved state
            state = self.state[prefix + ".router.task_state"]
            m = self.state[prefix + ".router.task_map"]
            return x @ w.T + (state @ m.T)[tasks]
        raise ValueError(f"unknown router kind {kind}")

    def _dselect_gate(self, prefix, r):
        # DSelect-k: per task, sum_i softmax(a)_i prod_j (bit_j(e) ? S(z_ij) : 1 - S(z_ij))
        z = self.state[prefix + ".router.codes"].float()  # [tasks, k, m]
        a = self.state[prefix + ".router.selector_logits"].float()  # [tasks, k]
        g = r["smooth_step_gamma"]
        zc = z.clamp(-g / 2, g / 2)
        s = -2 / g**3 * zc**3 + 1.5 / g * zc + 0.5
        e_count = r["num_experts"]
        bits = ((torch.arange(e_count)[None, :] >> torch.arange(z.shape[2])[:, None]) & 1).float()
        sel = ((1 - bits) + s[..., None] * (2 * bits - 1)).prod(2)  # [tasks, k, E]
        return (a.softmax(-1)[..., None] * sel).sum(1)  # [tasks, E]

    def _expert_choice(self, x, tasks, prefix, r):
        # each expert takes, within each task, the ceil(k n_t / E) tokens of largest affinity
        e_count, k = r["num_experts"], r["k"]
        probs = (x @ self.state[prefix + ".router.weight"].T).float().softmax(-1)
        takers, weights = [], []
        for t in tasks.unique(sorted=True).tolist():
            members = (tasks == t).nonzero().squeeze(1)
            c = min(len(members), -(-k * len(members) // e_count))
            values, index = probs[members].topk(c, dim=0)  # [c, E]
            takers.append(members[index].T)
            weights.append(values.T)
        takers, weights = torch.cat(takers, 1), torch.cat(weights, 1)  # [E, C]
        if r["renormalize"]:
            sums = torch.zeros(x.shape[0]).index_add(0, takers.reshape(-1), weights.reshape(-1))
            weights = weights / sums[takers]
        s = self.state
        y = torch.zeros_like(x)
        for e in range(e_count):
            rows = takers[e]
            h = F.gelu(x[rows] @ s[prefix + ".experts.w1"][e] + s[prefix + ".experts.b1"][e])
            out = h @ s[prefix + ".experts.w2"][e] + s[prefix + ".experts.b2"][e]
            y = y.index_add(0, rows, weights[e][:, None] * out)
        if prefix + ".shared_expert.intermediate.dense.weight" in s:
            y = y + self._dense_ffn(x, prefix + ".shared_expert")
        return y

    def _moe(self, x, tasks, prefix):
        r = self.m["moe"]["router"]
        e_count, k = r["num_experts"], r["k"]
        if r["kind"] == "expert-choice":
            return self._expert_choice(x, tasks, prefix, r)
        if r["kind"] == "dselect-k":
            # every expert its task weighs above zero, at the gate's weights (which sum to 1)
            probs = self._dselect_gate(prefix, r)[tasks]
            k = max(1, int((probs > 0).sum(-1).max()))
            weights, experts = probs.topk(k, dim=-1, largest=True, sorted=True)
            return self._run_experts(x, prefix, r, weights, experts, k)
        logits = self._router_logits(x, tasks, prefix, r).float()
        probs = logits.softmax(-1)
        bias = self.state.get(prefix + ".router.expert_bias")
        if bias is None:
            weights, experts = probs.topk(k, dim=-1, largest=True, sorted=True)
        else:  # bias balancing: chosen by logits + bias, weighted by the unbiased probs
            experts = (logits + bias.float()).topk(k, dim=-1, largest=True, sorted=True)[1]
            weights = probs.gather(-1, experts)
        if r["renormalize"]:
            weights = weights / weights.sum(-1, keepdim=True)
        return self._run_experts(x, prefix, r, weights, experts, k)

    def _run_experts(self, x, prefix, r, weights, experts, k):
        e_count = r["num_experts"]
        t = x.shape[0]
        keep = torch.ones_like(experts, dtype=torch.bool)
        factor = r["capacity_factor_eval"]
        if factor > 0:
            # taskmoe's drop order: all first choices in token order, then second choices...
            cap = max(1, math.ceil(factor * t * k / e_count))
            order = experts.T.reshape(-1)  # choice-major
            onehot = F.one_hot(order, e_count)
            position = (onehot.cumsum(0) - 1).gather(1, order[:, None]).squeeze(1)
            keep = (position < cap).view(k, t).T
        s = self.state
        y = torch.zeros_like(x)
        for e in range(e_count):
            hit = (experts == e) & keep  # [T, k]
            rows = hit.any(-1).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            h = F.gelu(x[rows] @ s[prefix + ".experts.w1"][e] + s[prefix + ".experts.b1"][e])
            out = h @ s[prefix + ".experts.w2"][e] + s[prefix + ".experts.b2"][e]
            w = (weights * hit)[rows].sum(-1, keepdim=True)
            y[rows] += w * out
        if prefix + ".shared_expert.intermediate.dense.weight" in s:
            y = y + self._dense_ffn(x, prefix + ".shared_expert")
        return y

    def _is_moe_block(self, i):
        return self.m["variant"] in ("token-moe", "task-moe") and (i + 1) % self.m["moe_every"] == 0

    def _encode(self, input_ids, attention_mask, token_type_ids, task_ids):
        s, m = self.state, self.m
        b, l = input_ids.shape
        positions = torch.arange(l)
        x = (
            s["embeddings.word_embeddings.weight"][input_ids]
            + s["embeddings.position_embeddings.weight"][positions][None]
            + s["embeddings.token_type_embeddings.weight"][token_type_ids]
        )
        mode = m["task_embedding"]
        if mode == "added":
            x = x + s["task_embeddings.weight"][task_ids][:, None]
        x = self._ln(x, "embeddings.LayerNorm")
        mask = attention_mask.bool()
        if mode == "prefix":
            token = self._ln(s["task_embeddings.weight"][task_ids], "embeddings.LayerNorm")
            x = torch.cat([token[:, None], x], 1)
            mask = torch.cat([torch.ones(b, 1, dtype=torch.bool), mask], 1)
        l = x.shape[1]
        real = mask.reshape(-1).nonzero().squeeze(1)  # the feed-forwards see real tokens only
        tasks = task_ids[:, None].expand(b, l).reshape(-1)[real]

        def ffn(h, i):
            flat = h.reshape(b * l, -1)
            rows = flat[real]
            p = f"encoder.layer.{i}"
            out = self._moe(rows, tasks, p + ".moe") if self._is_moe_block(i) else self._dense_ffn(rows, p)
            y = torch.zeros_like(flat)
            y[real] = out
            return y.view(b, l, -1)

        for i in range(m["num_layers"]):
            p = f"encoder.layer.{i}"
            if m["norm"] == "post":
                x = self._ln(x + self._attention(x, mask, p + ".attention"), p + ".attention.output.LayerNorm")
                x = self._ln(x + ffn(x, i), p + ".output.LayerNorm")
            else:
                x = x + self._attention(self._ln(x, p + ".attention.output.LayerNorm"), mask, p + ".attention")
                x = x + ffn(self._ln(x, p + ".output.LayerNorm"), i)
        if m["norm"] == "pre":
            x = self._ln(x, "encoder.final_layer_norm")
        return x, mask, 1 if mode == "prefix" else 0

    # -- the model -------------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, input_ids, attention_mask, token_type_ids=None, task_ids=None):
        """Logits `[B, widest head]` for int64 `input_ids`, `attention_mask`,
        `token_type_ids` `[B, L]` and `task_ids` `[B]` (task positions in the heads list)."""
        b = input_ids.shape[0]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if task_ids is None:
            task_ids = torch.zeros(b, dtype=torch.long)
        if self.layout == "bert":
            x = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask, offset = attention_mask.bool(), 0
        else:
            x, mask, offset = self._encode(input_ids, attention_mask, token_type_ids, task_ids)
        if self.pooling == "first":
            pooled = x[:, offset]
        else:
            xs, ms = x[:, offset:], mask[:, offset:].to(x.dtype)[..., None]
            pooled = (xs * ms).sum(1) / ms.sum(1).clamp_min(1.0)
        width = max(1 if "regression" in h["kind"] else h["kind"]["classification"]["num_labels"]
                    for h in self.head_specs)
        logits = torch.full((b, width), MISSING_CLASS_LOGIT)
        for t in range(len(self.head_specs)):
            rows = (task_ids == t).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            hs = self.heads
            h = pooled[rows]
            if f"heads.{t}.dense.weight" in hs:  # an MLP head; a linear head has `out` alone
                h = torch.tanh(F.linear(h, hs[f"heads.{t}.dense.weight"], hs[f"heads.{t}.dense.bias"]))
            out = F.linear(h, hs[f"heads.{t}.out.weight"], hs[f"heads.{t}.out.bias"])
            logits[rows, : out.shape[1]] = out
        return logits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument(
        "--inputs", required=True, help="JSON with input_ids, attention_mask, token_type_ids, task_ids"
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.inputs) as f:
        inputs = {k: torch.tensor(v, dtype=torch.long) for k, v in json.load(f).items()}
    model = TaskMoeExport(args.folder)
    task_ids = inputs["task_ids"].reshape(-1)  # written as one row
    logits = model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], task_ids)
    with open(args.out, "w") as f:
        json.dump({"logits": logits.tolist(), "made_by": "python/taskmoe_hf.py", "torch": torch.__version__}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
