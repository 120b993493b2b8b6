"""lora: low-rank adapters (Hu et al., 2021) on every linear layer of the causal LM but the output head.

The base weights stay frozen. Each targeted linear layer W becomes W + (alpha / r) * B A, with A
(r x inputs) and B (outputs x r, zero at the start) trained on the task: the instruction and text
in the run's prompt format (the chat template, or plain text for a base model), the label's verbalizer
as the assistant's answer, the loss on the answer only
(``slmbench.strategy.finetuned_lm``). The targets are found by peft (``all-linear``: every linear layer except
the output head) and listed in the trial details. Only the adapter is saved
(``adapter_model.safetensors``). For prediction it is merged into the base weights, so it costs what
the base model costs; predictions go through the shared scoring engine.

**dora** (Liu et al., 2024) is this strategy with ``use_dora`` on: each targeted weight is split into
a magnitude (one trained scale per output) and a direction, and the low-rank update moves the
direction only. Its dropout defaults to 0: with dropout peft's DoRA runs every adapted layer a
second time, on the dropped-out input, which doubles the cost of training.

``dropout`` 0 trains 1.25-1.4x faster on CPU (peft draws a mask over every targeted layer's input and
keeps a dropped-out copy), but its effect on the validation loss was mixed (README, Performance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from slmbench.strategy import Family, SharedModel, StrategyMetadata
from slmbench.strategy.finetuned_lm import (
    FineTunedCausalLM,
    FineTuneOptions,
    load_causal_lm,
)
from slmbench.strategy.hookspecs import hookimpl

if TYPE_CHECKING:
    from slmbench.lm.memory_estimate import ModelShape


class LoraOptions(FineTuneOptions):
    """The low-rank update's shape, shared by lora, dora and qlora."""

    r: int = Field(16, ge=1, le=1024, description="rank of the low-rank update")
    alpha: float = Field(32, gt=0, description="scale: the update is multiplied by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapted layers' inputs, in training")


def lora_config(options: LoraOptions, **extra: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,  # type: ignore[arg-type]  # peft annotates int, but only computes alpha / r
        lora_dropout=options.dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
        **extra,
    )


def target_module_names(model: Any) -> list[str]:
    """The distinct names of the layers peft put LoRA on (``q_proj``, ``down_proj``...)."""
    return sorted({name.rsplit(".", 1)[-1] for name in model.peft_config["default"].target_modules})


class MergeableLoraOptions(LoraOptions):
    """LoRA's shape, and how lora and dora predict (qlora keeps its adapter apart)."""

    merge: bool = Field(True, description="merge the adapter into the base weights for prediction")
    use_dora: bool = Field(False, description="weight-decomposed LoRA (DoRA): train a magnitude per output too")


class Lora(FineTunedCausalLM):
    metadata = StrategyMetadata(
        name="lora",
        description="LoRA adapters on every linear layer, trained on the answer tokens (peft + trl)",
        family=Family.PARAMETER_EFFICIENT,
        depends_on=(SharedModel.CAUSAL_LM,),
    )

    Options = MergeableLoraOptions
    options: MergeableLoraOptions
    adapts_linear_layers = True

    @classmethod
    def trained_parameters(cls, shape: ModelShape, options: MergeableLoraOptions) -> int:
        """A and B of every targeted layer, plus DoRA's magnitudes (about one per output: counted as r)."""
        return (options.r + int(options.use_dora)) * shape.linear_widths

    def build(self) -> tuple[Any, Any]:
        from peft import get_peft_model

        model, tokenizer = load_causal_lm(self.context)
        model = get_peft_model(model, lora_config(self.options, use_dora=self.options.use_dora))
        self.details["target_modules"] = target_module_names(model)
        return model, tokenizer

    def for_prediction(self, model: Any) -> Any:
        return model.merge_and_unload() if self.options.merge else model


Dora = Lora.variant("dora", "DoRA: LoRA on the weights' direction plus a trained magnitude (peft use_dora)", use_dora=True, dropout=0.0)


@hookimpl
def register_strategies(register) -> None:
    register(Lora)
    register(Dora)
