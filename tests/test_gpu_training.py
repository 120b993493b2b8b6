"""Training as it must run on a GPU, checked on a CPU-only machine (issue 26, "Ready for the GPU").

Where a test fakes a CUDA device it patches torch.cuda's queries or calls and says so: such a test
proves the decision slmbench takes for that device (which device, which calls), not that CUDA runs
it; the GPU check runs the same paths on a real device.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_finetune import LABELS as FINETUNE_LABELS
from test_finetune import TEXTS as FINETUNE_TEXTS

from slmbench.lm.finetuning.batches import (
    SharedPrefixCollator,
    causal_lm_loss,
    padded_causal_lm_loss,
    row_by_row_causal_lm_loss,
    sft_dataset,
)
from slmbench.lm.finetuning.setup import TrainingSetup
from slmbench.lm.finetuning.train_loop import train_model
from slmbench.tasks.examples import Examples

TEXTS, LABELS = FINETUNE_TEXTS[:6], FINETUNE_LABELS[:6]


def _setup(**fields) -> TrainingSetup:
    return TrainingSetup(**{"learning_rate": 1e-2, "batch_size": 4, "max_steps": 4, "eval_every_steps": 1, "patience": None, **fields})


def _fake_step(monitor, step: int = 1) -> None:
    """One training step as the Trainer reports it to its callbacks."""
    args, control = SimpleNamespace(eval_strategy="no"), SimpleNamespace()
    state = SimpleNamespace(global_step=step, max_steps=100)
    monitor.on_step_begin(args, state, control)
    monitor.on_step_end(args, state, control)


def _monitor(device: str, model=None, **fields):
    from slmbench.lm.finetuning.hf_trainer import monitor_callback

    return monitor_callback(model or torch.nn.Linear(2, 2), _setup(device=device, **fields), lambda steps: None, None)


# --- A: one trial, one device ----------------------------------------------------------------


@pytest.mark.parametrize("sft", [True, False])
def test_training_runs_on_the_trial_device_without_data_parallel(sft, monkeypatch, tmp_path):
    """Two GPUs visible, the trial on cuda:1: the Trainer must use cuda:1, one GPU (no DataParallel,
    which transformers uses when ``args.n_gpu > 1``; trl refuses it) and make cuda:1 current."""
    from transformers.training_args import ParallelMode

    from slmbench.lm.finetuning.train_loop import _arguments_and_trainer_class, _training_arguments

    # No GPU here: torch.cuda's queries are patched to show two GPUs, set_device records its calls.
    current: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: current.append(torch.device(device)))
    setup = _setup(device="cuda:1")
    arguments = _training_arguments(setup, max_steps=4, train_examples=8, evaluates=True)
    args, _ = _arguments_and_trainer_class(sft, str(tmp_path), arguments, setup.device)
    assert args.device == torch.device("cuda", 1)
    assert args.n_gpu == 1 and args.parallel_mode == ParallelMode.NOT_PARALLEL
    assert current[-1] == torch.device("cuda", 1)


def test_training_on_the_cpu_keeps_transformers_device_choice(tmp_path):
    from slmbench.lm.finetuning.train_loop import _arguments_and_trainer_class, _training_arguments

    setup = _setup()
    arguments = _training_arguments(setup, max_steps=4, train_examples=8, evaluates=True)
    args, _ = _arguments_and_trainer_class(True, str(tmp_path), arguments, setup.device)
    assert args.device == torch.device("cpu") and args.n_gpu == 0


# --- B: step times wait for the device -------------------------------------------------------


def test_step_time_synchronises_the_cuda_device_before_reading_the_clock(monkeypatch):
    import slmbench.lm.finetuning.hf_trainer as hf_trainer

    # No GPU here: torch.cuda.synchronize is patched to record which device it waits for, and the
    # monitor's clock to record when it is read.
    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append(f"wait {device}"))
    clock = SimpleNamespace(perf_counter=lambda: events.append("clock") or 0.0, process_time=lambda: 0.0)
    monkeypatch.setattr(hf_trainer, "time", clock)
    _fake_step(_monitor("cuda:1"))
    assert events == ["wait cuda:1", "clock", "wait cuda:1", "clock"]  # at the step's start and at its end
    events.clear()
    _fake_step(_monitor("cpu"))
    assert events == ["clock", "clock"]  # nothing to wait for on the CPU


# --- C: the best weights are kept in host memory, never written mid-training -----------------


def test_best_weights_stay_in_host_memory_and_are_restored(toy_task, smollm2_tokenizer, make_tiny_causal_lm, monkeypatch):
    """Validation losses forced to 5, 4, 3, 3.5, 3.6: step 2's weights come back, and no safetensors
    file is written while training (a 3.8B full fine-tune's snapshot is 15 GB)."""
    import safetensors.torch

    written: list[str] = []
    monkeypatch.setattr(safetensors.torch, "save_file", lambda tensors, path, *a, **k: written.append(path))
    model = make_tiny_causal_lm()
    forced = iter([5.0, 4.0, 3.0, 3.5, 3.6])
    evaluated = []

    def batch_loss(model, batch):
        if model.training:
            return causal_lm_loss(model, batch)
        evaluated.append({n: p.detach().clone() for n, p in model.named_parameters()})  # one batch per evaluation
        return torch.tensor(next(forced)), 1

    data = sft_dataset(toy_task, smollm2_tokenizer, Examples(TEXTS * 2, LABELS * 2), max_input_tokens=64)
    validation = sft_dataset(toy_task, smollm2_tokenizer, Examples(TEXTS[:4], LABELS[:4]), max_input_tokens=64)
    result = train_model(
        model,
        data,
        validation,
        _setup(max_steps=8, patience=2),
        collator=SharedPrefixCollator(),
        batch_loss=batch_loss,
        processing_class=smollm2_tokenizer,
        progress=None,
        description="test",
    )
    assert written == []
    assert result.best_step == 2 and result.steps == 4
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, evaluated[2][name])
    assert not all(torch.equal(evaluated[4][n], evaluated[2][n]) for n in evaluated[2])  # training moved on after step 2


# --- D: a batch's rows in one padded forward -------------------------------------------------


def _prompt_tuned(model, tokenizer):
    from peft import PromptTuningConfig, get_peft_model

    return get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))


@pytest.mark.parametrize("soft_prompt", [False, True])
@pytest.mark.parametrize("row_tokens", [120, 60, 1])
def test_padded_rows_give_the_loss_and_gradients_of_one_forward_per_row(
    toy_task, smollm2_tokenizer, make_tiny_causal_lm, row_tokens, soft_prompt
):
    """fp32 on the CPU: the rows of a batch run right-padded in one forward give the per-row loop's
    summed loss, count and gradients (rows of several examples, of one, and of unequal lengths)."""
    model = make_tiny_causal_lm()
    if soft_prompt:
        model = _prompt_tuned(model, smollm2_tokenizer)
    data = sft_dataset(toy_task, smollm2_tokenizer, Examples(TEXTS, LABELS), max_input_tokens=64)
    batch = SharedPrefixCollator(row_tokens)([data[i] for i in range(len(data))])
    assert len(batch["rows"]) > 1 and len({len(row["input_ids"]) for row in batch["rows"]}) > 1

    def loss_and_gradients(loss_function):
        model.zero_grad()
        total, count = loss_function(model, batch)
        (total / count).backward()
        return total.detach(), count, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    padded, rows = loss_and_gradients(padded_causal_lm_loss), loss_and_gradients(row_by_row_causal_lm_loss)
    assert padded[1] == rows[1]
    torch.testing.assert_close(padded[0], rows[0], rtol=1e-5, atol=1e-5)
    assert padded[2].keys() == rows[2].keys() and rows[2]
    for name in rows[2]:
        torch.testing.assert_close(padded[2][name], rows[2][name], rtol=1e-5, atol=1e-5, msg=name)


def test_rows_run_padded_together_on_cuda_and_one_by_one_on_the_cpu(monkeypatch):
    import slmbench.lm.finetuning.batches as batches

    # No GPU here: the loss is chosen by the batch's device, which a stand-in for a cuda:1 tensor gives.
    calls: list[str] = []
    monkeypatch.setattr(batches, "padded_causal_lm_loss", lambda model, batch: calls.append("padded"))
    monkeypatch.setattr(batches, "row_by_row_causal_lm_loss", lambda model, batch: calls.append("rows"))
    batches.causal_lm_loss(None, {"rows": [{"input_ids": SimpleNamespace(device=torch.device("cuda", 1))}]})
    batches.causal_lm_loss(None, {"rows": [{"input_ids": torch.zeros(3)}]})
    assert calls == ["padded", "rows"]


# --- E: host heap trimming only where the model lives in host memory --------------------------


def test_host_memory_is_trimmed_on_the_cpu_only(monkeypatch):
    import slmbench.lm.finetuning.hf_trainer as hf_trainer

    # No GPU here: torch.cuda.synchronize is patched out for the fake "cuda:1" monitor.
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    trims: list[str] = []
    args, control = SimpleNamespace(eval_strategy="steps"), SimpleNamespace()
    for device in ("cuda:1", "cpu"):
        monkeypatch.setattr(hf_trainer, "release_freed_memory", lambda device=device: trims.append(device))
        monitor = _monitor(device, trim_memory_every_steps=1)
        _fake_step(monitor)
        monitor.on_evaluate(args, SimpleNamespace(global_step=1, max_steps=100), control, metrics={"eval_loss": 1.0})
    assert trims == ["cpu", "cpu"]  # after the CPU step and evaluation; never on CUDA


# --- F: the option search keeps its best candidate off the accelerator -------------------------


class _RecordedModule(torch.nn.Linear):
    """A module that records where it is asked to go instead of going there (no GPU on this machine)."""

    def __init__(self) -> None:
        super().__init__(2, 2)
        self.moves: list[str] = []

    def to(self, device, *args, **kwargs):
        self.moves.append(str(device))
        return self


def _candidate(accuracy: float, shared: torch.nn.Module):
    from slmbench.engine.tuning import Candidate

    models = SimpleNamespace(loaded={("causal_lm", "m", "cuda:1", "float32", False): (shared, "tokenizer")})
    strategy = SimpleNamespace(context=SimpleNamespace(device="cuda:1", models=models), model=_RecordedModule(), shared=shared)
    return Candidate(strategy, None, accuracy)  # type: ignore[arg-type]


def test_search_parks_the_best_candidate_on_the_cpu_and_records_out_of_memory(monkeypatch):
    """With a (fake) "cuda:1" device: while a later setting trains, the best so far waits on the CPU
    (the shared model stays put), and comes back when chosen; a setting that runs out of memory is
    recorded as such, and accelerator memory is freed after every setting that is not kept."""
    import slmbench.engine.tuning as tuning
    from slmbench.strategy.search_space import Search

    freed: list[int] = []
    monkeypatch.setattr(tuning, "free_accelerator_memory", lambda: freed.append(1))
    shared = _RecordedModule()
    first = _candidate(0.8, shared)
    seen_at_fit: list[list[str]] = []

    def fit(values, report):
        seen_at_fit.append(list(first.strategy.model.moves))
        if len(seen_at_fit) == 1:
            return first
        if len(seen_at_fit) == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return _candidate(0.5, shared)

    result = tuning.search({"lr": Search.log(1e-4, 1e-2)}, {"lr": 1e-3}, 3, 0, fit, device="cuda:1")
    assert result.best is first
    assert seen_at_fit == [[], ["cpu"], ["cpu"]]  # parked before the second setting, and stays parked
    assert first.strategy.model.moves == ["cpu", "cuda:1"]  # back on the device once chosen
    assert shared.moves == []
    assert [trial.state for trial in result.tried] == ["complete", "failed: OutOfMemoryError", "complete"]
    assert len(freed) == 3  # after every setting
