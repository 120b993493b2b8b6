"""Training a model's trainable parameters, shared by every strategy that updates weights
(``train_model``); the strategies say what is trainable, this module how it is trained (the trainer
class and its callback are in ``slmbench.lm.finetuning.hf_trainer``).

**Training** runs in trl's ``SFTTrainer`` (fused AdamW, linear warmup and decay, gradient clipping;
the QLoRA paged 8-bit optimizer on CUDA), under bfloat16 autocast where the hardware multiplies
bfloat16 natively (fp32 master weights). The validation loss (answer tokens, whole validation
split), taken before training and every ``budget.eval_every_steps`` steps, drives early stopping
(``budget.early_stopping_patience`` evaluations without improvement) and the choice of the best
checkpoint, whose trainable weights are kept in host memory and restored before prediction. The causal LMs' validation loss
is computed by the scoring engine (``validation_by_scoring``): the shared prompt prefix once, every
prompt once, instead of once per packed row (``score_validation``).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from typing import Any

from slmbench.lm.finetuning.hf_trainer import arguments_class, monitor_callback, trainer_class
from slmbench.lm.finetuning.setup import (
    Compilation,
    TrainingSetup,
    TrainResult,
    frozen_linears_in,
)


def planned_steps(dataset: Any, collator: Callable, setup: TrainingSetup) -> int:
    """Optimizer steps: ``max_steps`` (or ``epochs``), fewer if ``max_tokens`` runs out first.

    The token count is that of the batches of a seeded shuffle of ``dataset`` (the sampler's own
    batches differ, but not their typical cost), so the learning-rate schedule knows its length.
    """
    import random

    steps = setup.max_steps
    if steps is None:
        steps = math.ceil(setup.epochs * setup.steps_per_epoch(len(dataset)))
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


def _training_arguments(setup: TrainingSetup, *, max_steps: int, train_examples: int, evaluates: bool) -> dict[str, Any]:
    """The keyword arguments of transformers' ``TrainingArguments`` (and trl's ``SFTConfig``) for ``setup``,
    but ``output_dir``: ``max_steps`` optimizer steps, a validation every ``setup.eval_every_steps``
    steps (default: every epoch of ``train_examples``) and before training if it ``evaluates``."""
    return dict(
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
        eval_strategy="steps" if evaluates else "no",
        eval_steps=setup.eval_every_steps or setup.steps_per_epoch(train_examples),
        eval_on_start=evaluates,
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


def _arguments_and_trainer_class(sft: bool, output_dir: str, arguments: dict[str, Any], device: str) -> tuple[Any, type]:
    """trl's ``SFTConfig`` and ``SFTTrainer`` (``sft``), else transformers' ``TrainingArguments`` and
    ``Trainer``; the arguments on exactly ``device`` (``arguments_class``), the trainer with slmbench's
    additions (``trainer_class``)."""
    if sft:
        from trl import SFTConfig, SFTTrainer

        args = arguments_class(SFTConfig, device)(output_dir=output_dir, max_length=None, dataset_num_proc=None, **arguments)
        return args, trainer_class(SFTTrainer)
    import transformers

    training_args = arguments_class(transformers.TrainingArguments, device)(output_dir=output_dir, **arguments)
    return training_args, trainer_class(transformers.Trainer)


def _run(trainer: Any, monitor: Any) -> None:
    """Train without transformers' printing and progress callbacks, then restore the best weights."""
    import transformers

    for noisy in (transformers.trainer_callback.PrinterCallback, transformers.trainer_callback.ProgressCallback):
        trainer.remove_callback(noisy)
    trainer.train()
    monitor.restore_best()


def _train_result(
    setup: TrainingSetup,
    trainer: Any,
    monitor: Any,
    planned: int,
    validation_dataset: Any,
    frozen_bfloat16_layers: int,
    compilation: Compilation,
) -> TrainResult:
    """What the finished ``trainer`` and its ``monitor`` report."""
    return TrainResult(
        planned_steps=planned,
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
        frozen_bfloat16_layers=frozen_bfloat16_layers,
        compile_status=compilation.status,
    )


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
    from slmbench.common.progress import ProgressReporter

    progress = progress or ProgressReporter(enabled=False)
    max_steps = planned_steps(train_dataset, collator, setup)
    if validation_dataset is not None:
        validation_dataset = validation_subset(validation_dataset, setup.max_validation_tokens)
    arguments = _training_arguments(setup, max_steps=max_steps, train_examples=len(train_dataset), evaluates=validation_dataset is not None)
    frozen_dtype = setup.autocast if setup.bfloat16_frozen_weights else None
    with (
        tempfile.TemporaryDirectory(prefix="slmbench-train-") as scratch,  # the trainer's output_dir: nothing is saved
        frozen_linears_in(model, frozen_dtype) as frozen_bf16,
        Compilation(model, setup.compile) as compilation,
    ):
        args, trainer_cls = _arguments_and_trainer_class(sft, scratch, arguments, setup.device)
        with progress.task(f"{description}: training", max_steps) as advance:
            monitor = monitor_callback(model, setup, advance, on_validation_loss)
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
            _run(trainer, monitor)
    model.eval()
    return _train_result(setup, trainer, monitor, max_steps, validation_dataset, frozen_bf16, compilation)
