"""Training a model's trainable parameters, shared by every strategy that updates weights
(``train_model``); the strategies say what is trainable, this module how it is trained (the trainer
class and its callback are in ``slmbench.trainer``).

**Training** runs in trl's ``SFTTrainer`` (fused AdamW, linear warmup and decay, gradient clipping;
the QLoRA paged 8-bit optimizer on CUDA), under bfloat16 autocast where the hardware multiplies
bfloat16 natively (fp32 master weights). The validation loss (answer tokens, whole validation
split), taken before training and every ``budget.eval_every_steps`` steps, drives early stopping
(``budget.early_stopping_patience`` evaluations without improvement) and the choice of the best
checkpoint, whose trainable weights are restored before prediction. The causal LMs' validation loss
is computed by the scoring engine (``validation_by_scoring``): the shared prompt prefix once, every
prompt once, instead of once per packed row (``score_validation``).

**Closer to the hardware** (``TrainingSetup``'s defaults; ``benchmarks/train_throughput.py`` runs
the earlier set-up side by side): under bf16 autocast the frozen linear weights are stored in bf16,
the dtype autocast computes them in anyway, instead of being re-cast from fp32 at every pass (same
results); the optimizer is torch's fused AdamW; freed heap memory is handed back to the OS every
``trim_memory_every_steps`` steps, not after each one. ``torch.compile`` is opt-in (``compile``):
on a 2-core CPU its compile time exceeds what it saves in a quick trial; a failure to compile falls
back to eager, recorded in the trial details.
"""

from __future__ import annotations

import math
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from slmbench.trainer import monitor_callback, trainer_class

if TYPE_CHECKING:
    from slmbench.strategy import RunContext

EVAL_BATCH_SIZE = 32
"""Validation examples per batch (no gradients, so more of them share one prefix)."""


# --- closer to the hardware --------------------------------------------------------------------


def autocast_dtype(device: str, requested: bool | None = None) -> Any:
    """torch.bfloat16 when training should run under bfloat16 autocast (native bf16 hardware), else None."""
    import torch

    from slmbench.scoring import fast_bfloat16

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


# --- training ----------------------------------------------------------------------------------


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
    """Hand freed heap memory back to the OS every this many steps (``release_freed_memory`` costs ~0.1 s)."""
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

    @classmethod
    def from_context(
        cls, context: RunContext, *, learning_rate: float, compute_scale: int = 1, **overrides: Any
    ) -> TrainingSetup:
        """The profile's training budget; ``compute_scale`` multiplies its step and token caps (and the
        evaluation interval) for a model that many times smaller than the causal LM: same compute."""
        budget = context.budget

        def scaled(cap: int | None) -> int | None:
            return None if cap is None else cap * compute_scale

        return cls(
            learning_rate=learning_rate,
            batch_size=budget.batch_size,
            max_steps=scaled(budget.max_train_steps),
            eval_every_steps=scaled(budget.eval_every_steps),
            patience=budget.early_stopping_patience,
            max_tokens=scaled(budget.max_train_tokens),
            max_validation_tokens=budget.max_validation_tokens,
            autocast=autocast_dtype(context.device),
            epochs=budget.train_epochs,
            seed=context.seed,
            device=context.device,
            **overrides,
        )


@dataclass
class TrainResult:
    """What ``train`` reports; ``details()`` is what goes into the trial JSON."""

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


def planned_steps(dataset: Any, collator: Callable, setup: TrainingSetup) -> int:
    """Optimizer steps: ``max_steps`` (or ``epochs``), fewer if ``max_tokens`` runs out first.

    The token count is that of the batches of a seeded shuffle of ``dataset`` (the sampler's own
    batches differ, but not their typical cost), so the learning-rate schedule knows its length.
    """
    import random

    per_step = setup.batch_size * setup.gradient_accumulation_steps
    steps = setup.max_steps
    if steps is None:
        steps = math.ceil(setup.epochs * max(1, math.ceil(len(dataset) / per_step)))
    if setup.max_tokens is None:
        return steps
    rng = random.Random(setup.seed)
    order: list[int] = []
    spent = 0
    for step in range(steps):
        cost = 0
        for _ in range(setup.gradient_accumulation_steps):
            if len(order) < setup.batch_size:
                order += rng.sample(range(len(dataset)), len(dataset))
            batch, order = order[: setup.batch_size], order[setup.batch_size :]
            cost += int(collator([dataset[i] for i in batch])["computed_tokens"])
        if step and spent + cost > setup.max_tokens:
            return step
        spent += cost
    return steps


def validation_subset(dataset: Any, max_tokens: int | None) -> Any:
    """The first examples of ``dataset`` whose tokens add up to at most ``max_tokens`` (at least one)."""
    if max_tokens is None:
        return dataset
    spent, keep = 0, 0
    for ids in dataset["input_ids"]:
        spent += len(ids)
        if keep and spent > max_tokens:
            break
        keep += 1
    return dataset.select(range(keep))


def train_model(
    model: Any,
    train_dataset: Any,
    validation_dataset: Any,
    setup: TrainingSetup,
    *,
    collator: Callable,
    batch_loss: Callable,
    processing_class: Any,
    progress: Any,
    description: str,
    sft: bool = True,
    validation: Callable[[Any, Any], tuple[float, int]] | None = None,
    on_validation_loss: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model``'s trainable parameters, then restore the weights of the best validation loss.

    ``sft`` uses trl's SFTTrainer (causal LMs); otherwise transformers' Trainer (classifier heads).
    Without a ``validation_dataset`` it trains for the full length and keeps the last weights.
    ``validation(model, dataset)`` gives the validation (summed loss, count); by default ``batch_loss``
    over the dataset's batches. ``on_validation_loss(step, loss)`` hears every validation loss (and may
    raise to stop training: ``RunContext.on_validation_loss``).
    """
    import transformers

    from slmbench.progress import ProgressReporter

    progress = progress or ProgressReporter(enabled=False)
    steps_per_epoch = max(1, math.ceil(len(train_dataset) / (setup.batch_size * setup.gradient_accumulation_steps)))
    max_steps = planned_steps(train_dataset, collator, setup)
    eval_every = setup.eval_every_steps or steps_per_epoch
    if validation_dataset is not None:
        validation_dataset = validation_subset(validation_dataset, setup.max_validation_tokens)
    common = dict(
        per_device_train_batch_size=setup.batch_size,
        per_device_eval_batch_size=setup.eval_batch_size,
        gradient_accumulation_steps=setup.gradient_accumulation_steps,
        learning_rate=setup.learning_rate,
        weight_decay=setup.weight_decay,
        max_grad_norm=setup.max_grad_norm,
        warmup_steps=setup.warmup,
        lr_scheduler_type="linear",
        max_steps=max_steps,
        optim=setup.optimizer,
        train_sampling_strategy="group_by_length" if setup.group_by_length else "random",
        length_column_name="length",
        eval_strategy="steps" if validation_dataset is not None else "no",
        eval_steps=eval_every,
        eval_on_start=validation_dataset is not None,
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        bf16=False,  # autocast is applied by the trainer class itself, identically in training and validation
        fp16=False,
        activation_checkpointing=setup.gradient_checkpointing,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
        use_cpu=setup.device == "cpu",
        seed=setup.seed,
        data_seed=setup.seed,
    )
    frozen_dtype = setup.autocast if setup.bfloat16_frozen_weights else None
    with (
        tempfile.TemporaryDirectory(prefix="slmbench-train-") as scratch,
        frozen_linears_in(model, frozen_dtype) as frozen_bf16,
        Compilation(model, setup.compile) as compilation,
    ):
        if sft:
            from trl import SFTConfig, SFTTrainer

            args = SFTConfig(output_dir=scratch, max_length=None, dataset_num_proc=None, **common)
            trainer_cls = trainer_class(SFTTrainer)
        else:
            args = transformers.TrainingArguments(output_dir=scratch, **common)
            trainer_cls = trainer_class(transformers.Trainer)
        with progress.task(f"{description}: training", max_steps) as advance:
            monitor = monitor_callback(model, setup, Path(scratch), advance, on_validation_loss)
            trainer = trainer_cls(
                model=model,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=validation_dataset,
                data_collator=collator,
                processing_class=processing_class,
                callbacks=[monitor],
                batch_loss=batch_loss,
                autocast=setup.autocast,
                validation=validation,
                compilation=compilation,
            )
            for noisy in (transformers.trainer_callback.PrinterCallback, transformers.trainer_callback.ProgressCallback):
                trainer.remove_callback(noisy)
            trainer.train()
            monitor.restore_best()
    model.eval()
    return TrainResult(
        planned_steps=max_steps,
        validation_examples=0 if validation_dataset is None else len(validation_dataset),
        steps=trainer.state.global_step,
        best_step=monitor.best_step,
        best_validation_loss=monitor.best_loss,
        stopped_early=monitor.stopped_early,
        examples_seen=trainer.examples_seen,
        example_tokens=trainer.example_tokens,
        computed_tokens=trainer.computed_tokens,
        step_seconds=monitor.step_seconds,
        step_cpu_seconds=monitor.step_cpu_seconds,
        eval_seconds=trainer.eval_seconds,
        train_curve=monitor.train_curve,
        validation_curve=monitor.validation_curve,
        setup=setup,
        frozen_bfloat16_layers=frozen_bf16,
        compile_status=compilation.status,
    )


def validation_loss(model: Any, dataset: Any, *, collator: Callable, batch_loss: Callable, autocast: Any = None) -> float:
    """Mean target loss of ``model`` over ``dataset``, outside any trainer (tests, benchmarks)."""
    import torch

    total, count = 0.0, 0
    context = torch.autocast(str(next(model.parameters()).device.type), dtype=autocast) if autocast else nullcontext()
    model.eval()
    with torch.no_grad(), context:
        for start in range(0, len(dataset), EVAL_BATCH_SIZE):
            batch = collator([dataset[i] for i in range(start, min(start + EVAL_BATCH_SIZE, len(dataset)))])
            batch_total, batch_count = batch_loss(model, batch)
            total += float(batch_total)
            count += batch_count
    return total / max(count, 1)
