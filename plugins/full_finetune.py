"""full-finetune: every weight of the causal LM trained on the task.

The same examples, answer-only loss, validation-driven early stopping and scoring engine as the
parameter-efficient strategies (``slmbench.finetune``), with all weights trainable: fp32 master
weights, bfloat16 autocast where the hardware supports it, AdamW. Gradient checkpointing trades
compute for activation memory. The artifact is the whole model (``model.safetensors``).

Parameters: ``learning_rate`` (5e-5), ``weight_decay`` (0.0), ``gradient_checkpointing`` (false).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmbench.finetune import FineTunedCausalLM, load_causal_lm
from slmbench.hookspecs import hookimpl
from slmbench.strategy import Family


class FullFinetune(FineTunedCausalLM):
    name = "full-finetune"
    description = "Full fine-tuning: every weight of the causal LM trained on the answer tokens (trl)"
    family = Family.FULL
    defaults = {"learning_rate": 5e-5, "weight_decay": 0.0, "gradient_checkpointing": False}

    def build(self, params: dict[str, Any]) -> tuple[Any, Any]:
        return load_causal_lm(self.context, dtype="float32")  # fp32 master weights, whatever the run's dtype

    def training(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"weight_decay": params["weight_decay"], "gradient_checkpointing": params["gradient_checkpointing"]}

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory), safe_serialization=True)


@hookimpl
def register_strategies(register) -> None:
    register(FullFinetune)
