"""How one strategy trains (``TrainingSetup``, built from the profile's budget), what training
reports (``TrainResult``), and the precision and compile choices close to the hardware.

**Closer to the hardware** (``TrainingSetup``'s defaults; ``benchmarks/train_throughput.py`` runs
the earlier set-up side by side): under bf16 autocast the frozen linear weights are stored in bf16,
the dtype autocast computes them in anyway, instead of being re-cast from fp32 at every pass (same
results); the optimizer is torch's fused AdamW; training on the CPU, freed heap memory is handed back
to the OS every ``trim_memory_every_steps`` steps, not after each one. ``torch.compile`` is opt-in (``compile``):
on a 2-core CPU its compile time exceeds what it saves in a quick trial; a failure to compile falls
back to eager, recorded in the trial details.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmbench.tasks.profiles import Budget


EVAL_BATCH_SIZE = 32
"""Validation examples per batch (no gradients, so more of them share one prefix)."""


def autocast_dtype(device: str, requested: bool | None = None) -> Any:
    """torch.bfloat16 when training should run under bfloat16 autocast (native bf16 hardware), else None."""
    import torch

    from slmbench.lm.scoring import fast_bfloat16

    use = fast_bfloat16(torch.device(device)) if requested is None else requested
    return torch.bfloat16 if use else None


@contextmanager
def frozen_linears_in(model: Any, dtype: Any) -> Iterator[int]:
    """Within the block, the frozen fp32 linear layers (not the vocabulary projection) are stored in
    ``dtype`` (None: left alone); yields how many. Afterwards they are fp32 again.

    Under autocast to ``dtype`` they are computed in it anyway: stored so, they are not re-cast at
    every pass, and the results are the same. Quantized (4-bit) and trainable layers are left alone.
    """
    import torch

    head = model.get_output_embeddings()
    layers = [
        module
        for module in model.modules()
        if dtype is not None
        and isinstance(module, torch.nn.Linear)
        and module is not head
        and module.weight.dtype == torch.float32
        and not any(p.requires_grad for p in module.parameters())
    ]
    for module in layers:
        module.to(dtype)
    try:
        yield len(layers)
    finally:
        for module in layers:
            module.to(torch.float32)


def round_frozen_linears(model: Any, dtype: Any) -> None:
    """What ``frozen_linears_in`` leaves behind: the frozen linear layers' weights rounded to ``dtype``.
    A model reloaded after training gets it too, so that it is exactly the model that was trained."""
    with frozen_linears_in(model, dtype):
        pass


class Compilation:
    """``torch.compile`` (inductor) of a model's transformer, undone at its first error and when the
    ``with`` block ends (prediction runs eagerly); ``status`` says what ran."""

    def __init__(self, model: Any, enabled: bool) -> None:
        self.module = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.status = "off"
        if enabled:
            try:
                import torch

                self.module.forward = torch.compile(self.module.forward, backend="inductor", dynamic=True)
                self.status = "inductor"
            except Exception as error:  # torch without dynamo/inductor, unsupported platform
                self._fall_back(error)

    def __enter__(self) -> Compilation:
        return self

    def __exit__(self, *exc: object) -> None:
        vars(self.module).pop("forward", None)  # the class's eager forward again

    def _fall_back(self, error: Exception) -> None:
        vars(self.module).pop("forward", None)
        self.status = f"eager: compile failed ({type(error).__name__}: {error})"[:300]

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)``, run again eagerly if the compiled model fails (compilation is lazy)."""
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if self.status != "inductor":
                raise
            self._fall_back(error)
            return function(*args, **kwargs)


def compute_parameters(path: str, causal: bool, trust_remote_code: bool = False) -> int | None:
    """The parameters a token of training runs through in the model at ``path``: those of its blocks'
    linear layers (``ModelShape.linear_parameters``, read from its config). Not the token embeddings
    (a lookup) nor the vocabulary projection (computed at answer positions only): Gemma 3 270M's
    268M parameters are 168M of embeddings. None when the config cannot be read."""
    from slmbench.lm.memory_estimate import ModelShapeError, model_shape

    try:
        return model_shape(path, causal, trust_remote_code).linear_parameters
    except ModelShapeError:
        return None


def compute_scale(budget: Budget, parameters: int | None) -> float:
    """How many times the profile's step and token caps a model of ``parameters`` gets: those of a
    model of ``Budget.compute_parameters`` scaled by their ratio (1 when either is unknown)."""
    return budget.compute_parameters / parameters if budget.compute_parameters and parameters else 1.0


@dataclass
class TrainingSetup:
    """How one strategy trains; built from the profile's budget and the strategy's parameters."""

    learning_rate: float
    batch_size: int
    max_steps: int | None
    """Optimizer steps; None trains for ``epochs``."""
    eval_every_steps: int | None
    """None: once per epoch."""
    patience: int | None
    """Evaluations without improvement before stopping; None never stops early."""
    max_tokens: int | None = None
    """Tokens run through the model in training (``computed_tokens`` of the batches): fewer steps if reached first."""
    max_validation_tokens: int | None = None
    """The validation loss uses the first validation examples up to this many tokens."""
    epochs: float = 3.0
    warmup: float = 0.1
    """Fraction of the steps with a linear warmup."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    autocast: Any = None
    """torch.bfloat16 for bf16 autocast, or None."""
    optimizer: str = "adamw_torch_fused"
    bfloat16_frozen_weights: bool = True
    """Under bf16 autocast, store frozen fp32 linear weights in bf16 (autocast computes them in bf16 anyway)."""
    trim_memory_every_steps: int = 10
    """On the CPU, hand freed heap memory back to the OS every this many steps (``release_freed_memory`` costs ~0.1 s)."""
    compile: bool = False
    """``torch.compile`` the model (inductor); eager if that fails. Off: compiling costs more than a quick trial saves."""
    score_validation: bool = True
    """Causal LMs: the validation loss by the scoring engine (``validation_by_scoring``), not by packed rows."""
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = EVAL_BATCH_SIZE
    gradient_accumulation_steps: int = 1
    group_by_length: bool = False
    """Batch examples of similar length (needs a ``length`` column): for padded, not packed, batches."""
    parameters: int | None = None
    """The model's ``compute_parameters``: its training compute is tokens times these."""
    compute_scale: float = 1.0
    """The factor the profile's caps were scaled by for this model (``compute_scale``)."""

    def steps_per_epoch(self, examples: int) -> int:
        """Optimizer steps in one pass over ``examples`` (at least one)."""
        return max(1, math.ceil(examples / (self.batch_size * self.gradient_accumulation_steps)))

    @classmethod
    def from_budget(
        cls, budget: Budget, *, device: str, seed: int, learning_rate: float, parameters: int | None = None, **overrides: Any
    ) -> TrainingSetup:
        """The profile's training budget on ``device``, its step and token caps (and the evaluation
        interval) scaled to a model of ``parameters`` (``compute_scale``): the same compute, tokens times
        parameters, whatever the model. The validation batch scales with the device
        (``slmbench.lm.batch_sizes``); the training batch is the profile's on every device."""
        from slmbench.lm.batch_sizes import inference_batch_size

        scale = compute_scale(budget, parameters)

        def scaled(cap: int | None) -> int | None:
            return None if cap is None else max(1, round(cap * scale))

        return cls(
            learning_rate=learning_rate,
            batch_size=budget.batch_size,
            max_steps=scaled(budget.max_train_steps),
            eval_every_steps=scaled(budget.eval_every_steps),
            patience=budget.early_stopping_patience,
            max_tokens=scaled(budget.max_train_tokens),
            max_validation_tokens=budget.max_validation_tokens,
            autocast=autocast_dtype(device),
            epochs=budget.train_epochs,
            seed=seed,
            device=device,
            parameters=parameters,
            compute_scale=scale,
            **{"eval_batch_size": inference_batch_size(EVAL_BATCH_SIZE, device), **overrides},
        )


@dataclass
class TrainResult:
    """What ``train_model`` reports; ``details()`` is what goes into the trial JSON."""

    planned_steps: int
    validation_examples: int
    """Validation examples the loss was measured on."""
    steps: int
    best_step: int | None
    best_validation_loss: float | None
    stopped_early: bool
    examples_seen: int
    example_tokens: int
    computed_tokens: int
    step_seconds: float
    step_cpu_seconds: float
    """CPU time of the training steps, every thread (steadier than wall time when other jobs share the cores)."""
    eval_seconds: float
    train_curve: list[tuple[int, float]]
    validation_curve: list[tuple[int, float]]
    setup: TrainingSetup
    frozen_bfloat16_layers: int = 0
    """Frozen linear layers stored in bf16 for training."""
    compile_status: str = "off"

    @property
    def tokens_per_second(self) -> float:
        return self.example_tokens / self.step_seconds if self.step_seconds else 0.0

    def details(self) -> dict[str, Any]:
        return {
            "train_steps": self.steps,
            "planned_steps": self.planned_steps,
            "best_step": self.best_step,
            "best_validation_loss": None if self.best_validation_loss is None else round(self.best_validation_loss, 5),
            "stopped_early": self.stopped_early,
            "train_examples_seen": self.examples_seen,
            "train_tokens": self.example_tokens,
            "train_tokens_computed": self.computed_tokens,
            "train_tokens_per_second": round(self.tokens_per_second, 1),
            "train_step_seconds": round(self.step_seconds, 2),
            "train_step_cpu_seconds": round(self.step_cpu_seconds, 2),
            "validation_seconds": round(self.eval_seconds, 2),
            "validation_examples": self.validation_examples,
            "loss_curve": {
                "train": [[step, round(loss, 5)] for step, loss in self.train_curve],
                "validation": [[step, round(loss, 5)] for step, loss in self.validation_curve],
            },
            "model_parameters": self.setup.parameters,
            "compute_scale": round(self.setup.compute_scale, 3),
            "train_compute": self.computed_tokens * self.setup.parameters if self.setup.parameters else None,
            "learning_rate": self.setup.learning_rate,
            "batch_size": self.setup.batch_size,
            "max_steps": self.setup.max_steps,
            "max_train_tokens": self.setup.max_tokens,
            "eval_every_steps": self.setup.eval_every_steps,
            "early_stopping_patience": self.setup.patience,
            "gradient_checkpointing": self.setup.gradient_checkpointing,
            "optimizer": self.setup.optimizer,
            "autocast": None if self.setup.autocast is None else str(self.setup.autocast).removeprefix("torch."),
            "frozen_bfloat16_layers": self.frozen_bfloat16_layers,
            "compile": self.compile_status,
        }
