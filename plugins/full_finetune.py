"""full-finetune: every weight of the causal LM trained on the task.

The same examples, answer-only loss, validation-driven early stopping and scoring engine as the
parameter-efficient strategies (``slmbench.strategy.finetuned_lm``), with all weights trainable: fp32 master
weights, bfloat16 autocast where the hardware supports it, AdamW. Gradient checkpointing trades
compute for activation memory. The artifact is the whole model (``model.safetensors``).

Its memory is about 16 bytes a parameter before activations (fp32 weights, gradients and AdamW's two
states: 57 GiB for a 3.8B model), estimated before the trial runs (``slmbench.lm.memory_estimate``).
On CUDA, when that estimate does not fit the GPU, the trial turns on gradient checkpointing and the
paged 8-bit AdamW of bitsandbytes (2 bytes a parameter instead of 8) if that makes it fit; the trial
record says so (``memory_estimate.applied``, and in its options).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from slmbench.strategy import Family, Search, SharedModel, StrategyMetadata
from slmbench.strategy.finetuned_lm import (
    FineTunedCausalLM,
    FineTuneOptions,
    load_causal_lm,
)
from slmbench.strategy.hookspecs import hookimpl

if TYPE_CHECKING:
    from slmbench.lm.memory_estimate import MemoryRequest
    from slmbench.records import MemoryEstimate

MEMORY_SAVERS = {"gradient_checkpointing": True, "optimizer": "paged_adamw_8bit"}
"""The options the trial sets on CUDA when the model does not fit otherwise."""


class FullFinetuneOptions(FineTuneOptions):
    learning_rate: Annotated[float, Search.log(1e-5, 2e-4)] = Field(
        5e-5, gt=0, le=1, description="peak learning rate of AdamW (linear warmup, then decay)"
    )
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, more time")
    optimizer: Literal["adamw_torch_fused", "paged_adamw_8bit"] = Field(
        "adamw_torch_fused", description="AdamW in fp32, or bitsandbytes' paged 8-bit AdamW (CUDA): 2 bytes of state a parameter, not 8"
    )


class FullFinetune(FineTunedCausalLM):
    metadata = StrategyMetadata(
        name="full-finetune",
        description="Full fine-tuning: every weight of the causal LM trained on the answer tokens (trl)",
        family=Family.FULL,
        depends_on=(SharedModel.CAUSAL_LM,),
    )

    Options = FullFinetuneOptions
    options: FullFinetuneOptions
    trains = "full"

    @classmethod
    def estimate_memory(cls, request: MemoryRequest) -> MemoryEstimate:
        """On CUDA, a model that does not fit with the options as set is trained with ``MEMORY_SAVERS``
        if they make it fit: the estimate lists them as ``applied`` and the trial sets them."""
        estimate = super().estimate_memory(request)
        if estimate.fits is not False or not request.device.startswith("cuda"):
            return estimate
        saving = super().estimate_memory(request.with_options(**MEMORY_SAVERS))
        if not saving.fits:
            return estimate
        return saving.model_copy(update={"applied": [f"{name}={value}" for name, value in MEMORY_SAVERS.items()]})

    def build(self) -> tuple[Any, Any]:
        return load_causal_lm(self.context, dtype="float32")  # fp32 master weights, whatever the run's dtype

    def training(self) -> dict[str, Any]:
        return {
            "weight_decay": self.options.weight_decay,
            "gradient_checkpointing": self.options.gradient_checkpointing,
            "optimizer": self.options.optimizer,
        }

    def save_trained(self, directory: Path) -> None:
        """The whole trained model, a transformers folder (``model.safetensors``)."""
        self.model.save_pretrained(str(directory), safe_serialization=True)

    def trained_model(self, directory: Path) -> tuple[Any, Any]:
        return load_causal_lm(self.context, dtype="float32", weights=directory)


@hookimpl
def register_strategies(register) -> None:
    register(FullFinetune)
