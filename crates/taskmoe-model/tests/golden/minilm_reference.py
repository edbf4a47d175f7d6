"""Writes the MiniLM import fixture: HF transformers' BertModel hidden states for a few inputs.

Run once, with torch 2.11, transformers, tokenizers and safetensors installed, after
`cargo xtask fetch-model minilm`:

    python minilm_reference.py ~/.cache/taskmoe/models/all-MiniLM-L6-v2

It writes `minilm_hidden.safetensors` beside itself: the token ids, attention mask and token
types of three inputs (two single sentences and one pair, padded to one length) and the
reference `last_hidden_state` in fp32. `tests/minilm.rs` checks the Rust import against it.
"""
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import BertModel

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = [
    ("Sparse experts let one model learn many tasks.", None),
    ("A short one.", None),
    ("Is this sentence related", "to the one that follows it?"),
]


def main(model_dir):
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    encoded = [tok.encode(a, b) if b else tok.encode(a) for a, b in INPUTS]
    length = max(len(e.ids) for e in encoded)
    ids = torch.zeros(len(encoded), length, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        types[i, :n] = torch.tensor(e.type_ids)
    model = BertModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    save_file(
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
         "last_hidden_state": hidden.float().contiguous()},
        os.path.join(HERE, "minilm_hidden.safetensors"),
    )
    print("wrote", tuple(hidden.shape), "from", model_dir)


if __name__ == "__main__":
    main(sys.argv[1])
