"""lora: low-rank adapters (Hu et al., 2021) on every linear layer of the causal LM but the output head.

The base weights stay frozen. Each targeted linear layer W becomes W + (alpha / rank) * B A, with A
(rank x inputs) and B (outputs x rank, zero at the start) trained on the task: the instruction and
text in the chat template, the label's verbalizer as the assistant's answer, the loss on the answer
only (``slmbench.finetune``). The targets are found by peft (``all-linear``: every linear layer
except the output head) and listed in the trial details. Only the adapter is saved
(``adapter_model.safetensors``). For prediction it is merged into the base weights, so it costs what
the base model costs; predictions go through the shared scoring engine.

Parameters: ``rank`` (16), ``alpha`` (32), ``dropout`` (0.05), ``learning_rate`` (1e-3), ``merge`` (true).
``dropout`` 0 trains 1.25-1.4x faster on CPU (peft draws a mask over every targeted layer's input and
keeps a dropped-out copy), but its effect on the validation loss was mixed (README, Performance).
"""

from __future__ import annotations

from typing import Any

from slmbench.finetune import FineTunedCausalLM, load_causal_lm
from slmbench.hookspecs import hookimpl


def lora_config(params: dict[str, Any], **extra: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=params["rank"],
        lora_alpha=params["alpha"],
        lora_dropout=params["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
        **extra,
    )


def target_module_names(model: Any) -> list[str]:
    """The distinct names of the layers peft put LoRA on (``q_proj``, ``down_proj``...)."""
    return sorted({name.rsplit(".", 1)[-1] for name in model.peft_config["default"].target_modules})


class Lora(FineTunedCausalLM):
    name = "lora"
    description = "LoRA adapters on every linear layer, trained on the answer tokens (peft + trl)"
    defaults = {"rank": 16, "alpha": 32, "dropout": 0.05, "learning_rate": 1e-3, "merge": True}

    def build(self, params: dict[str, Any]) -> tuple[Any, Any]:
        from peft import get_peft_model

        model, tokenizer = load_causal_lm(self.context)
        model = get_peft_model(model, lora_config(params))
        self.details["target_modules"] = target_module_names(model)
        return model, tokenizer

    def for_prediction(self, model: Any) -> Any:
        return model.merge_and_unload() if self.details["params"]["merge"] else model


@hookimpl
def register_strategies(register) -> None:
    register(Lora)
