"""slmbench's side of the transformers ``Trainer`` that ``slmbench.lm.finetuning.train_loop.train_model`` runs: the
trainer class (pluggable batch loss, autocast, an exact validation loss, the compile fallback), its
arguments on the trial's one device, and the callback that records the curves, stops early and keeps
the best checkpoint.

**One trial, one device.** transformers trains on ``cuda:0`` and, with several GPUs visible to the
process, wraps the model in ``DataParallel`` (``args.n_gpu > 1``). A trial runs on exactly its own
device (``TrainingSetup.device``, e.g. ``cuda:1``): ``arguments_class`` makes that device
``args.device`` and the current CUDA device, with ``n_gpu`` 1.

**The best checkpoint stays in host memory**: a CPU copy of the trainable weights, refreshed in place
at each improvement and copied back at the end, never written to disk (a full fine-tune of a 3.8B
model would write 15 GB each time); the strategy saves its artifact once, after training.

**Step times wait for the device**: CUDA kernels run asynchronously, so the clock is read after
``torch.cuda.synchronize``. Freed heap memory is handed back to the OS (``release_freed_memory``)
only when training on the CPU: device memory is not the host heap.

transformers and trl are imported lazily, so their classes cannot be base classes at module level:
the behaviour is in the module-level mixins ``TrainingMonitor``, ``SlmbenchTrainerMixin`` and
``OneDeviceArguments``, and ``monitor_callback`` / ``trainer_class`` / ``arguments_class`` put them in
front of ``TrainerCallback`` / the given trainer / the given arguments class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from slmbench.lm.memory import release_freed_memory

if TYPE_CHECKING:
    import torch
    from transformers import Trainer as _TrainerBase  # what SlmbenchTrainerMixin is always mixed into

    from slmbench.lm.finetuning.setup import Compilation, TrainingSetup
else:
    _TrainerBase = object


def _keep_trainable_state(model: Any, kept: dict[str, torch.Tensor]) -> None:
    """Copy ``model``'s trainable parameters into host memory: into ``kept``'s tensors, allocated at the
    first call and reused after (a full fine-tune's copy is the size of the model)."""
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                if name not in kept:  # a copy even on the CPU: the parameter itself trains on
                    kept[name] = torch.empty_like(parameter, device="cpu")
                kept[name].copy_(parameter)


def _load_trainable_state(model: Any, kept: dict[str, torch.Tensor]) -> None:
    """Copy the ``kept`` parameters back into ``model`` (on their device, in their dtype)."""
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in kept:
                parameter.copy_(kept[name])


def _synchronize(device: str) -> None:
    """Wait for ``device``'s queued kernels (CUDA runs them asynchronously); nothing to wait for elsewhere."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


class TrainingMonitor:
    """Loss curves, step timing, progress, early stopping, host-memory trimming and the best weights
    kept in host memory: the behaviour of the callback ``monitor_callback`` builds (combined there with
    transformers' ``TrainerCallback``)."""

    def __init__(
        self,
        model: Any,
        setup: TrainingSetup,
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
        self.best_state: dict[str, torch.Tensor] = {}
        """The trainable weights of the best validation loss, in host memory (empty before the first)."""

    def _trim_host_memory(self) -> None:
        """Hand freed heap memory back to the OS when training on the CPU (on CUDA the model is not there)."""
        if self._setup.device == "cpu":
            release_freed_memory()

    def on_step_begin(self, args, state, control, **kwargs):
        _synchronize(self._setup.device)  # the previous work done, so it is not charged to this step
        self._started, self._started_cpu = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        _synchronize(self._setup.device)
        if state.global_step % self._setup.trim_memory_every_steps == 0:
            self._trim_host_memory()
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
        self._trim_host_memory()
        self._judge(loss, state, control)
        if self._on_validation_loss is not None:  # an option search may stop this setting here (it raises)
            self._on_validation_loss(state.global_step, loss)

    def _judge(self, loss: float, state: Any, control: Any) -> None:
        """Keep the weights of a new best ``loss``; otherwise count towards stopping early."""
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_step, self.bad_evaluations = loss, state.global_step, 0
            _keep_trainable_state(self._model, self.best_state)
        else:
            self.bad_evaluations += 1
            if self._setup.patience is not None and self.bad_evaluations >= self._setup.patience:
                self.stopped_early = state.global_step < state.max_steps
                control.should_training_stop = True

    def restore_best(self) -> None:
        """Put back the trainable weights of the best validation loss (if one was kept)."""
        _load_trainable_state(self._model, self.best_state)


def monitor_callback(
    model: Any,
    setup: TrainingSetup,
    advance: Callable[[int], None],
    on_validation_loss: Callable[[int, float], None] | None,
) -> Any:
    """A callback recording loss curves and step times, advancing the progress bar, stopping early after
    ``setup.patience`` evaluations without improvement and keeping in host memory the trainable weights
    of the best validation loss, which its ``restore_best()`` puts back."""
    from transformers import TrainerCallback

    monitor_cls = type("Monitor", (TrainingMonitor, TrainerCallback), {"__module__": __name__})
    return monitor_cls(model, setup, advance, on_validation_loss)


class OneDeviceArguments:
    """What ``arguments_class`` puts in front of transformers' ``TrainingArguments`` (or trl's
    ``SFTConfig``): on CUDA, ``args.device`` is ``trial_device``, made the current device, and
    ``n_gpu`` is 1, so the ``Trainer`` places the model and batches there and never wraps the model in
    ``DataParallel``. Elsewhere transformers' own choice stands (the CPU through ``use_cpu``)."""

    trial_device: ClassVar[str]

    @cached_property
    def _setup_devices(self) -> torch.device:
        import torch

        device = torch.device(self.trial_device)
        if device.type != "cuda":
            return super()._setup_devices  # type: ignore[misc]
        if device.index is None:  # "cuda": the current device, before transformers makes cuda:0 current
            device = torch.device("cuda", torch.cuda.current_device())
        _ = super()._setup_devices  # type: ignore[misc]  # transformers' own set-up: accelerate's state, n_gpu
        self._n_gpu = 1
        torch.cuda.set_device(device)  # accelerate's device is "cuda": the current one
        return device


def arguments_class(base: type, device: str) -> type:
    """``base`` (``TrainingArguments`` or ``SFTConfig``) training on exactly ``device`` (``OneDeviceArguments``)."""
    return type(f"OneDevice{base.__name__}", (OneDeviceArguments, base), {"__module__": __name__, "trial_device": device})


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
