"""PyTorch eager reference of the real-workload step of `benches/real_step.rs`.

The same work as taskmoe's MiniLM point, written the way a competent PyTorch user would:
Hugging Face `transformers.BertModel` loaded from the MiniLM folder (training mode, its
dropout 0.1), mean pooling over real tokens, one `tanh` head per task (a loop over the tasks
present), and for task-MoE every second block's FFN replaced by a Mixtral-style sparse block
(`MixtralSparseMoeBlock`'s loop over the experts that received tokens, `index_add_`) whose
experts are copies of that block's pretrained FFN and whose router has one gate per task (all
tasks scored in one matmul, each token keeps its own task's logits), top-1 with the
straight-through weight `p / p.detach()`; loss = cross-entropy + 0.01 load balance + 0.001
z-loss; backward, `clip_grad_norm_(1.0)`, `torch.optim.AdamW` (lr 5e-5, weight decay 0.01 on
all but biases, LayerNorms and embeddings). Same batch, same padding (HF runs the FFN on
padding too; that is what a PyTorch user gets).

Usage: python3 benches/torch_real.py --point SPEC --model-dir DIR [--runs N] [--reps R]
    [--threads N]
Prints `POINT <spec> <step ms> <fwd+bwd ms> <optimizer ms> <tokens> <real tokens> <params>
<group medians> <peak RSS MiB>` like `benches/real_step.rs`. SPEC as there; `dense` and
`per-task` are modelled (other router kinds are refused).
"""

import argparse
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import BertModel, BertTokenizerFast

CLASSES = 3
HERE = os.path.dirname(os.path.abspath(__file__))


def texts():
    rows = []
    for task, a, b in [("SST-2", 0, None), ("RTE", 1, 2), ("STS-B", 7, 8)]:
        for split in ["train", "dev"]:
            path = os.path.join(HERE, "..", "configs", "glue-example", task, f"{split}.tsv")
            with open(path) as f:
                lines = [l.rstrip("\n") for l in f][1:]
            for line in lines:
                if not line.strip():
                    continue
                fields = line.split("\t")
                rows.append((fields[a], None if b is None else fields[b]))
    return rows


class SparseMoe(nn.Module):
    """Mixtral's sparse block with a per-task router, over upcycled copies of a BERT FFN."""

    def __init__(self, intermediate, output_dense, experts, tasks):
        super().__init__()
        d = output_dense.out_features
        self.experts = nn.ModuleList()
        for _ in range(experts):
            w1 = nn.Linear(d, intermediate.dense.out_features)
            w2 = nn.Linear(intermediate.dense.out_features, d)
            w1.load_state_dict(intermediate.dense.state_dict())
            w2.load_state_dict(output_dense.state_dict())
            self.experts.append(nn.Sequential(w1, nn.GELU(), w2))
        self.gate = nn.Parameter(torch.randn(tasks, experts, d) * 0.02)
        self.num_experts, self.tasks = experts, tasks
        self.token_tasks = None
        self.aux = None

    def forward(self, x):
        b, l, d = x.shape
        h = x.reshape(-1, d)
        logits = (h @ self.gate.reshape(-1, d).t()).view(-1, self.tasks, self.num_experts)
        logits = logits.gather(1, self.token_tasks.view(-1, 1, 1).expand(-1, 1, self.num_experts))
        logits = logits.squeeze(1)
        probs = logits.float().softmax(-1)
        p, chosen = probs.max(-1)
        weight = (p / p.detach()).to(h.dtype)
        out = torch.zeros_like(h)
        mask = F.one_hot(chosen, self.num_experts).t()
        for e in torch.nonzero(mask.sum(-1)).flatten().tolist():
            idx = torch.where(mask[e])[0]
            out.index_add_(0, idx, self.experts[e](h[idx]) * weight[idx, None])
        frac = mask.float().mean(-1)
        self.aux = (self.num_experts * (frac * probs.mean(0)).sum(),
                    torch.logsumexp(logits.float(), -1).pow(2).mean())
        return out.view(b, l, d)


class Model(nn.Module):
    def __init__(self, model_dir, kind, experts, tasks):
        super().__init__()
        self.bert = BertModel.from_pretrained(model_dir, add_pooling_layer=False)
        self.bert.config._attn_implementation = "sdpa"
        d = self.bert.config.hidden_size
        self.moes = []
        if kind != "dense":
            for i, layer in enumerate(self.bert.encoder.layer):
                if (i + 1) % 2 == 0:
                    moe = SparseMoe(layer.intermediate, layer.output.dense, experts, tasks)
                    layer.intermediate = moe
                    layer.output.dense = nn.Identity()
                    self.moes.append(moe)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Dropout(0.1), nn.Linear(d, CLASSES))
            for _ in range(tasks))

    def forward(self, ids, mask, types, tasks):
        for moe in self.moes:
            moe.token_tasks = tasks[:, None].expand_as(ids).reshape(-1)
        x = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)
        logits = torch.empty(ids.shape[0], CLASSES)
        for t in torch.unique(tasks).tolist():
            rows = torch.where(tasks == t)[0]
            logits[rows] = self.heads[t](pooled[rows])
        return logits


def median(v):
    return sorted(v)[len(v) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--point", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    f = a.point.split(":")
    kind, experts, tasks, batch, mode = f[0], int(f[1][1:]), int(f[2][1:]), int(f[3][1:]), f[4]
    if kind not in ("dense", "per-task"):
        raise SystemExit(f"torch_real.py models dense and per-task only, not {kind}")
    tok = BertTokenizerFast.from_pretrained(a.model_dir)
    rows = texts()
    rows = [rows[i % len(rows)] for i in range(batch)]
    # Pairs and singles mixed: encode one by one, then pad to the longest as taskmoe does.
    encoded = [tok(r[0], r[1]) if r[1] is not None else tok(r[0]) for r in rows]
    length = max(len(e["input_ids"]) for e in encoded)
    pad = lambda v, x: v + [x] * (length - len(v))
    ids = torch.tensor([pad(e["input_ids"], tok.pad_token_id) for e in encoded])
    mask = torch.tensor([pad(e["attention_mask"], 0) for e in encoded])
    types = torch.tensor([pad(e["token_type_ids"], 0) for e in encoded])
    task_ids = torch.arange(batch) % tasks
    labels = (torch.arange(batch) * 7) % CLASSES
    model = Model(a.model_dir, kind, experts, tasks)
    params = sum(p.numel() for p in model.parameters())
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n or "embeddings" in n
    groups = [
        {"params": [p for n, p in model.named_parameters() if not no_decay(n)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if no_decay(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=5e-5)

    def step():
        start = time.perf_counter()
        logits = model(ids, mask, types, task_ids)
        per_example = F.cross_entropy(logits, labels, reduction="none")
        loss = per_example.mean()
        if model.moes:
            lb = sum(m.aux[0] for m in model.moes) / len(model.moes)
            z = sum(m.aux[1] for m in model.moes) / len(model.moes)
            loss = loss + 0.01 * lb + 0.001 * z
            lb.item(), z.item()
        per_example.tolist()
        assert torch.isfinite(loss).item()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        mid = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        end = time.perf_counter()
        return (mid - start) * 1e3, (end - mid) * 1e3

    def forward():
        start = time.perf_counter()
        with torch.no_grad():
            model(ids, mask, types, task_ids).argmax(-1).tolist()
        return (time.perf_counter() - start) * 1e3

    meds = []
    if mode == "train":
        model.train()
        for _ in range(2):
            step()
        for _ in range(a.reps):
            times = [step() for _ in range(a.runs)]
            meds.append((median([x + y for x, y in times]), median([x for x, _ in times]),
                         median([y for _, y in times])))
    else:
        model.eval()
        forward()
        for _ in range(a.reps):
            m = median([forward() for _ in range(a.runs)])
            meds.append((m, m, 0.0))
    best = min(meds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    real = int(mask.sum())
    print(f"POINT {a.point} {best[0]:.2f} {best[1]:.2f} {best[2]:.2f} {ids.numel()} {real} "
          f"{params} {','.join(f'{m[0]:.1f}' for m in meds)} {rss:.0f}")


if __name__ == "__main__":
    main()
