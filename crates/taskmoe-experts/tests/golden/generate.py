"""Writes the golden fixtures of the MoE layer from a straightforward PyTorch reference.

Run once (needs torch 2.11 and safetensors):  python generate.py
It writes one `<case>.safetensors` per case and `cases.json`; the Rust test
`tests/golden.rs` loads the parameters, runs `MoeLayer` and compares outputs, aux losses and
gradients. The reference loops over tokens and choices with per-expert counters: slow, obvious.

Tensor names: input.x / input.task_ids / input.g, param.<name> (the Rust parameter name),
expected.y / expected.<aux>, grad.x / grad.<name>.
"""
import json
import math
import os

import torch
from safetensors.torch import save_file

T, D, F, E, TASKS, D_TASK = 16, 8, 12, 4, 3, 5
COEF = {"load_balance": 0.1, "z_loss": 0.01, "mutual_information": 0.05}
HERE = os.path.dirname(os.path.abspath(__file__))


def init_params(kind, shared, gen):
    def randn(*shape, std=0.5):
        # Rounded to fp32 first: the fixture stores fp32, the reference computes in fp64.
        return (torch.randn(*shape, generator=gen) * std).float().double()

    p = {}
    if kind == "token":
        p["router.weight"] = randn(E, D)
    elif kind == "task-concat":
        p["router.weight"] = randn(E, D + D_TASK)
        p["router.task_embedding"] = randn(TASKS, D_TASK, std=1.0)
    elif kind == "per-task":
        p["router.weight"] = randn(TASKS, E, D)
    elif kind == "task-level":
        p["router.weight"] = randn(E, D_TASK)
        p["router.task_embedding"] = randn(TASKS, D_TASK, std=1.0)
    p["experts.w1"] = randn(E, D, F)
    p["experts.b1"] = randn(E, F, std=0.1)
    p["experts.w2"] = randn(E, F, D)
    p["experts.b2"] = randn(E, D, std=0.1)
    if shared:
        p["shared_expert.intermediate.dense.weight"] = randn(F, D)
        p["shared_expert.intermediate.dense.bias"] = randn(F, std=0.1)
        p["shared_expert.output.dense.weight"] = randn(D, F)
        p["shared_expert.output.dense.bias"] = randn(D, std=0.1)
    return p


def logits_of(kind, x, tasks, p):
    w = p["router.weight"]
    if kind == "token":
        return x @ w.T
    if kind == "task-concat":
        return torch.cat([x, p["router.task_embedding"][tasks]], dim=-1) @ w.T
    if kind == "per-task":
        return torch.einsum("td,ted->te", x, w[tasks])
    return p["router.task_embedding"][tasks] @ w.T  # task-level: no token term


def moe(kind, k, capacity_factor, renormalize, x, tasks, p):
    logits = logits_of(kind, x, tasks, p)
    probs = torch.softmax(logits, dim=-1)
    weights, experts = probs.topk(k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    # Capacity with the documented priority: all first choices in token order, then seconds.
    cap = None if capacity_factor == 0 else max(1, math.ceil(capacity_factor * T * k / E))
    taken = [0] * E
    kept = [[False] * k for _ in range(T)]
    for j in range(k):
        for t in range(T):
            e = int(experts[t, j])
            kept[t][j] = cap is None or taken[e] < cap
            taken[e] += 1
    y = torch.zeros_like(x)
    rows = []
    for t in range(T):
        out = torch.zeros(D, dtype=x.dtype)
        for j in range(k):
            if kept[t][j]:
                e = int(experts[t, j])
                h = torch.nn.functional.gelu(x[t] @ p["experts.w1"][e] + p["experts.b1"][e])
                out = out + weights[t, j] * (h @ p["experts.w2"][e] + p["experts.b2"][e])
        rows.append(out)
    y = torch.stack(rows)
    if "shared_expert.output.dense.weight" in p:
        h = torch.nn.functional.gelu(
            x @ p["shared_expert.intermediate.dense.weight"].T
            + p["shared_expert.intermediate.dense.bias"]
        )
        y = y + h @ p["shared_expert.output.dense.weight"].T + p["shared_expert.output.dense.bias"]
    # Aux losses.
    share = torch.bincount(experts.flatten(), minlength=E).double() / (T * k)
    load_balance = E * (share * probs.mean(dim=0)).sum()
    z_loss = torch.logsumexp(logits, dim=-1).square().mean()
    joint = torch.nn.functional.one_hot(tasks, TASKS).double().T @ probs / T
    p_task = joint.sum(dim=1, keepdim=True)
    p_expert = joint.sum(dim=0, keepdim=True)
    tiny = 1e-12
    mi = (joint * (joint.clamp_min(tiny).log() - p_task.clamp_min(tiny).log()
                   - p_expert.clamp_min(tiny).log())).sum()
    aux = {"load_balance": load_balance, "z_loss": z_loss, "mutual_information": -mi}
    dropped = sum(not kept[t][j] for t in range(T) for j in range(k))
    return y, aux, dropped


def main():
    cases = []
    for kind in ["token", "task-concat", "per-task", "task-level"]:
        for k in [1, 2]:
            for capacity_factor in [0.0, 1.0]:
                cases.append((kind, k, capacity_factor, False))
    cases.append(("token", 2, 1.0, True))
    cases.append(("per-task", 2, 0.0, True))
    index = []
    for n, (kind, k, capacity_factor, shared) in enumerate(cases):
        gen = torch.Generator().manual_seed(1000 + n)
        renormalize = k > 1
        p = init_params(kind, shared, gen)
        x = torch.randn(T, D, generator=gen).float().double()
        tasks = torch.randint(0, TASKS, (T,), generator=gen)
        g = torch.randn(T, D, generator=gen).float().double()
        leaves = {name: t.clone().requires_grad_(True) for name, t in p.items()}
        xl = x.clone().requires_grad_(True)
        y, aux, dropped = moe(kind, k, capacity_factor, renormalize, xl, tasks, leaves)
        loss = (y * g).sum() + sum(COEF[name] * value for name, value in aux.items())
        loss.backward()
        name = f"{kind}-k{k}-cap{capacity_factor:g}" + ("-shared" if shared else "")
        tensors = {"input.x": x, "input.task_ids": tasks, "input.g": g, "expected.y": y.detach()}
        tensors.update({f"param.{n}": t for n, t in p.items()})
        tensors.update({f"expected.{n}": v.detach().reshape(1) for n, v in aux.items()})
        tensors["grad.x"] = xl.grad
        tensors.update({f"grad.{n}": t.grad for n, t in leaves.items()})
        tensors = {n: (t.float() if t.is_floating_point() else t).contiguous()
                   for n, t in tensors.items()}
        save_file(tensors, os.path.join(HERE, name + ".safetensors"))
        index.append({"name": name, "kind": kind, "k": k, "capacity_factor": capacity_factor,
                      "renormalize": renormalize, "shared_experts": int(shared),
                      "dropped_slots": dropped, "tokens": T, "d_model": D, "d_ff": F,
                      "experts": E, "tasks": TASKS, "task_embedding_dim": D_TASK,
                      "coefficients": COEF})
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print(f"wrote {len(index)} cases; dropped slots: {[c['dropped_slots'] for c in index]}")


if __name__ == "__main__":
    main()
