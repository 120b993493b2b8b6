"""Accelerator memory a trial needs, estimated from its models' configs before anything loads.

A model's shape (``ModelShape``) is read from its config and an instance built on torch's ``meta``
device (no weights allocated), so the parameter counts are exact. A strategy's hook
(``Strategy.estimate_memory``) turns the shape into a ``slmbench.records.MemoryEstimate`` with the
functions here; ``fits`` compares the total with the device's memory (``device_memory_mb``).

**Weights, gradients and optimizer states**, per parameter (Hugging Face, "Model training anatomy"
and "Efficient training on a single GPU", https://huggingface.co/docs/transformers/model_memory_anatomy):

- full fine-tuning: fp32 master weights 4 B, plus under bf16 autocast a 2 B copy of every matrix
  (autocast caches its casts for the step: mixed precision is 6 B), fp32 gradients 4 B, AdamW's two
  states 8 B (a paged 8-bit AdamW, bitsandbytes: 2 B);
- adapters, LoRA, prompt tuning: the frozen base at the dtype it is loaded in (its linear layers in
  bf16 under autocast, ``slmbench.lm.finetuning.setup.frozen_linears_in``), the trained part 16 B;
- QLoRA (Dettmers et al., 2023): the blocks' linear layers in 4-bit NF4 with double quantization,
  4.127 bits a weight; embeddings, output head and norms stay fp32 (``prepare_model_for_kbit_training``);
  the adapters 16 B;
- inference of a shared model: its weights at the run's dtype.

**Activations** kept for the backward pass, per layer and token, counted in tensor elements for a
pre-norm decoder (the derivation of Korthikanti et al., 2022, "Reducing Activation Recomputation in
Large Transformer Models", eq. 1, for today's blocks): the two norms' inputs and outputs (4h), q, k
and v (h + 2 kv), the attention output (h), and the MLP's saved tensors (gated, SwiGLU: gate, its
activation, up and their product, 4i; plain: 2i); with eager attention also the attention
probabilities (2 heads x tokens). SDPA/flash attention keeps no tokens x tokens matrix. An element
is 2 B under bf16 autocast, else the weights' dtype. LoRA keeps each adapted layer's input again
(dropped out, and cast to bf16 under autocast). With gradient checkpointing each layer keeps only
its input (h) and one layer is recomputed at a time. Training computes logits at the answer
tokens only (``logits_to_keep``), so they are small. Inference keeps a key/value cache
(2 x layers x kv x tokens) and one layer's working set.

The total is the peak, not the sum of the parts: weights, optimizer states and shared models all
along, plus the larger of the activations (at the end of the forward pass) and the gradients (the
backward pass frees activations as it makes them). "Model training anatomy" sums all five, an upper
bound that the measurements (``benchmarks/memory_estimate.py``) show is not reached.

The device's memory is ``SLMBENCH_DEVICE_MEMORY_MB`` when set (tests, or to plan for another card),
else the GPU's total memory, else the machine's RAM; a trial fits when its total is at most
``USABLE_FRACTION`` of it (the CUDA context, allocator fragmentation and temporaries take the rest).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from slmbench.records import MemoryEstimate

if TYPE_CHECKING:
    from slmbench.common.options import Options
    from slmbench.lm.models import SharedModel
    from slmbench.records import TrialConfig

DEVICE_MEMORY_ENV = "SLMBENCH_DEVICE_MEMORY_MB"
"""Set to a number of MiB: the device memory trials are checked against, whatever the machine has."""
USABLE_FRACTION = 0.9
"""Share of the device's memory a trial may plan to use."""
NF4_BYTES = 4.127 / 8
"""A 4-bit NF4 weight with its double-quantized block constants (QLoRA paper, section 3)."""
ANSWER_TOKENS = 4
"""Answer tokens per example whose logits training computes (a verbalizer and the end of turn)."""
ENCODE_BATCH = 64
"""Texts per forward pass of the embedding model (``slmbench.lm.retrieval.ENCODE_BATCH``)."""
QLORA_RANK = 16
"""LoRA rank of the qlora the remedies suggest (its default)."""
MIB = 2**20
TrainingKind = Literal["full", "adapter", "quantized_adapter"]
"""What training holds: every weight trained (fp32), a frozen base and a small trained part, or the
same on a 4-bit base."""
ADAMW = "adamw_torch_fused"
PAGED_ADAMW_8BIT = "paged_adamw_8bit"
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


class ModelShapeError(RuntimeError):
    """A model's config could not be read: no estimate."""


class WouldNotFit(RuntimeError):
    """A trial's estimate exceeds its device's memory: it is not run."""


@dataclass(frozen=True)
class ModelShape:
    """What a model's memory depends on, read from its config (parameters exact, from a meta-device instance)."""

    parameters: int
    linear_parameters: int
    """In the blocks' linear layers (not the output head): what 4-bit quantization and LoRA touch."""
    linear_widths: int
    """Sum of inputs + outputs of those layers: LoRA of rank r trains r times this."""
    linear_inputs: int
    """Sum of their inputs: what LoRA keeps again per token (its dropped-out input)."""
    layers: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    attention_heads: int
    kv_size: int
    """Key (= value) width: key/value heads x head size."""
    gated_mlp: bool
    eager_attention: bool
    max_positions: int | None = None

    @property
    def head_parameters(self) -> int:
        return self.vocab_size * self.hidden_size


@functools.cache
def model_shape(path: str, causal: bool = True, trust_remote_code: bool = False) -> ModelShape:
    """The shape of the model at ``path`` (a folder or hub id); ``causal`` False reads an encoder."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    from slmbench.lm.models import remote_code

    trust_remote_code = remote_code(path, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            auto = AutoModelForCausalLM if causal else AutoModel
            model = auto.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as error:  # noqa: BLE001 - a repository's own modelling code may raise anything
        raise ModelShapeError(f"cannot read the shape of {path}: {type(error).__name__}: {error}") from error
    text = config.get_text_config()
    head = model.get_output_embeddings() if causal else None
    linears = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head]
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    max_positions = getattr(text, "max_position_embeddings", None)
    if not causal and (sentence_config := Path(path) / "sentence_bert_config.json").is_file():  # sentence-transformers truncates
        max_positions = json.loads(sentence_config.read_text()).get("max_seq_length") or max_positions
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        linear_parameters=sum(m.weight.numel() for m in linears),
        linear_widths=sum(sum(m.weight.shape) for m in linears),
        linear_inputs=sum(m.weight.shape[0 if isinstance(m, Conv1D) else 1] for m in linears),
        layers=text.num_hidden_layers,
        hidden_size=text.hidden_size,
        intermediate_size=getattr(text, "intermediate_size", None) or 4 * text.hidden_size,
        vocab_size=text.vocab_size,
        attention_heads=heads,
        kv_size=(getattr(text, "num_key_value_heads", None) or heads) * head_dim,
        gated_mlp=any("gate" in name.rsplit(".", 1)[-1] for name, m in model.named_modules() if m in linears),
        eager_attention=getattr(config, "_attn_implementation", "eager") == "eager",
        max_positions=max_positions,
    )


# --- what a trial asks for --------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryRequest:
    """What a trial's memory depends on: its models, where they run, its budget and the strategy's options."""

    strategy: str
    device: str
    dtype: str
    batch_size: int
    max_input_tokens: int
    causal_lm: str = ""
    """As given (``--model``), resolved when read."""
    embedding_model: str = ""
    trust_remote_code: bool = False
    options: Options | None = None

    @classmethod
    def for_trial(cls, config: TrialConfig, options: Options, device: str | None = None, dtype: str | None = None) -> MemoryRequest:
        """The request of the trial ``config``, the strategy's ``options`` validated; ``device`` and
        ``dtype`` as the trial resolved them (default: as planned)."""
        from slmbench.lm.models import choose_device

        models = config.models
        device = device or choose_device(models.device)
        return cls(
            strategy=config.strategy,
            device=device,
            dtype=dtype or _planned_dtype(models.dtype, device),
            batch_size=config.profile.batch_size,
            max_input_tokens=config.profile.max_input_tokens,
            causal_lm=models.causal_lm,
            embedding_model=models.embedding_model,
            trust_remote_code=models.trust_remote_code,
            options=options,
        )

    def with_options(self, **values: Any) -> MemoryRequest:
        """The same request with some options changed (the options' defaults if there are none)."""
        assert self.options is not None, "only a strategy with options has options to change"
        return dataclasses.replace(self, options=self.options.model_copy(update=values))

    def causal_lm_shape(self) -> ModelShape:
        from slmbench.lm.models import EMBEDDED_CAUSAL_LM, resolve_causal_lm

        return model_shape(resolve_causal_lm(self.causal_lm or EMBEDDED_CAUSAL_LM), True, self.trust_remote_code)

    def embedding_model_shape(self) -> ModelShape:
        from slmbench.lm.models import EMBEDDED_EMBEDDING_MODEL, resolve_embedding_model

        return model_shape(resolve_embedding_model(self.embedding_model or EMBEDDED_EMBEDDING_MODEL), False, self.trust_remote_code)

    @property
    def autocast(self) -> bool:
        """Whether training runs under bf16 autocast (``slmbench.lm.finetuning.setup.autocast_dtype``),
        judged without touching the device: a bf16 run on CUDA, or a CPU with native bf16."""
        if self.device.startswith("cuda"):
            return self.dtype == "bfloat16"
        if self.device == "cpu":
            from slmbench.lm.hardware import native_bfloat16_cpu

            return native_bfloat16_cpu()
        return False


def _planned_dtype(requested: str, device: str) -> str:
    """The dtype a trial on ``device`` will run in: ``auto`` as ``choose_dtype`` resolves it, or, for a
    GPU this machine does not have (planning for another), bfloat16."""
    from slmbench.lm.models import choose_dtype

    if requested == "auto" and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return "bfloat16"
    return choose_dtype(requested, device)


# --- the parts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Footprint:
    """Bytes, by part."""

    weights: float = 0.0
    gradients: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    shared_models: float = 0.0

    @property
    def total(self) -> float:
        """The peak: weights, optimizer states and shared models all along, plus the larger of the
        activations (at the end of the forward pass) and the gradients (the backward pass frees
        activations as it makes gradients, and the optimizer step frees the gradients)."""
        return self.weights + self.optimizer + self.shared_models + max(self.activations, self.gradients)

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


def saved_elements_per_token(shape: ModelShape, tokens: int) -> int:
    """Elements one layer keeps per token for the backward pass (module docstring)."""
    mlp = (4 if shape.gated_mlp else 2) * shape.intermediate_size
    attention_probabilities = 2 * shape.attention_heads * tokens if shape.eager_attention else 0
    return 6 * shape.hidden_size + 2 * shape.kv_size + mlp + attention_probabilities


def training_activations(shape: ModelShape, batch_size: int, tokens: int, element_bytes: int, checkpointing: bool) -> float:
    """Bytes of activations kept for one training step of ``batch_size`` rows of ``tokens``."""
    n = batch_size * tokens
    one_layer = n * saved_elements_per_token(shape, tokens) * element_bytes
    layers = shape.layers * n * shape.hidden_size * element_bytes + one_layer if checkpointing else shape.layers * one_layer
    logits = 3 * batch_size * ANSWER_TOKENS * shape.vocab_size * 4  # fp32 logits, their log-softmax and gradient
    return layers + n * shape.hidden_size * element_bytes + logits


def working_elements_per_token(shape: ModelShape, tokens: int) -> int:
    """Elements alive at once per token inside one layer run without gradients: the residual stream and
    the normed input, with q, k, v and the attention output, or with the MLP's intermediates."""
    attention = 4 * shape.hidden_size + 2 * shape.kv_size + (shape.attention_heads * tokens if shape.eager_attention else 0)
    mlp = 2 * shape.hidden_size + (3 if shape.gated_mlp else 2) * shape.intermediate_size
    return max(attention, mlp)


def inference_footprint(shape: ModelShape, dtype: str, batch_size: int, tokens: int, *, kv_cache: bool) -> Footprint:
    """Running a model without gradients: its weights, its key/value cache if it keeps one, and one
    layer's working set (for a causal LM the logits are computed at the answer tokens only)."""
    element = _DTYPE_BYTES[dtype]
    n = batch_size * tokens
    cache = 2 * shape.layers * shape.kv_size * n * element if kv_cache else 0
    working = n * working_elements_per_token(shape, tokens) * element
    return Footprint(weights=shape.parameters * element, activations=cache + working)


@dataclass(frozen=True)
class TrainingPlan:
    """How a model is trained, as far as memory goes."""

    kind: TrainingKind
    trained_parameters: int
    """Parameters with gradients and optimizer states (all of them for ``full``)."""
    gradient_checkpointing: bool = False
    optimizer: str = ADAMW
    lora_dropout: float | None = None
    """For LoRA-like training (a trained path beside every linear layer), its dropout: each adapted
    layer keeps its input again, dropped out (a copy and a mask) and, under autocast, cast to bf16."""


def training_footprint(shape: ModelShape, plan: TrainingPlan, request: MemoryRequest, *, weights_dtype: str) -> Footprint:
    """Training ``shape`` as ``plan`` says, at the request's batch and length; the frozen base held in ``weights_dtype``."""
    autocast = request.autocast
    trained = shape.parameters if plan.kind == "full" else plan.trained_parameters
    matrices = shape.linear_parameters + shape.head_parameters
    weights: float
    if plan.kind == "full":
        weights = 4 * shape.parameters + (2 * matrices if autocast else 0)
    elif plan.kind == "quantized_adapter":
        weights = NF4_BYTES * shape.linear_parameters + 4 * (shape.parameters - shape.linear_parameters) + 4 * trained
    else:
        frozen = _DTYPE_BYTES[weights_dtype]
        linear_bytes = 2 if autocast else frozen
        weights = linear_bytes * shape.linear_parameters + frozen * (shape.parameters - shape.linear_parameters) + 4 * trained
    state_bytes = 2 if plan.optimizer.endswith("8bit") else 8
    element = 2 if autocast else (4 if plan.kind != "adapter" else _DTYPE_BYTES[weights_dtype])
    tokens = min(request.max_input_tokens, shape.max_positions or request.max_input_tokens)
    activations = training_activations(shape, request.batch_size, tokens, element, plan.gradient_checkpointing)
    if plan.lora_dropout is not None:
        per_input = (4 + 1 if plan.lora_dropout > 0 else 0) + (2 if autocast else 0)  # fp32 dropped-out copy and mask; bf16 cast
        layers_kept = 1 if plan.gradient_checkpointing else shape.layers
        activations += request.batch_size * tokens * shape.linear_inputs * per_input * layers_kept / shape.layers
    return Footprint(weights=weights, gradients=4 * trained, optimizer=state_bytes * trained, activations=activations)


# --- the device and the verdict -----------------------------------------------------------------


def device_memory_mb(device: str) -> float | None:
    """MiB the device offers: ``SLMBENCH_DEVICE_MEMORY_MB``, else the GPU's total, else the machine's RAM."""
    if override := os.environ.get(DEVICE_MEMORY_ENV):
        try:
            return float(override)
        except ValueError:
            raise ValueError(f"{DEVICE_MEMORY_ENV}={override!r} is not a number of MiB") from None
    if device.startswith("cuda"):
        import torch

        from slmbench.lm.hardware import gpu_properties

        if not torch.cuda.is_available():
            return None
        return gpu_properties(device).total_memory / MIB
    if device == "mps":
        return None
    import psutil

    return psutil.virtual_memory().total / MIB


def fits(total_bytes: float, device_mb: float | None) -> bool | None:
    return None if device_mb is None else total_bytes / MIB <= USABLE_FRACTION * device_mb


def estimate(footprint: Footprint, device: str, remedies: Sequence[tuple[str, Footprint]] = ()) -> MemoryEstimate:
    """The record of ``footprint`` on ``device``; when it does not fit, the ``remedies`` that lower it,
    the one that lowers it most first, each with the total it gives."""
    available = device_memory_mb(device)
    fit = fits(footprint.total, available)
    better = sorted((option for option in remedies if option[1].total < footprint.total), key=lambda option: option[1].total)
    return MemoryEstimate(
        device=device,
        weights_mb=_mb(footprint.weights),
        gradients_mb=_mb(footprint.gradients),
        optimizer_mb=_mb(footprint.optimizer),
        activations_mb=_mb(footprint.activations),
        shared_models_mb=_mb(footprint.shared_models),
        total_mb=_mb(footprint.total),
        device_memory_mb=None if available is None else _mb(available * MIB),
        fits=fit,
        remedies=[] if fit is not False else [f"{label}: {size_text(cost.total)}{_fit_mark(cost, available)}" for label, cost in better],
    )


def _mb(value: float) -> float:
    return round(value / MIB, 1)


def size_text(value_bytes: float) -> str:
    """``12.3 GiB``, or ``456 MiB`` under a GiB."""
    return f"{value_bytes / 2**30:.1f} GiB" if value_bytes >= 2**30 else f"{value_bytes / MIB:.0f} MiB"


def _fit_mark(footprint: Footprint, available: float | None) -> str:
    return " (fits)" if fits(footprint.total, available) else ""


def does_not_fit_message(estimate: MemoryEstimate, strategy: str) -> str:
    """Why a trial is not run: what it needs, what the device has, what would make it fit."""
    has = f"{size_text(estimate.device_memory_mb * MIB)} ({USABLE_FRACTION:.0%} usable)" if estimate.device_memory_mb else "unknown"
    fixes = "; ".join(estimate.remedies) or "a smaller model"
    return (
        f"{strategy} would not fit: it needs about {size_text(estimate.total_mb * MIB)} on {estimate.device}, which has {has}; "
        f"what would lower it: {fixes}"
    )


def estimate_before_trial(estimate_memory: Callable[[MemoryRequest], MemoryEstimate], request: MemoryRequest) -> MemoryEstimate | None:
    """The trial's estimate, by its strategy's hook; None (with a warning) if a model's shape cannot be
    read (loading it will say why)."""
    import warnings

    try:
        return estimate_memory(request)
    except ModelShapeError as error:
        warnings.warn(f"{request.strategy}: no memory estimate: {error}", stacklevel=2)
        return None


def check_fits(estimate: MemoryEstimate | None, strategy: str) -> None:
    """Raise WouldNotFit, saying what would make it fit, when the estimate exceeds the device."""
    if estimate is not None and estimate.fits is False:
        raise WouldNotFit(does_not_fit_message(estimate, strategy))


def applied_settings(estimate: MemoryEstimate) -> dict[str, str]:
    """The option settings the estimate applied so the trial fits (``NAME=VALUE``, as ``--set`` takes them)."""
    return dict(setting.split("=", 1) for setting in estimate.applied)


# --- estimates of a trial -------------------------------------------------------------------------


def shared_models_footprint(request: MemoryRequest, calls: Sequence[SharedModel]) -> Footprint:
    """Running the shared models ``calls`` names: the causal LM scoring ``batch_size`` prompts with a
    key/value cache, the embedder encoding ``ENCODE_BATCH`` texts; their weights count as shared."""
    total = Footprint()
    for kind in calls:
        if kind.value == "causal_lm":
            shape, batch, cache = request.causal_lm_shape(), request.batch_size, True
        else:
            shape, batch, cache = request.embedding_model_shape(), ENCODE_BATCH, False
        tokens = min(request.max_input_tokens, shape.max_positions or request.max_input_tokens)
        running = inference_footprint(shape, request.dtype, _inference_batch(batch, request.device), tokens, kv_cache=cache)
        total += Footprint(shared_models=running.weights, activations=running.activations)
    return total


def _inference_batch(base: int, device: str) -> int:
    """The batch the shared models run at: scaled up on a GPU (``slmbench.lm.batch_sizes``), if this machine has it."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            from slmbench.lm.batch_sizes import inference_batch_size

            return inference_batch_size(base, device)
    return base


def estimate_inference(request: MemoryRequest, calls: Sequence[SharedModel]) -> MemoryEstimate:
    """A strategy that only runs the shared models (none: about nothing)."""
    footprint = shared_models_footprint(request, calls)
    remedies = _smaller_batch(request, lambda smaller: shared_models_footprint(smaller, calls))
    if request.dtype == "float32" and request.device.startswith("cuda"):
        remedies.append(("--dtype bfloat16", shared_models_footprint(dataclasses.replace(request, dtype="bfloat16"), calls)))
    return estimate(footprint, request.device, remedies)


def estimate_training(
    request: MemoryRequest, shape: ModelShape, plan: TrainingPlan, *, weights_dtype: str, causal_lm: bool = True
) -> MemoryEstimate:
    """Training ``shape`` as ``plan`` says, with what would lower it: gradient checkpointing and a paged
    8-bit optimizer where the strategy has those options, a smaller batch, and for the causal LM qlora instead."""

    def footprint(**changes: Any) -> Footprint:
        return training_footprint(shape, dataclasses.replace(plan, **changes), request, weights_dtype=weights_dtype)

    options, name = request.options, request.strategy
    checkpointing = hasattr(options, "gradient_checkpointing") and not plan.gradient_checkpointing
    paging = hasattr(options, "optimizer") and plan.optimizer != PAGED_ADAMW_8BIT
    remedies = []
    with_checkpointing = f"gradient checkpointing (--set {name}.gradient_checkpointing=true)"
    with_paging = f"a paged 8-bit optimizer (--set {name}.optimizer={PAGED_ADAMW_8BIT}, CUDA)"
    if checkpointing:
        remedies.append((with_checkpointing, footprint(gradient_checkpointing=True)))
    if paging:
        remedies.append((with_paging, footprint(optimizer=PAGED_ADAMW_8BIT)))
    if checkpointing and paging:
        remedies.append((f"{with_checkpointing} and {with_paging}", footprint(gradient_checkpointing=True, optimizer=PAGED_ADAMW_8BIT)))
    remedies += _smaller_batch(request, lambda smaller: training_footprint(shape, plan, smaller, weights_dtype=weights_dtype))
    if causal_lm and plan.kind != "quantized_adapter":
        qlora = TrainingPlan("quantized_adapter", QLORA_RANK * shape.linear_widths, optimizer=PAGED_ADAMW_8BIT)
        remedies.append(("qlora instead (--strategies qlora)", training_footprint(shape, qlora, request, weights_dtype="float32")))
    return estimate(footprint(), request.device, remedies)


def _smaller_batch(request: MemoryRequest, footprint_at: Callable[[MemoryRequest], Footprint]) -> list[tuple[str, Footprint]]:
    """The largest halved batch size that fits (else 1), as a remedy; none for a batch of 1."""
    available = device_memory_mb(request.device)
    batch, cost = request.batch_size, None
    while batch > 1:
        batch //= 2
        cost = footprint_at(dataclasses.replace(request, batch_size=batch))
        if fits(cost.total, available):
            break
    return [] if cost is None else [(f"batch size {batch} (the profile's batch_size)", cost)]
