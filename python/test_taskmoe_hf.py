"""Checks of python/taskmoe_hf.py (run: `python python/test_taskmoe_hf.py`; needs torch,
safetensors, transformers). CI does not run Python: the Rust test
`crates/taskmoe-model/tests/export.rs` checks the committed fixtures against taskmoe.

1. Each golden fixture's logits, recomputed, equal its `expected.json` (the module did not
   change behind the fixtures' back).
2. On the bert-layout fixture, the module's own encoder (the code path of the taskmoe layout)
   equals `transformers.BertModel`: the written-out attention, LayerNorms, FFNs and pooling
   are checked against an independent implementation.
3. Each taskmoe-layout fixture, copied with the python/ files an export carries beside it
   (`modeling_taskmoe.py`, `configuration_taskmoe.py`, `taskmoe_hf.py`), loads through
   `transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)` (the fixture's
   `config.json` has the `auto_map` an export writes) and gives its `expected.json` logits.
"""

import json
import os
import shutil
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from safetensors.torch import load_file  # noqa: E402

from taskmoe_hf import TaskMoeExport  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "crates/taskmoe-model/tests/golden/export")
# What `taskmoe export` writes beside a taskmoe-layout export (HF_MODELING_FILES).
MODELING_FILES = ("taskmoe_hf.py", "configuration_taskmoe.py", "modeling_taskmoe.py")


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
        else:
            auto_model(name, folder, want)


def auto_model(name, folder, want):
    """The fixture as an export folder, loaded by transformers through its auto_map."""
    from transformers import AutoConfig, AutoModel

    with tempfile.TemporaryDirectory() as tmp:
        export = os.path.join(tmp, name)
        shutil.copytree(folder, export)
        for f in MODELING_FILES:
            shutil.copy(os.path.join(os.path.dirname(__file__), f), export)
        config = AutoConfig.from_pretrained(export, trust_remote_code=True)
        assert type(config).__name__ == "TaskmoeConfig", type(config)
        model = AutoModel.from_pretrained(export, trust_remote_code=True)
        assert type(model).__name__ == "TaskmoeModel", type(model)
        input_ids, attention_mask, token_type_ids, task_ids = inputs(folder)
        got = model(input_ids, attention_mask, token_type_ids, task_ids=task_ids).logits
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), name
        print(f"ok  {name}: AutoModel.from_pretrained(trust_remote_code=True) gives expected.json")


if __name__ == "__main__":
    main()
