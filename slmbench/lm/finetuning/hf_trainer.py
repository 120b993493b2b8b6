"""slmbench's side of the transformers ``Trainer`` that ``slmbench.lm.finetuning.train_loop.train_model`` runs: the
trainer class (pluggable batch loss, autocast, an exact validation loss, the compile fallback) and
the callback that records the curves, stops early and keeps the best checkpoint.

transformers and trl are imported lazily, so their classes cannot be base classes at module level:
the behaviour is in the module-level mixins ``TrainingMonitor`` and ``SlmbenchTrainerMixin``, and
``monitor_callback`` / ``trainer_class`` put them in front of ``TrainerCallback`` / the given trainer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.lm.memory import release_freed_memory

if TYPE_CHECKING:
    import torch
    from transformers import Trainer as _TrainerBase  # what SlmbenchTrainerMixin is always mixed into

    from slmbench.lm.finetuning.setup import Compilation, TrainingSetup
else:
    _TrainerBase = object


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """The trainable parameters, copied to the CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def _load_trainable_state(model: Any, snapshot: Path) -> None:
    """Copy the parameters saved in ``snapshot`` back into ``model`` (on their device, in their dtype)."""
    import torch
    from safetensors.torch import load_file

    best = load_file(str(snapshot))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in best:
                parameter.copy_(best[name].to(parameter.device, parameter.dtype))


class TrainingMonitor:
    """Loss curves, step timing, progress, early stopping and best-checkpoint snapshots: the behaviour
    of the callback ``monitor_callback`` builds (combined there with transformers' ``TrainerCallback``)."""

    def __init__(
        self,
        model: Any,
        setup: TrainingSetup,
        directory: Path,
        advance: Callable[[int], None],
        on_validation_loss: Callable[[int, float], None] | None,
    ) -> None:
        self._model = model
        self._setup = setup
        self._advance = advance
        self._on_validation_loss = on_validation_loss
        self.train_curve: list[tuple[int, float]] = []
        self.validation_curve: list[tuple[int, float]] = []
        self.best_step: int | None = None
        self.best_loss: float | None = None
        self.bad_evaluations = 0
        self.stopped_early = False
        self.step_seconds = self.step_cpu_seconds = 0.0
        self.snapshot = directory / "best.safetensors"

    def on_step_begin(self, args, state, control, **kwargs):
        self._started, self._started_cpu = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self._setup.trim_memory_every_steps == 0:
            release_freed_memory()
        self.step_seconds += time.perf_counter() - self._started
        self.step_cpu_seconds += time.process_time() - self._started_cpu
        self._advance(1)
        if state.global_step >= state.max_steps and args.eval_strategy != "no":
            control.should_evaluate = True  # the last weights are always a candidate

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.train_curve.append((state.global_step, float(logs["loss"])))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = float(metrics["eval_loss"])
        if self.validation_curve and self.validation_curve[-1][0] == state.global_step:
            return  # already evaluated at this step
        self.validation_curve.append((state.global_step, loss))
        self._judge(loss, state, control)
        if self._on_validation_loss is not None:  # an option search may stop this setting here (it raises)
            self._on_validation_loss(state.global_step, loss)

    def _judge(self, loss: float, state: Any, control: Any) -> None:
        """Snapshot the weights of a new best ``loss``; otherwise count towards stopping early."""
        from safetensors.torch import save_file

        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_step, self.bad_evaluations = loss, state.global_step, 0
            save_file(_trainable_state(self._model), str(self.snapshot))
        else:
            self.bad_evaluations += 1
            if self._setup.patience is not None and self.bad_evaluations >= self._setup.patience:
                self.stopped_early = state.global_step < state.max_steps
                control.should_training_stop = True

    def restore_best(self) -> None:
        """Put back the trainable weights of the best validation loss (if one was snapshotted)."""
        if self.snapshot.exists():
            _load_trainable_state(self._model, self.snapshot)


def monitor_callback(
    model: Any,
    setup: TrainingSetup,
    directory: Path,
    advance: Callable[[int], None],
    on_validation_loss: Callable[[int, float], None] | None,
) -> Any:
    """A callback recording loss curves and step times, advancing the progress bar, stopping early after
    ``setup.patience`` evaluations without improvement and snapshotting (to ``directory``) the trainable
    weights of the best validation loss, which its ``restore_best()`` puts back."""
    from transformers import TrainerCallback

    monitor_cls = type("Monitor", (TrainingMonitor, TrainerCallback), {"__module__": __name__})
    return monitor_cls(model, setup, directory, advance, on_validation_loss)


class SlmbenchTrainerMixin(_TrainerBase):
    """What ``trainer_class`` adds to a transformers trainer: a pluggable batch loss, autocast, an exact
    validation loss and the compilation fallback. Only usable in front of a ``Trainer`` subclass: at run
    time it derives from ``object`` (transformers is imported lazily), for type checkers from ``Trainer``,
    whose attributes and methods it uses."""

    def __init__(
        self,
        *args: Any,
        batch_loss: Callable,
        autocast: Any,
        validation: Callable | None,
        compilation: Compilation,
        **kwargs: Any,
    ) -> None:
        self._batch_loss = batch_loss
        self._autocast_dtype = autocast
        self._validation = validation
        self.compilation = compilation
        self.example_tokens = self.computed_tokens = self.examples_seen = 0
        self.eval_seconds = 0.0
        super().__init__(*args, **kwargs)

    def _autocast(self):
        import torch

        if self._autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.args.device.type, dtype=self._autocast_dtype)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        with self._autocast():
            total, count = self._batch_loss(model, inputs)
        if model.training:
            self.examples_seen += int(inputs.get("examples", 0))
            self.example_tokens += int(inputs.get("example_tokens", 0))
            self.computed_tokens += int(inputs.get("computed_tokens", 0))
        loss = total / max(count, 1)
        return (loss, None) if return_outputs else loss

    def training_step(self, *args: Any, **kwargs: Any):
        return self.compilation.run(super().training_step, *args, **kwargs)

    def _validation_total(self, eval_dataset: Any) -> tuple[float, int]:
        if self._validation is not None:
            return self._validation(self.model, eval_dataset if eval_dataset is not None else self.eval_dataset)
        total, count = 0.0, 0
        with self._autocast():
            for batch in self.get_eval_dataloader(eval_dataset):
                batch_total, batch_count = self._batch_loss(self.model, self._prepare_inputs(batch))
                total += float(batch_total)
                count += batch_count
        return total, count

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """Mean loss over every target of the validation split (not a mean of batch means)."""
        import torch

        started = time.perf_counter()
        model = self.model
        assert model is not None, "train_model always gives the trainer its model (never a model_init)"
        was_training = model.training
        model.eval()
        with torch.no_grad():
            total, count = self.compilation.run(self._validation_total, eval_dataset)
        model.train(was_training)
        release_freed_memory()
        metrics = {f"{metric_key_prefix}_loss": total / max(count, 1)}
        self.eval_seconds += time.perf_counter() - started
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def floating_point_ops(self, inputs) -> int:
        return 0


def trainer_class(base: type) -> type:
    """``base`` (SFTTrainer or Trainer) with a pluggable batch loss, autocast, an exact validation loss
    (by ``validation(model, dataset)`` if given, else by the batch loss) and a compilation fallback."""
    return type("SlmbenchTrainer", (SlmbenchTrainerMixin, base), {"__module__": __name__})
