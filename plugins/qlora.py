"""qlora: LoRA on a base model quantized to 4-bit NormalFloat (Dettmers et al., 2023).

The frozen base is loaded by bitsandbytes in 4-bit NF4 with double quantization (bitsandbytes 0.46+
also runs it on CPU), its other weights are prepared by peft for k-bit training, and LoRA adapters
go on every linear layer but the output head, as in ``lora``. Compute runs in bfloat16 where the
hardware supports it, and on CUDA the optimizer is the paged 8-bit AdamW of the paper (elsewhere
torch's fused AdamW). The adapter is saved alone; prediction keeps it unmerged on the 4-bit base
(merging would re-quantize).

Its deployment check is that form only (``nf4``): the base reloaded in 4-bit as in training, the
adapter put back, saved and measured. An int8 or unquantized base would not be the model the
adapter was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from slmbench.lm.finetuning.setup import autocast_dtype
from slmbench.strategy import Family, SharedModel, StrategyMetadata
from slmbench.strategy.finetuned_lm import FineTunedCausalLM, load_causal_lm
from slmbench.strategy.hookspecs import hookimpl
from slmbench_plugins.lora import LoraOptions, lora_config, target_module_names

if TYPE_CHECKING:
    from slmbench.lm.memory_estimate import ModelShape


def set_cpu_inference_layout(model: Any, allowed: bool) -> None:
    """Allow or forbid bitsandbytes' CPU inference layout for the 4-bit weights.

    On AVX512-BF16 CPUs a 4-bit layer run in eval mode without gradients repacks its weights, for
    good, into a layout whose kernel has no backward: after the first validation pass, training
    would backpropagate through it silently wrong. Forbidden while training, allowed for prediction.
    """
    from bitsandbytes.functional import has_avx512bf16
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = allowed and has_avx512bf16()


def adapter_in_bfloat16(model: Any) -> None:
    """Store the LoRA matrices in bfloat16, as trl's SFTTrainer trains a QLoRA adapter whatever the
    compute dtype (the paper's recipe); peft reloads a saved one in float32. Cast back, a reloaded
    adapter computes exactly as the trained one did (its saved values are bfloat16 already)."""
    import torch
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.lora_A.to(torch.bfloat16)
            module.lora_B.to(torch.bfloat16)


class QloraOptions(LoraOptions):
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less memory, more time")


class Qlora(FineTunedCausalLM):
    metadata = StrategyMetadata(
        name="qlora",
        description="QLoRA: LoRA adapters on a 4-bit NF4 base model (bitsandbytes + peft + trl)",
        family=Family.PARAMETER_EFFICIENT,
        depends_on=(SharedModel.CAUSAL_LM,),
    )
    deployment_reference = False
    deployment_quantizations = ("nf4",)

    Options = QloraOptions
    options: QloraOptions
    trains = "quantized_adapter"
    adapts_linear_layers = True

    @classmethod
    def trained_parameters(cls, shape: ModelShape, options: QloraOptions) -> int:
        return options.r * shape.linear_widths

    def build(self) -> tuple[Any, Any]:
        import torch
        from peft import get_peft_model, prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        compute_dtype = autocast_dtype(self.context.device) or torch.float32
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
        model, tokenizer = load_causal_lm(self.context, dtype="float32", quantization_config=quantization)
        set_cpu_inference_layout(model, False)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self.options.gradient_checkpointing)
        model = get_peft_model(model, lora_config(self.options))
        self.details.update(
            target_modules=target_module_names(model),
            quantization="nf4, double quantization",
            bnb_4bit_compute_dtype=str(compute_dtype).removeprefix("torch."),
        )
        return model, tokenizer

    def for_prediction(self, model: Any) -> Any:
        set_cpu_inference_layout(model, True)
        adapter_in_bfloat16(model)
        return model

    def training(self) -> dict[str, Any]:
        cuda = self.context.device.startswith("cuda")
        return {
            "optimizer": "paged_adamw_8bit" if cuda else "adamw_torch_fused",
            "gradient_checkpointing": self.options.gradient_checkpointing,
        }


@hookimpl
def register_strategies(register) -> None:
    register(Qlora)
