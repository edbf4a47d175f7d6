"""The `transformers` model of a taskmoe-layout export (`taskmoe export --format hf`).

taskmoe writes this file into every taskmoe-layout export folder, beside
`configuration_taskmoe.py` and `taskmoe_hf.py` (the one implementation of the forward pass,
shared with `python/taskmoe_hf.py` of the repository: taskmoe embeds that file and writes it
unchanged); `config.json`'s `auto_map` names `TaskmoeModel`, so

    from transformers import AutoModel
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    out = model(input_ids, attention_mask, token_type_ids, task_ids=task_ids)
    out.logits  # [B, widest head], taskmoe's logits (-1e9 past a task's own labels)

`task_ids` are positions in `config.taskmoe["heads"]` (`model.task_id(name)` looks one up);
left out, every row is task 0 (the only task of a one-task export).

The model runs in evaluation mode on the CPU in fp32 (what the golden fixtures check). Its
weights live in the folder's `model.safetensors` and `heads.safetensors`, which
`from_pretrained` reads through `taskmoe_hf.TaskMoeExport`; they are not registered as
parameters, so to copy or publish the model copy the folder (`save_pretrained` does not write
them).
"""

import os

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_taskmoe import TaskmoeConfig
from .taskmoe_hf import TaskMoeExport

# What `from_pretrained` passes on to `huggingface_hub.snapshot_download` for a hub model.
_HUB_KEYS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")


class TaskmoeModel(PreTrainedModel):
    """A taskmoe-layout export: the encoder (dense or MoE blocks, any router taskmoe exports)
    and every exported task head, giving taskmoe's logits."""

    config_class = TaskmoeConfig
    base_model_prefix = "taskmoe"
    main_input_name = "input_ids"

    def __init__(self, config, folder=None):
        super().__init__(config)
        # The computation is taskmoe_hf.TaskMoeExport's, which reads the folder's files.
        self.taskmoe = TaskMoeExport(folder) if folder is not None else None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Loads an export folder (or a hub repository holding one) in evaluation mode."""
        folder = str(pretrained_model_name_or_path)
        if not os.path.isdir(folder):
            from huggingface_hub import snapshot_download

            hub = {k: kwargs[k] for k in _HUB_KEYS if kwargs.get(k) is not None}
            folder = snapshot_download(folder, **hub)
        if kwargs.get("subfolder"):
            folder = os.path.join(folder, kwargs["subfolder"])
        if not isinstance(config, TaskmoeConfig):
            config = TaskmoeConfig.from_pretrained(folder)
        model = cls(config, folder=folder)
        model.eval()
        return model

    def task_id(self, name):
        """The position of task `name` among the exported heads."""
        names = [h["name"] for h in self.config.taskmoe["heads"]]
        if name not in names:
            raise KeyError(f"unknown task {name!r}; the export has {', '.join(names)}")
        return names.index(name)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, task_ids=None, **kwargs):
        """`SequenceClassifierOutput` with taskmoe's `logits` `[B, widest head]` for int64
        `input_ids`, `attention_mask`, `token_type_ids` `[B, L]` and `task_ids` `[B]`."""
        if self.taskmoe is None:
            raise ValueError("load the model with from_pretrained(folder): its weights are the folder's files")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if task_ids is not None:
            task_ids = torch.as_tensor(task_ids, dtype=torch.long).reshape(-1)
        logits = self.taskmoe(input_ids, attention_mask, token_type_ids, task_ids)
        return SequenceClassifierOutput(logits=logits)
