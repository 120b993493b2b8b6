"""adapters: bottleneck adapters after each block's attention and feed-forward outputs (Houlsby et al., 2019).

Each adapter is a down-projection to ``bottleneck`` dimensions, a non-linearity and an
up-projection added back to its input; the up-projection starts at zero, so training starts from
the base model exactly. The base stays frozen (``slmbench.lm.bottleneck``: hand-written, as the
``adapters`` library needs transformers 4). Training and prediction are those of every fine-tuning
strategy (``slmbench.strategy.finetuned_lm``). Only the adapters are saved (``adapters.safetensors``). The
deployment check quantizes the frozen base and puts the adapters back on it in full precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from slmbench.records import ExportForm
from slmbench.strategy import Family, SharedModel, StrategyMetadata
from slmbench.strategy.base import QuantizationNotExported
from slmbench.strategy.finetuned_lm import (
    FineTunedCausalLM,
    FineTuneOptions,
    load_causal_lm,
)
from slmbench.strategy.hookspecs import hookimpl

if TYPE_CHECKING:
    from slmbench.lm.memory_estimate import ModelShape

ADAPTERS_FILE = "adapters.safetensors"


class AdaptersOptions(FineTuneOptions):
    bottleneck: int = Field(64, ge=1, le=8192, description="width of each adapter's bottleneck")
    activation: Literal["gelu", "relu", "silu"] = Field("gelu", description="non-linearity inside each adapter")


class Adapters(FineTunedCausalLM):
    metadata = StrategyMetadata(
        name="adapters",
        description="Bottleneck adapters after every attention and feed-forward output, base frozen",
        family=Family.PARAMETER_EFFICIENT,
        depends_on=(SharedModel.CAUSAL_LM,),
    )

    Options = AdaptersOptions
    options: AdaptersOptions

    @classmethod
    def trained_parameters(cls, shape: ModelShape, options: AdaptersOptions) -> int:
        """Two adapters a layer, each down- and up-projection with biases."""
        per_adapter = 2 * shape.hidden_size * options.bottleneck + options.bottleneck + shape.hidden_size
        return 2 * shape.layers * per_adapter

    def build(self) -> tuple[Any, Any]:
        from slmbench.lm.bottleneck import add_bottleneck_adapters

        model, tokenizer = load_causal_lm(self.context)
        adapted = add_bottleneck_adapters(model, self.options.bottleneck, self.options.activation)
        self.details["adapted_modules"] = len(adapted)
        return model, tokenizer

    def save_trained(self, directory: Path) -> None:
        from slmbench.lm.bottleneck import save_adapters

        metadata = {"bottleneck": str(self.options.bottleneck), "activation": self.options.activation}
        save_adapters(self.model, directory / ADAPTERS_FILE, metadata)

    def trained_model(self, directory: Path) -> tuple[Any, Any]:
        from slmbench.lm.bottleneck import load_adapters

        model, tokenizer = self.build()
        load_adapters(model, directory / ADAPTERS_FILE)
        return model, tokenizer

    def export(self, directory: Path, quantize: str | None) -> list[ExportForm]:
        """No form but slmbench's own: no library outside slmbench loads bottleneck adapters into a model."""
        if quantize is not None:
            raise QuantizationNotExported("bottleneck adapters export only as slmbench's own form, unquantized")
        return []

    def deployment_rebuild(self, scratch: Path) -> Any:
        """The frozen base checkpoint quantized, the saved adapters put back on it in full precision."""
        from transformers import AutoModelForCausalLM

        from slmbench.lm.bottleneck import add_bottleneck_adapters, load_adapters
        from slmbench.lm.deployment import Rebuild

        path = self.context.artifact_dir / ADAPTERS_FILE

        def attach(base: Any) -> Any:
            add_bottleneck_adapters(base, self.options.bottleneck, self.options.activation)
            load_adapters(base, path)
            return base

        return Rebuild(self.context.models.causal_lm_path(), AutoModelForCausalLM, self.predict_with, attach, [path])


@hookimpl
def register_strategies(register) -> None:
    register(Adapters)
