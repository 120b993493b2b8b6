"""prompt-tuning: a soft prompt of trained virtual-token embeddings (Lester et al., 2021), peft.

A few embedding vectors are put before every prompt and trained; the whole model stays frozen.
They start as the embeddings of the task instruction's first tokens. The rest of the prompt (the
prompt format's markup, instruction, allowed answers, text) and the answer-only loss are those of every
fine-tuning strategy (``slmbench.strategy.finetuned_lm``). Only the virtual tokens are saved
(``adapter_model.safetensors``); at prediction they enter the scoring engine's key/value cache
before the prompt, where training put them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from slmbench.strategy import Family, Search, SharedModel, StrategyMetadata
from slmbench.strategy.finetuned_lm import (
    FineTunedCausalLM,
    FineTuneOptions,
    load_causal_lm,
)
from slmbench.strategy.hookspecs import hookimpl

if TYPE_CHECKING:
    from slmbench.lm.memory_estimate import ModelShape


class PromptTuningOptions(FineTuneOptions):
    learning_rate: Annotated[float, Search.log(3e-3, 1e-1)] = Field(
        3e-2, gt=0, le=1, description="peak learning rate of AdamW (linear warmup, then decay)"
    )
    virtual_tokens: int = Field(20, ge=1, le=512, description="trained embeddings put before every prompt")


class PromptTuning(FineTunedCausalLM):
    metadata = StrategyMetadata(
        name="prompt-tuning",
        description="Soft prompt tuning: trained virtual-token embeddings before the prompt (peft)",
        family=Family.PARAMETER_EFFICIENT,
        depends_on=(SharedModel.CAUSAL_LM,),
    )

    Options = PromptTuningOptions
    options: PromptTuningOptions

    @classmethod
    def trained_parameters(cls, shape: ModelShape, options: PromptTuningOptions) -> int:
        return options.virtual_tokens * shape.hidden_size

    def build(self) -> tuple[Any, Any]:
        from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

        model, tokenizer = load_causal_lm(self.context)
        config = PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=self.options.virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=self.context.task.instruction,
            tokenizer_name_or_path=self.context.models.causal_lm_path(),
        )
        return get_peft_model(model, config), tokenizer


@hookimpl
def register_strategies(register) -> None:
    register(PromptTuning)
