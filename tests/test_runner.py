"""The runner end to end: isolated trials written as they finish, resume, interruption, time limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fake_strategies
import pytest

from slmbench.common.progress import ProgressReporter
from slmbench.engine.run_options import RunError, RunOptions
from slmbench.engine.runner import run_benchmark

FAKES_SCRIPT = Path(fake_strategies.__file__)


def _options(task: Path, tmp_path, strategies, **extra) -> RunOptions:
    """The smoke profile on the toy task ``task`` (its data beside it), runs to ``tmp_path/runs``."""
    return RunOptions(
        task=str(task),
        strategies=strategies,
        profile="smoke",
        data_dir=str(task.parent),
        output=str(tmp_path / "runs"),
        **extra,
    )


def _trials(run_dir: Path) -> dict[str, dict]:
    """Whole-split trials of seed 0 by strategy name."""
    return {p.name.removesuffix(".seed0.json"): json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.seed0.json")}


def test_failures_are_isolated_and_every_trial_is_written(registry, toy_task_file, tmp_path):
    options = _options(toy_task_file, tmp_path, "exploding,majority,wrong-length")
    run_dir = run_benchmark(options, registry, ProgressReporter(enabled=False)).run_dir
    trials = _trials(run_dir)
    assert set(trials) == {"exploding", "majority", "wrong-length"}

    assert trials["exploding"]["status"] == "failed"
    assert trials["exploding"]["error"]["type"] == "MemoryError"
    assert "out of memory" in trials["exploding"]["error"]["message"]
    assert "pretend the model did not fit" in trials["exploding"]["error"]["traceback"]
    assert trials["wrong-length"]["status"] == "failed"
    assert "predictions for" in trials["wrong-length"]["error"]["message"]

    majority = trials["majority"]
    assert majority["status"] == "ok"
    gold, predicted = majority["predictions"]["gold"], majority["predictions"]["predicted"]
    assert len(gold) == sum(majority["metrics"]["per_class"][label]["support"] for label in majority["labels"])
    assert majority["metrics"]["accuracy"] == pytest.approx(gold.count(predicted[0]) / len(gold))
    assert majority["cost"]["artifact_bytes"] == 1
    assert majority["config"]["profile"]["name"] == "smoke"
    assert "torch" in majority["environment"]["packages"]
    assert majority["validation_predictions"]["predicted"] and majority["labelled_examples"] == 40 + 15

    run = json.loads((run_dir / "run.json").read_text())
    assert run["task"] == "toy-sentiment" and run["profile"]["max_test_examples"] == len(gold)
    assert run["floors"]["majority_label"] == "neutral" and run["floors"]["accuracy"] == majority["metrics"]["accuracy"]
    assert not any(Path(value).is_absolute() for value in (run["task_path"], run["options"]["task"], run["options"]["data_dir"]))
    assert (run_dir / "report.md").exists()


def test_unknown_strategy_names_a_close_match(registry, toy_task_file, tmp_path):
    with pytest.raises(KeyError, match="did you mean 'majority'"):
        run_benchmark(_options(toy_task_file, tmp_path, "majorty"), registry, ProgressReporter(enabled=False))


def test_rerunning_reuses_finished_trials_and_reruns_the_rest(registry, toy_task_file, tmp_path, fit_log):
    first = run_benchmark(_options(toy_task_file, tmp_path, "majority,exploding"), registry, ProgressReporter(False))
    again = run_benchmark(_options(toy_task_file, tmp_path, "majority,exploding,last-label"), registry, ProgressReporter(False))
    assert again.run_dir == first.run_dir
    assert again.reused == ["majority.seed0"] and again.ran == ["last-label.seed0"] and again.failed == ["exploding.seed0"]
    assert fit_log() == ["majority", "exploding", "exploding", "last-label"]

    more_seeds = run_benchmark(_options(toy_task_file, tmp_path, "majority", seeds=[0, 1]), registry, ProgressReporter(False))
    assert more_seeds.run_dir == first.run_dir  # seeds sit side by side in one run folder
    assert more_seeds.reused == ["majority.seed0"] and more_seeds.ran == ["majority.seed1"]
    assert json.loads((first.run_dir / "run.json").read_text())["seeds"] == [0, 1]


def test_learning_curve_runs_each_strategy_at_each_smaller_train_size(registry, toy_task_file, tmp_path, fit_log, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["slmbench", "run", "--first"])
    plain = run_benchmark(_options(toy_task_file, tmp_path, "majority,first-label"), registry, ProgressReporter(False))
    monkeypatch.setattr(sys, "argv", ["slmbench", "run", "--second"])
    too_large = _options(toy_task_file, tmp_path, "majority", train_sizes=[8, 40])
    with pytest.raises(RunError, match="--train-sizes 40: the train split has only 40 examples"):
        run_benchmark(too_large, registry, ProgressReporter(False))  # a silently ignored size would mislead
    options = _options(toy_task_file, tmp_path, "majority,first-label", train_sizes=[8, 16])
    curve = run_benchmark(options, registry, ProgressReporter(False))
    assert curve.run_dir == plain.run_dir and sorted(curve.reused) == ["first-label.seed0", "majority.seed0"]
    assert curve.ran == ["train-8/majority.seed0", "train-16/majority.seed0"]  # first-label learns from nothing
    assert fit_log() == ["majority", "first-label", "majority", "majority"]

    records = {size: json.loads((curve.run_dir / f"trials/train-{size}/majority.seed0.json").read_text()) for size in (8, 16)}
    assert [records[size]["train_examples"] for size in (8, 16)] == [8, 16]
    # validation shrinks in proportion (smoke: 40 train, 15 validation), so a point's labels are few
    assert [records[size]["validation_examples"] for size in (8, 16)] == [3, 6]
    assert all(record["status"] == "ok" and record["config"]["train_size"] == size for size, record in records.items())
    assert not (curve.run_dir / "artifacts" / "train-8" / "majority.seed0").exists()  # measurements kept, not models
    assert (curve.run_dir / "artifacts" / "majority.seed0" / "label.txt").exists()
    run = json.loads((curve.run_dir / "run.json").read_text())
    assert run["commands"] == ["slmbench run --first", "slmbench run --second"]  # every command, in order
    assert "## Learning curves" in (curve.run_dir / "report.md").read_text()


def test_a_trial_past_its_time_limit_is_stopped_and_the_run_goes_on(registry, toy_task_file, tmp_path, monkeypatch, fit_log):
    monkeypatch.setenv("SLMBENCH_TEST_SLEEP_SECONDS", "300")
    options = _options(toy_task_file, tmp_path, "sleeper,majority", trial_timeout=5)  # majority needs ~0.1 s, unloaded
    result = run_benchmark(options, registry, ProgressReporter(False))
    assert "sleeper:woke" not in fit_log() and "majority" in fit_log()  # stopped before its sleep ended
    trials = _trials(result.run_dir)
    assert trials["sleeper"]["status"] == "timeout"
    assert "5 s trial time limit" in trials["sleeper"]["error"]["message"]
    assert trials["majority"]["status"] == "ok"


def test_a_second_run_of_a_folder_being_written_fails_at_once_and_writes_nothing(registry, toy_task_file, tmp_path, fit_log):
    from filelock import FileLock

    from slmbench.engine.runner import LOCK_FILE

    first = run_benchmark(_options(toy_task_file, tmp_path, "majority"), registry, ProgressReporter(False))
    before = {path: path.read_bytes() for path in first.run_dir.rglob("*.json")}
    with (
        FileLock(first.run_dir / LOCK_FILE),  # another process writing it
        pytest.raises(RunError, match="another slmbench run is writing this run folder"),
    ):
        run_benchmark(_options(toy_task_file, tmp_path, "majority,last-label"), registry, ProgressReporter(False))
    assert {path: path.read_bytes() for path in first.run_dir.rglob("*.json")} == before
    assert fit_log() == ["majority"]
    again = run_benchmark(_options(toy_task_file, tmp_path, "majority,last-label"), registry, ProgressReporter(False))
    assert again.reused == ["majority.seed0"] and again.ran == ["last-label.seed0"]  # the lock was released


def test_a_time_limit_swallowed_inside_the_trial_is_raised_again() -> None:
    import time

    from slmbench.engine.trial_timeout import TrialTimeout, time_limit

    started = time.monotonic()
    with pytest.raises(TrialTimeout), time_limit(0.1):
        try:  # noqa: SIM105 - written out as a finaliser would swallow it
            time.sleep(5)
        except TrialTimeout:
            pass  # as a finaliser or a callback that prints and ignores errors would
        time.sleep(5)
    assert time.monotonic() - started < 3


def _comparable(trials: dict[str, dict]) -> dict:
    return {name: (t["status"], t["metrics"], t["predictions"]) for name, t in trials.items()}


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_resumes_to_the_same_results(toy_task_file, tmp_path, stop_signal):
    """Kill a run in its second trial; the resumed run equals an uninterrupted one and reruns no finished trial."""
    log = tmp_path / "fits.log"
    env = {**os.environ, "SLMBENCH_TEST_LOG": str(log), "PYTHONPATH": str(FAKES_SCRIPT.parent)}
    command = [
        sys.executable,
        str(FAKES_SCRIPT),
        "run",
        "--task",
        str(toy_task_file),
        "--strategies",
        "majority,sleeper,last-label",
        "--profile",
        "smoke",
        "--data-dir",
        str(toy_task_file.parent),
        "--no-progress",
    ]
    interrupted = subprocess.Popen([*command, "--output", str(tmp_path / "a")], env=env)
    deadline = time.monotonic() + 120
    while "sleeper" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    interrupted.send_signal(stop_signal)
    assert interrupted.wait(timeout=60) == 130

    run_dir = tmp_path / "a" / "toy-sentiment" / "smoke"
    trials = _trials(run_dir)
    assert trials["majority"]["status"] == "ok" and trials["sleeper"]["status"] == "cancelled"
    assert "last-label" not in trials
    assert "cancelled" in (run_dir / "report.md").read_text()

    quick_env = {**env, "SLMBENCH_TEST_SLEEP_SECONDS": "0"}
    subprocess.run([sys.executable, str(FAKES_SCRIPT), "run", "--resume", str(run_dir)], env=quick_env, check=True)
    assert log.read_text().split() == ["majority", "sleeper", "sleeper", "sleeper:woke", "last-label"]

    quick_env["SLMBENCH_TEST_LOG"] = str(tmp_path / "uninterrupted.log")
    subprocess.run([*command, "--output", str(tmp_path / "b")], env=quick_env, check=True)
    uninterrupted = _trials(tmp_path / "b" / "toy-sentiment" / "smoke")
    assert _comparable(_trials(run_dir)) == _comparable(uninterrupted)


@pytest.mark.integration
@pytest.mark.real_data
def test_cli_runs_the_embedded_models_reproducibly(shared_data_dir, tmp_path):
    """zero-shot and embedding-classifier on the real embedded models, twice: identical results."""
    from slmbench.cli.main import main

    runs = {}
    for run_id in ("first", "second"):
        code = main(
            [
                "run",
                "--task",
                "financial_sentiment",
                "--strategies",
                "zero-shot,embedding-classifier",
                "--profile",
                "smoke",
                "--data-dir",
                str(shared_data_dir),
                "--output",
                str(tmp_path),
                "--run-id",
                run_id,
                "--no-progress",
            ]
        )
        assert code == 0
        runs[run_id] = _trials(tmp_path / "financial_sentiment" / run_id)

    assert set(runs["first"]) == {"zero-shot", "embedding-classifier"}
    for trial in runs["first"].values():
        assert trial["status"] == "ok", trial["error"]
        assert len(trial["predictions"]["predicted"]) == 15
        assert all(0 <= p < 3 for p in trial["predictions"]["predicted"])
        assert trial["cost"]["total_params"] > 1_000_000
    assert _comparable(runs["first"]) == _comparable(runs["second"])
    report = (tmp_path / "financial_sentiment" / "first" / "report.md").read_text()
    assert "zero-shot" in report and "embedding-classifier" in report
