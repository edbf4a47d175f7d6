"""Checks of python/taskmoe_hf.py (run: `python python/test_taskmoe_hf.py`; needs torch,
safetensors, transformers). CI does not run Python: the Rust test
`crates/taskmoe-model/tests/export.rs` checks the committed fixtures against taskmoe.

1. Each golden fixture's logits, recomputed, equal its `expected.json` (the module did not
   change behind the fixtures' back).
2. On the bert-layout fixture, the module's own encoder (the code path of the taskmoe layout)
   equals `transformers.BertModel`: the written-out attention, LayerNorms, FFNs and pooling
   are checked against an independent implementation.
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from safetensors.torch import load_file  # noqa: E402

from taskmoe_hf import TaskMoeExport  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "crates/taskmoe-model/tests/golden/export")


def inputs(folder):
    with open(os.path.join(folder, "inputs.json")) as f:
        raw = {k: torch.tensor(v, dtype=torch.long) for k, v in json.load(f).items()}
    return raw["input_ids"], raw["attention_mask"], raw["token_type_ids"], raw["task_ids"].reshape(-1)


def main():
    for name in sorted(os.listdir(FIXTURES)):
        folder = os.path.join(FIXTURES, name)
        model = TaskMoeExport(folder)
        got = model(*inputs(folder))
        with open(os.path.join(folder, "expected.json")) as f:
            want = torch.tensor(json.load(f)["logits"])
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), name
        print(f"ok  {name}: logits equal expected.json ({model.layout} layout)")
        if model.layout == "bert":
            own = TaskMoeExport.__new__(TaskMoeExport)
            torch.nn.Module.__init__(own)
            own.config, own.layout, own.head_specs, own.heads = (
                model.config, "taskmoe", model.head_specs, model.heads)
            own.m = model.config["taskmoe"]["model"]
            own.pooling, own.eps = own.m["pooling"], own.m["layer_norm_eps"]
            own.state = {k: v.float() for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
            diff = (own(*inputs(folder)) - got).abs().max().item()
            assert diff < 1e-5, diff
            print(f"ok  {name}: the module's own encoder equals transformers.BertModel (max diff {diff:.2e})")


if __name__ == "__main__":
    main()
