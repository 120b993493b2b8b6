"""dora: weight-decomposed low-rank adaptation (Liu et al., 2024), peft's LoRA with ``use_dora``.

Each targeted weight is split into a magnitude (one trainable scale per output) and a direction,
and LoRA's low-rank update is applied to the direction only. Same targets, training, saving
(adapter only) and merged prediction as ``lora``, whose parameters it shares, no dropout by
default included: with dropout peft's DoRA runs every frozen layer a second time, on the
dropped-out input, which doubles the cost of training.

Parameters: ``rank`` (16), ``alpha`` (32), ``dropout`` (0.0), ``learning_rate`` (1e-3), ``merge`` (true).
"""

from __future__ import annotations

from typing import Any

from slmbench.finetune import load_causal_lm
from slmbench.hookspecs import hookimpl
from slmbench_plugins.lora import Lora, lora_config, target_module_names


class Dora(Lora):
    name = "dora"
    description = "DoRA: LoRA on the weights' direction plus a trained magnitude (peft use_dora)"
    defaults = {**Lora.defaults, "dropout": 0.0}

    def build(self, params: dict[str, Any]) -> tuple[Any, Any]:
        from peft import get_peft_model

        model, tokenizer = load_causal_lm(self.context)
        model = get_peft_model(model, lora_config(params, use_dora=True))
        self.details["target_modules"] = target_module_names(model)
        return model, tokenizer


@hookimpl
def register_strategies(register) -> None:
    register(Dora)
