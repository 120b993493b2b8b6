"""full-finetune: every weight of the causal LM trained on the task.

The same examples, answer-only loss, validation-driven early stopping and scoring engine as the
parameter-efficient strategies (``slmbench.strategy.finetuned_lm``), with all weights trainable: fp32 master
weights, bfloat16 autocast where the hardware supports it, AdamW. Gradient checkpointing trades
compute for activation memory. The artifact is the whole model (``model.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from slmbench.strategy import Family, Search, SharedModel, StrategyMetadata
from slmbench.strategy.finetuned_lm import (
    FineTunedCausalLM,
    FineTuneOptions,
    load_causal_lm,
)
from slmbench.strategy.hookspecs import hookimpl


class FullFinetuneOptions(FineTuneOptions):
    learning_rate: Annotated[float, Search.log(1e-5, 2e-4)] = Field(
        5e-5, gt=0, le=1, description="peak learning rate of AdamW (linear warmup, then decay)"
    )
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, more time")


class FullFinetune(FineTunedCausalLM):
    metadata = StrategyMetadata(
        name="full-finetune",
        description="Full fine-tuning: every weight of the causal LM trained on the answer tokens (trl)",
        family=Family.FULL,
        depends_on=(SharedModel.CAUSAL_LM,),
    )

    Options = FullFinetuneOptions
    options: FullFinetuneOptions

    def build(self) -> tuple[Any, Any]:
        return load_causal_lm(self.context, dtype="float32")  # fp32 master weights, whatever the run's dtype

    def training(self) -> dict[str, Any]:
        return {"weight_decay": self.options.weight_decay, "gradient_checkpointing": self.options.gradient_checkpointing}

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(str(directory), safe_serialization=True)


@hookimpl
def register_strategies(register) -> None:
    register(FullFinetune)
