"""Memory that fits, said before it runs: the estimate of each trial (``slmbench.lm.memory_estimate``),
printed by ``--dry-run`` beside the device's memory, and a trial that cannot fit failed before training.

The device's memory comes from ``SLMBENCH_DEVICE_MEMORY_MB`` here, so the verdicts do not depend on
this machine. The CUDA decisions (full-finetune's memory savers, a bf16 run) are tested on the CPU by
naming the device "cuda" in the request: the estimate reads no GPU for training, only that string,
the dtype and the device memory given by the environment variable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_harness import run_cli

from slmbench.lm.memory_estimate import (
    DEVICE_MEMORY_ENV,
    MemoryRequest,
    TrainingPlan,
    estimate_training,
    model_shape,
)
from slmbench.testing import tiny_causal_lm_folder
from slmbench_plugins.adapters import Adapters, AdaptersOptions
from slmbench_plugins.full_finetune import FullFinetune, FullFinetuneOptions
from slmbench_plugins.lora import Lora, MergeableLoraOptions
from slmbench_plugins.prompt_tuning import PromptTuning, PromptTuningOptions

GIB = 1024  # MiB


@pytest.fixture(scope="module")
def phi35_mini_shape(tmp_path_factory):
    """Phi-3.5-mini's shape (3.8B parameters) from its config alone: built on the meta device, no weights."""
    from transformers import Phi3Config

    folder = tmp_path_factory.mktemp("phi35-mini-config")
    Phi3Config(
        hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32064
    ).save_pretrained(folder)
    return str(folder), model_shape(str(folder))


@pytest.fixture(scope="module")
def tiny_phi3(tmp_path_factory) -> Path:
    return tiny_causal_lm_folder(tmp_path_factory.mktemp("models") / "phi3", "phi3")


def _full_profile_request(path: str, device: str = "cuda", **options) -> MemoryRequest:
    return MemoryRequest(
        strategy="full-finetune",
        device=device,
        dtype="bfloat16",
        batch_size=16,
        max_input_tokens=512,
        causal_lm=path,
        options=FullFinetuneOptions(**options),
    )


def test_full_finetune_of_phi35_mini_does_not_fit_80gb_but_fits_with_checkpointing_and_paged_8bit(phi35_mini_shape, monkeypatch):
    monkeypatch.setenv(DEVICE_MEMORY_ENV, str(80 * GIB))
    path, shape = phi35_mini_shape
    assert 3.8e9 < shape.parameters < 3.85e9  # Phi-3.5-mini: 3.82B

    as_set = estimate_training(_full_profile_request(path), shape, TrainingPlan("full", shape.parameters), weights_dtype="float32")
    assert as_set.gradients_mb + as_set.optimizer_mb == pytest.approx(12 * shape.parameters / 2**20, rel=0.01)  # fp32 gradients, AdamW
    assert as_set.weights_mb == pytest.approx(
        (4 * shape.parameters + 2 * shape.linear_parameters + 2 * shape.head_parameters) / 2**20, rel=0.01
    )
    assert as_set.weights_mb + as_set.gradients_mb + as_set.optimizer_mb > 57 * GIB  # 16 B a parameter (57 GiB) + autocast's bf16 copies
    assert as_set.fits is False and as_set.total_mb > 0.9 * 80 * GIB  # ~78 GiB at its peak, with 28 GiB of activations at 16 x 512
    assert any("gradient_checkpointing=true" in remedy and "(fits)" in remedy for remedy in as_set.remedies)

    # On CUDA the strategy turns the savers on itself, and says so
    saved = FullFinetune.estimate_memory(_full_profile_request(path, "cuda"))
    assert saved.fits is True and saved.applied == ["gradient_checkpointing=True", "optimizer=paged_adamw_8bit"]
    assert 40 * GIB < saved.total_mb < 50 * GIB  # 12 B a parameter (43 GiB) and a few GiB of checkpointed activations
    assert saved.optimizer_mb == pytest.approx(2 * shape.parameters / 2**20, rel=0.01)


def test_off_cuda_nothing_is_applied_and_the_remedies_are_said(phi35_mini_shape, monkeypatch):
    monkeypatch.setenv(DEVICE_MEMORY_ENV, str(80 * GIB))
    monkeypatch.setattr(MemoryRequest, "autocast", property(lambda self: True))  # as on a bf16-native CPU, whatever this one is
    path, _ = phi35_mini_shape
    estimate = FullFinetune.estimate_memory(_full_profile_request(path, "cpu"))
    assert estimate.fits is False and estimate.applied == []
    assert estimate.remedies[0].startswith("qlora instead")  # the one that lowers it most comes first
    assert any(remedy.startswith("batch size") for remedy in estimate.remedies)


def test_the_parameter_counts_are_exact_and_what_each_strategy_trains_matches_peft(tiny_phi3):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from slmbench.lm.bottleneck import add_bottleneck_adapters
    from slmbench_plugins.lora import lora_config

    shape = model_shape(str(tiny_phi3))

    def loaded() -> torch.nn.Module:
        return AutoModelForCausalLM.from_pretrained(tiny_phi3)

    assert shape.parameters == sum(p.numel() for p in loaded().parameters())

    def trainable(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    lora = MergeableLoraOptions()
    assert Lora.trained_parameters(shape, lora) == trainable(get_peft_model(loaded(), lora_config(lora)))
    adapters = AdaptersOptions()
    model = loaded()
    model.requires_grad_(False)
    add_bottleneck_adapters(model, adapters.bottleneck, adapters.activation)
    assert Adapters.trained_parameters(shape, adapters) == trainable(model)
    assert PromptTuning.trained_parameters(shape, PromptTuningOptions(virtual_tokens=20)) == 20 * shape.hidden_size


def _dry_run(tmp_path: Path, task: Path, model: Path, *strategies: str):
    argv = ["run", "--task", str(task), "--data-dir", str(task.parent), "--profile", "full", "--model", str(model)]
    return run_cli([*argv, "--strategies", ",".join(strategies) or "all", "--dry-run"], cwd=tmp_path, kind="cli argument", invalid=None)


def test_dry_run_prints_a_memory_estimate_per_trial_beside_the_device(tmp_path, toy_task_file, tiny_phi3, monkeypatch):
    monkeypatch.setenv(DEVICE_MEMORY_ENV, str(16 * GIB))
    result = _dry_run(tmp_path, toy_task_file, tiny_phi3)
    assert result.outcome == "accepted", result
    keys = [line.split("\t")[2] for line in result.stdout.splitlines()]  # stdout stays one tab-separated line per trial
    assert "full-finetune.seed0" in keys and "tfidf-linear.seed0" in keys
    assert "memory estimates on cpu (16.0 GiB, 90% usable" in result.stderr
    lines = {line.split()[0]: line for line in result.stderr.splitlines() if line.startswith("  ") and line.split()[0] in keys}
    assert sorted(lines) == sorted(keys)  # an estimate per trial
    assert all(" fits " in line for line in lines.values())
    # its parts, each shown from 0.5 MiB: the tiny model's weights are under that without bf16 autocast's copies
    assert "optimizer" in lines["full-finetune.seed0"] and "activations" in lines["full-finetune.seed0"]
    assert "no model" in lines["tfidf-linear.seed0"]  # strategies that call no model need about nothing
    assert "shared models" in lines["knn-vote.seed0"]


def test_dry_run_with_little_device_memory_reports_full_finetune_not_fitting_with_its_fix(tmp_path, toy_task_file, tiny_phi3, monkeypatch):
    monkeypatch.setenv(DEVICE_MEMORY_ENV, "25")  # MiB: the tiny Phi-3 needs ~33 MiB at the full profile's 16 x 512 tokens
    result = _dry_run(tmp_path, toy_task_file, tiny_phi3, "full-finetune", "tfidf-linear")
    assert result.outcome == "accepted", result
    assert "WILL NOT FIT" in next(line for line in result.stderr.splitlines() if "full-finetune.seed0" in line)
    assert "would lower it: gradient checkpointing (--set full-finetune.gradient_checkpointing=true)" in result.stderr
    assert " fits " in next(line for line in result.stderr.splitlines() if "tfidf-linear.seed0" in line)
    assert "2 trials: 2 to run, 0 done, 1 will not fit" in result.stderr


def test_a_trial_that_cannot_fit_fails_before_training(tmp_path, toy_task_file, tiny_phi3, monkeypatch):
    monkeypatch.setenv(DEVICE_MEMORY_ENV, "0.5")  # MiB: the tiny Phi-3 needs ~2 MiB at the smoke profile
    argv = ["run", "--task", str(toy_task_file), "--data-dir", str(toy_task_file.parent), "--profile", "smoke", "--model", str(tiny_phi3)]
    result = run_cli(
        [*argv, "--strategies", "full-finetune", "--output", "runs", "--no-progress"],
        cwd=tmp_path,
        kind="cli argument",
        invalid=None,
        writes=tmp_path / "runs",
    )
    assert result.outcome == "clean error", result  # every trial failed
    trial = json.loads(next((tmp_path / "runs").rglob("full-finetune.seed0.json")).read_text())
    assert trial["status"] == "failed" and trial["error"]["type"] == "WouldNotFit"
    assert "would not fit" in trial["error"]["message"] and "gradient checkpointing" in trial["error"]["message"]
    assert trial["memory_estimate"]["fits"] is False and trial["memory_estimate"]["device_memory_mb"] == 0.5
    assert "train_steps" not in (trial.get("details") or {})  # no training happened
    assert not any((tmp_path / "runs").rglob("model.safetensors"))


def test_a_trial_that_fits_records_its_estimate_beside_its_peak(tmp_path, toy_task_file, tiny_phi3, monkeypatch):
    monkeypatch.setenv(DEVICE_MEMORY_ENV, str(16 * GIB))
    argv = ["run", "--task", str(toy_task_file), "--data-dir", str(toy_task_file.parent), "--profile", "smoke", "--model", str(tiny_phi3)]
    result = run_cli(
        [*argv, "--strategies", "zero-shot", "--output", "runs", "--no-progress"],
        cwd=tmp_path,
        kind="cli argument",
        invalid=None,
        writes=tmp_path / "runs",
    )
    assert result.outcome == "accepted", result
    trial = json.loads(next((tmp_path / "runs").rglob("zero-shot.seed0.json")).read_text())
    assert trial["status"] == "ok" and trial["memory_estimate"]["fits"] is True
    assert trial["cost"]["estimated_memory_mb"] == trial["memory_estimate"]["total_mb"] > 0
