"""PyTorch eager reference of the taskmoe training step, for side-by-side timing.

The same model as `taskmoe_model::MultiTaskModel` (BERT-style post-LayerNorm encoder, dense or
MoE feed-forward every `moe_every` blocks, first-token pooling, one tanh head per task) and the
same step as `benches/train_step.rs` (forward in training mode with dropout 0.1, cross-entropy
+ 0.01 load balance + 0.001 z-loss, backward, `clip_grad_norm_(1.0)`, AdamW with
decay / no-decay groups, lr 3e-4, the same host reads), written the way a competent PyTorch
user would: `nn.Linear` modules, `scaled_dot_product_attention`, and the MoE layer of Hugging
Face's Mixtral (`MixtralSparseMoeBlock`): softmax + top-k router, then a loop over the experts
that received tokens with `torch.where` / indexing / `index_add_`. Default PyTorch settings
otherwise (on CPU that means the single-tensor AdamW and clipping loops).

Usage: python3 benches/torch_step.py --point SPEC [--runs N] [--threads N]
Prints the line `benches/train_step.rs` prints:
`POINT <spec> <step ms> <fwd+bwd ms> <optimizer ms> <peak RSS MiB> <params> -`.
SPEC is `preset:model:kK:eE:tTASKS:bBATCH:lLEN:mode` (see `benches/train_step.rs`).
"""

import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 3
CLIP = 1.0
LR = 3e-4
LOAD_BALANCE_COEF = 0.01
Z_LOSS_COEF = 0.001


def preset(name):
    small = dict(vocab=1024, max_position=128, type_vocab=2, d=128, layers=4, heads=4,
                 d_ff=512, dropout=0.1, attention_dropout=0.1, eps=1e-12, moe_every=2,
                 experts=8, expert_d_ff=512, task_dim=32)
    if name == "small":
        return small
    if name == "medium":
        return dict(small, d=512, layers=8, heads=8, d_ff=2048, experts=16, expert_d_ff=2048)
    raise ValueError(f"unknown preset {name}")


def parse(spec):
    f = spec.split(":")
    assert len(f) == 8, f"bad spec {spec}"
    cfg = preset(f[0])
    cfg.update(model=f[1], k=int(f[2][1:]), experts=int(f[3][1:]), tasks=int(f[4][1:]),
               batch=int(f[5][1:]), len=int(f[6][1:]), train=f[7] == "train")
    cfg["max_position"] = max(cfg["max_position"], cfg["len"])
    if cfg["model"] == "dense2x":
        cfg["d_ff"] *= 2
    return cfg


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d"]
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.output = nn.Linear(d, d)
        self.heads, self.dropout = c["heads"], c["attention_dropout"]

    def forward(self, x, attend):
        b, l, d = x.shape
        split = lambda t: t.view(b, l, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0)
        return self.output(ctx.transpose(1, 2).reshape(b, l, d))


class DenseFfn(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.intermediate, self.output = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x):
        return self.output(F.gelu(self.intermediate(x)))


class Router(nn.Module):
    def __init__(self, c):
        super().__init__()
        e, d, dt, nt = c["experts"], c["d"], c["task_dim"], c["tasks"]
        self.kind = c["model"]
        shape = {"token": (e, d), "task-concat": (e, d + dt), "per-task": (nt, e, d),
                 "task-level": (e, dt)}[self.kind]
        self.weight = nn.Parameter(torch.randn(shape) * 0.02)
        if self.kind in ("task-concat", "task-level"):
            self.task_embedding = nn.Parameter(torch.randn(nt, dt))
        self.d, self.e, self.nt = d, e, nt

    def forward(self, x, tasks):
        if self.kind == "token":
            return x @ self.weight.t()
        if self.kind == "task-concat":
            w_x, w_e = self.weight[:, :self.d], self.weight[:, self.d:]
            return x @ w_x.t() + (self.task_embedding @ w_e.t())[tasks]
        if self.kind == "per-task":
            all_tasks = (x @ self.weight.reshape(self.nt * self.e, self.d).t()).view(
                -1, self.nt, self.e)
            return all_tasks.gather(1, tasks.view(-1, 1, 1).expand(-1, 1, self.e)).squeeze(1)
        return (self.task_embedding @ self.weight.t())[tasks]  # task-level


class SparseMoe(nn.Module):
    """Mixtral's sparse MoE block (HF transformers), with this model's routers and aux losses."""

    def __init__(self, c):
        super().__init__()
        self.router = Router(c)
        self.experts = nn.ModuleList(
            DenseFfn(c["d"], c["expert_d_ff"]) for _ in range(c["experts"]))
        self.e, self.k = c["experts"], c["k"]

    def forward(self, x, tasks):
        logits = self.router(x.float(), tasks)
        probs = F.softmax(logits, dim=-1, dtype=torch.float)
        weights, selected = torch.topk(probs, self.k, dim=-1)
        if self.k > 1:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        weights = weights.to(x.dtype)
        out = torch.zeros_like(x)
        expert_mask = F.one_hot(selected, num_classes=self.e).permute(2, 1, 0)  # (E, k, T)
        hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
        for e in hit.squeeze(1).tolist():
            idx, top_x = torch.where(expert_mask[e])
            h = self.experts[e](x[top_x]) * weights[top_x, idx, None]
            out.index_add_(0, top_x, h.to(x.dtype))
        fraction = torch.bincount(selected.reshape(-1), minlength=self.e).float() / selected.numel()
        load_balance = (fraction * probs.mean(0)).sum() * self.e
        z_loss = torch.logsumexp(logits, dim=-1).square().mean()
        return out, load_balance, z_loss


class Block(nn.Module):
    def __init__(self, c, moe):
        super().__init__()
        d = c["d"]
        self.attention = Attention(c)
        self.attention_norm = nn.LayerNorm(d, eps=c["eps"])
        self.ffn = SparseMoe(c) if moe else DenseFfn(d, c["d_ff"])
        self.ffn_norm = nn.LayerNorm(d, eps=c["eps"])
        self.dropout, self.moe = nn.Dropout(c["dropout"]), moe

    def forward(self, x, attend, tasks):
        x = self.attention_norm(x + self.dropout(self.attention(x, attend)))
        b, l, d = x.shape
        if self.moe:
            y, lb, z = self.ffn(x.reshape(b * l, d), tasks.repeat_interleave(l))
            return self.ffn_norm(x + self.dropout(y.view(b, l, d))), (lb, z)
        return self.ffn_norm(x + self.dropout(self.ffn(x))), None


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, moe = c["d"], c["model"] not in ("dense", "dense2x")
        self.word = nn.Embedding(c["vocab"], d)
        self.position = nn.Embedding(c["max_position"], d)
        self.token_type = nn.Embedding(c["type_vocab"], d)
        for emb in (self.word, self.position, self.token_type):
            nn.init.normal_(emb.weight, std=0.02)
        self.embedding_norm = nn.LayerNorm(d, eps=c["eps"])
        self.dropout = nn.Dropout(c["dropout"])
        self.blocks = nn.ModuleList(
            Block(c, moe and (i + 1) % c["moe_every"] == 0) for i in range(c["layers"]))
        self.heads = nn.ModuleList(
            nn.ModuleDict(dict(dense=nn.Linear(d, d), out=nn.Linear(d, CLASSES)))
            for _ in range(c["tasks"]))

    def forward(self, ids, mask, types, tasks, task_list):
        b, l = ids.shape
        pos = torch.arange(l).unsqueeze(0)
        x = self.dropout(self.embedding_norm(
            self.word(ids) + self.position(pos) + self.token_type(types)))
        attend = mask.bool().view(b, 1, 1, l)
        aux = []
        for block in self.blocks:
            x, a = block(x, attend, tasks)
            if a is not None:
                aux.append(a)
        pooled = x[:, 0]
        logits = torch.full((b, CLASSES), -1e9)
        for t in sorted(set(task_list)):
            rows = (tasks == t).nonzero().squeeze(1)
            head = self.heads[t]
            h = self.dropout(torch.tanh(head["dense"](pooled[rows])))
            logits = logits.index_copy(0, rows, head["out"](h))
        return logits, aux


def decays(name):
    if name.endswith("bias") or "norm" in name or "word" in name or "position" in name \
            or "token_type" in name or "task_embedding" in name:
        return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--point", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = parse(args.point)
    model = Model(c)
    b, l = c["batch"], c["len"]
    ids = torch.randint(c["vocab"], (b, l))
    mask, types = torch.ones(b, l, dtype=torch.long), torch.zeros(b, l, dtype=torch.long)
    task_list = [i % c["tasks"] for i in range(b)]
    tasks = torch.tensor(task_list)
    labels = torch.randint(CLASSES, (b,))
    task_weights = torch.ones(c["tasks"])
    named = list(model.named_parameters())
    groups = [dict(params=[p for n, p in named if decays(n)], weight_decay=0.01),
              dict(params=[p for n, p in named if not decays(n)], weight_decay=0.0)]
    opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    times = []
    if c["train"]:
        model.train()
        for i in range(args.runs + 2):
            torch.manual_seed(i)
            start = time.perf_counter()
            logits, aux = model(ids, mask, types, tasks, task_list)
            per_example = F.cross_entropy(logits, labels, reduction="none")
            task_loss = (per_example * task_weights[tasks]).mean()
            loss = task_loss
            if aux:
                lb = sum(a[0] for a in aux) / len(aux)
                z = sum(a[1] for a in aux) / len(aux)
                loss = loss + LOAD_BALANCE_COEF * lb + Z_LOSS_COEF * z
                lb.item(), z.item()
            per_example.tolist()
            assert torch.isfinite(torch.tensor(loss.item()))
            loss.backward()
            mid = time.perf_counter()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            assert torch.isfinite(norm).item()
            opt.step()
            opt.zero_grad()
            end = time.perf_counter()
            if i >= 2:
                times.append(((end - start) * 1e3, (mid - start) * 1e3, (end - mid) * 1e3))
    else:
        model.eval()
        with torch.no_grad():
            for i in range(args.runs + 1):
                start = time.perf_counter()
                logits, _ = model(ids, mask, types, tasks, task_list)
                logits.argmax(-1).tolist()
                ms = (time.perf_counter() - start) * 1e3
                if i >= 1:
                    times.append((ms, ms, 0.0))
    times.sort()
    total, fwd_bwd, opt_ms = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = sum(p.numel() for p in model.parameters())
    print(f"POINT {args.point} {total:.2f} {fwd_bwd:.2f} {opt_ms:.2f} {rss:.0f} {params} -")


if __name__ == "__main__":
    main()
