"""The runner end to end: trials are isolated, written as they finish, and reported."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from slmbench import Examples, Family, Predictions, Strategy, hookimpl
from slmbench.plugins import load_registry
from slmbench.progress import ProgressReporter
from slmbench.runner import RunOptions, run_benchmark

TASKS = Path(__file__).resolve().parents[1] / "tasks"


class MajorityClass(Strategy):
    """Predicts the most frequent train label: a model-free strategy for runner tests."""

    name = "majority"
    description = "most frequent train label"
    family = Family.FEATURE

    def fit(self, train: Examples, validation: Examples) -> None:
        self.label = max(set(train.labels), key=train.labels.count)
        (self.context.artifact_dir / "label.txt").write_text(str(self.label))

    def predict(self, texts):
        return Predictions(labels=[self.label] * len(texts))


class Exploding(MajorityClass):
    name = "exploding"
    description = "raises while fitting"

    def fit(self, train: Examples, validation: Examples) -> None:
        raise MemoryError("pretend the model did not fit")


class WrongLength(MajorityClass):
    name = "wrong-length"
    description = "returns one prediction too few"

    def predict(self, texts):
        return Predictions(labels=[0] * (len(texts) - 1))


def _test_plugin():
    plugin = types.SimpleNamespace()

    @hookimpl
    def register_strategies(register):
        for cls in (MajorityClass, Exploding, WrongLength):
            register(cls)

    plugin.register_strategies = register_strategies
    return plugin


@pytest.fixture()
def registry():
    return load_registry(extra_plugins={"runner-test": _test_plugin()})


def test_failures_are_isolated_and_every_trial_is_written(registry, shared_data_dir, tmp_path):
    run_dir = run_benchmark(
        RunOptions(
            task=str(TASKS / "financial_sentiment.yaml"),
            strategies="exploding,majority,wrong-length",
            profile="smoke",
            data_dir=str(shared_data_dir),
            output=str(tmp_path),
        ),
        registry,
        ProgressReporter(enabled=False),
    )
    trials = {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}
    assert set(trials) == {"exploding", "majority", "wrong-length"}

    assert trials["exploding"]["status"] == "failed"
    assert trials["exploding"]["error"]["type"] == "MemoryError"
    assert "pretend the model did not fit" in trials["exploding"]["error"]["traceback"]
    assert trials["wrong-length"]["status"] == "failed"
    assert "predictions for" in trials["wrong-length"]["error"]["message"]

    majority = trials["majority"]
    assert majority["status"] == "ok"
    n_test = len(majority["predictions"]["gold"])
    assert n_test == sum(majority["metrics"]["per_class"][label]["support"] for label in majority["labels"])
    assert majority["metrics"]["accuracy"] == pytest.approx(
        majority["predictions"]["gold"].count(majority["predictions"]["predicted"][0]) / n_test
    )
    assert majority["cost"]["artifact_bytes"] == 1
    assert majority["config"]["profile"]["name"] == "smoke"
    assert "torch" in majority["environment"]["packages"]

    run = json.loads((run_dir / "run.json").read_text())
    assert run["task"] == "financial_sentiment" and run["profile"]["max_test_examples"] == n_test
    assert (run_dir / "report.md").exists()


def test_unknown_strategy_names_a_close_match(registry, shared_data_dir, tmp_path):
    with pytest.raises(KeyError, match="did you mean 'majority'"):
        run_benchmark(
            RunOptions(task=str(TASKS / "bbc.yaml"), strategies="majorty", profile="smoke",
                       data_dir=str(shared_data_dir), output=str(tmp_path)),
            registry,
            ProgressReporter(enabled=False),
        )


@pytest.mark.integration
def test_cli_runs_the_embedded_models(shared_data_dir, tmp_path):
    """The real zero-shot and embedding-classifier strategies through the CLI, on a smoke budget."""
    from slmbench.cli import main

    code = main([
        "run", "--task", "financial_sentiment", "--strategies", "zero-shot,embedding-classifier",
        "--profile", "smoke", "--data-dir", str(shared_data_dir), "--output", str(tmp_path),
        "--run-id", "it", "--no-progress",
    ])
    assert code == 0
    run_dir = tmp_path / "financial_sentiment" / "it"
    for name in ("zero-shot", "embedding-classifier"):
        trial = json.loads((run_dir / "trials" / f"{name}.json").read_text())
        assert trial["status"] == "ok", trial["error"]
        assert len(trial["predictions"]["predicted"]) == 15
        assert all(0 <= p < 3 for p in trial["predictions"]["predicted"])
        assert trial["cost"]["total_params"] > 1_000_000
    report = (run_dir / "report.md").read_text()
    assert "zero-shot" in report and "embedding-classifier" in report
