"""The `transformers` configuration of a taskmoe-layout export (`taskmoe export --format hf`).

taskmoe writes this file into every taskmoe-layout export folder, beside `modeling_taskmoe.py`
and `taskmoe_hf.py`; `config.json`'s `auto_map` names it, so

    AutoConfig.from_pretrained(folder, trust_remote_code=True)

returns a `TaskmoeConfig`. Everything taskmoe needs is under `config.taskmoe` (the layout, the
taskmoe `ModelConfig`, the heads and the tasks with their labels); see docs/checkpoints.md.
"""

from transformers import PretrainedConfig


class TaskmoeConfig(PretrainedConfig):
    """`config.json` of a taskmoe-layout export.

    `taskmoe` is the dict taskmoe wrote: `layout`, `layout_version`, `model` (the taskmoe
    `ModelConfig`), `heads`, `heads_file`, `tasks` (names, kinds, labels) and
    `source_checkpoint_step`. `id2label` / `label2id` are set when one task was exported.
    """

    model_type = "taskmoe"

    def __init__(self, taskmoe=None, **kwargs):
        self.taskmoe = taskmoe if taskmoe is not None else {}
        super().__init__(**kwargs)
