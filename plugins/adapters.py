"""adapters: bottleneck adapters after each block's attention and feed-forward outputs (Houlsby et al., 2019).

Each adapter is a down-projection to ``bottleneck`` dimensions, a non-linearity and an
up-projection added back to its input; the up-projection starts at zero, so training starts from
the base model exactly. The base stays frozen (``slmbench.adapters``: hand-written, as the
``adapters`` library needs transformers 4). Training and prediction are those of every fine-tuning
strategy (``slmbench.finetune``). Only the adapters are saved (``adapters.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from slmbench.finetune import FineTunedCausalLM, FineTuneOptions, load_causal_lm
from slmbench.hookspecs import hookimpl


class Adapters(FineTunedCausalLM):
    name = "adapters"
    description = "Bottleneck adapters after every attention and feed-forward output, base frozen"
    tune = {"learning_rate": ("log", 2e-4, 3e-3)}

    class Options(FineTuneOptions):
        bottleneck: int = Field(64, ge=1, le=8192, description="width of each adapter's bottleneck")
        activation: Literal["gelu", "relu", "silu"] = Field("gelu", description="non-linearity inside each adapter")

    def build(self) -> tuple[Any, Any]:
        from slmbench.adapters import add_bottleneck_adapters

        model, tokenizer = load_causal_lm(self.context)
        adapted = add_bottleneck_adapters(model, self.options.bottleneck, self.options.activation)
        self.details["adapted_modules"] = len(adapted)
        return model, tokenizer

    def save(self, directory: Path) -> None:
        from slmbench.adapters import save_adapters

        metadata = {"bottleneck": str(self.options.bottleneck), "activation": self.options.activation}
        save_adapters(self.model, directory / "adapters.safetensors", metadata)


@hookimpl
def register_strategies(register) -> None:
    register(Adapters)
