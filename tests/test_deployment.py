"""The deployment check: trained models rebuilt unquantized, int8 and nf4, scored and measured (tiny models, CPU)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from slmbench import records
from slmbench.engine.model_cache import ModelCache
from slmbench.engine.serving import deployment_checks
from slmbench.lm.deployment import quantized_copies
from slmbench.strategy.registry import load_registry
from slmbench.tasks.examples import Examples
from slmbench.tasks.profiles import get_profile
from slmbench.testing import make_context, toy_splits

REGISTRY = load_registry()
LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lora trial on the toy task (smoke profile, the kit's tiny models), checked after the run's trials."""
    from conftest import run_toy_task

    return run_toy_task(tmp_path_factory.mktemp("lora-run"), "lora", "lora", "--deployment-check", "all", "--export-check", "none")


@pytest.fixture(scope="module")
def lora_record(lora_run: Path) -> records.TrialRecord:
    return records.read_trial(records.trial_file(lora_run, "lora.seed0"))


def test_a_reloaded_lora_is_checked_as_it_predicts_its_adapter_merged(lora_run: Path) -> None:
    """The check after the trials quantizes the model the trial predicted with (merged, lora's default), saved
    whole, not the base with the adapter put back."""
    from peft import PeftModel

    from slmbench.engine.reuse import check_trial, find_trial, load_trial

    strategy = load_trial(check_trial(find_trial(lora_run, "lora"), REGISTRY.strategy), REGISTRY.strategy, ModelCache(None))
    assert isinstance(strategy.model, PeftModel)  # as reloaded: the adapter apart
    copies = strategy.deployment_variants()
    assert not isinstance(strategy.model, PeftModel)  # merged, as it predicts
    with tempfile.TemporaryDirectory() as scratch:
        recipe = copies[0].rebuild(Path(scratch) / "checkpoint")
        assert recipe.attached_files == [] and Path(recipe.checkpoint).is_dir()


def test_lora_trial_records_its_model_unquantized_int8_and_nf4(lora_record: records.TrialRecord) -> None:
    assert lora_record.ok, lora_record.error
    checks = {check.quantization: check for check in lora_record.deployment}
    assert list(checks) == ["float32", "int8", "nf4"]
    assert [check.error for check in checks.values()] == [None, None, None]
    reference = checks["float32"]
    assert reference.accuracy == lora_record.metrics.accuracy  # the merged model, rebuilt from its checkpoint
    for check in checks.values():
        assert 0 <= check.accuracy <= 1 and 0 <= check.macro_f1 <= 1
        assert check.latency_ms_per_example > 0 and check.single_request.requests == get_profile("smoke").latency_requests
        assert check.seconds > 0
    assert 0 < checks["nf4"].size_bytes < checks["int8"].size_bytes < reference.size_bytes


@pytest.mark.parametrize("name", ["adapters", "prompt-tuning", "qlora", "encoder-finetune"])
def test_copies_are_rebuilt_with_what_the_strategy_keeps_apart(name: str, tmp_path: Path, monkeypatch) -> None:
    """Bottleneck adapters, a soft prompt, qlora's adapter and the encoder's head go back on the quantized copy."""
    strategy_cls = REGISTRY.strategy(name)
    strategy = strategy_cls(make_context(strategy_cls, tmp_path / name))
    train, validation, test = toy_splits()
    strategy.fit(train, validation)
    strategy.save(strategy.context.artifact_dir)  # as the trial does: the copies are rebuilt from it
    own = strategy.predict(test.texts)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    checks = {check.quantization: check for check in deployment_checks(strategy, test, LABELS, requests=0, seed=0)}

    accuracy = sum(int(p == g) for p, g in zip(own.labels, test.labels)) / len(test)
    if name == "qlora":  # its deployment form is its own: the 4-bit base as trained, its adapter back on it
        assert list(checks) == ["nf4"] and checks["nf4"].error is None and checks["nf4"].accuracy == accuracy
    else:
        assert list(checks) == ["float32", "int8", "nf4"]
        assert checks["float32"].error is None and checks["float32"].accuracy == accuracy
        assert checks["int8"].error is None and 0 < checks["int8"].size_bytes < checks["float32"].size_bytes
        # The tiny BERT (32 wide) is narrower than a 4-bit block of bitsandbytes' CPU layout: only the LMs here.
        if name != "encoder-finetune":
            assert checks["nf4"].error is None and checks["nf4"].size_bytes < checks["int8"].size_bytes
    assert list(scratch.iterdir()) == []  # every copy's files deleted on exit


def test_an_unsupported_quantization_is_recorded_as_an_error_not_raised() -> None:
    def rebuild(scratch: Path):
        raise AssertionError("nothing is loaded or written for an unsupported quantization")

    class Strategy:
        def deployment_variants(self):
            return quantized_copies(rebuild, "mps", "float32", ("nf4", "int3"), reference=False)

    checks = deployment_checks(Strategy(), Examples(["a text"], [0]), LABELS, requests=0, seed=0)

    assert [(check.quantization, check.error, check.accuracy) for check in checks] == [
        ("nf4", "UnsupportedQuantization: nf4 is not supported on mps here", None),
        ("int3", "UnsupportedQuantization: int3 is not supported on mps here", None),
    ]
