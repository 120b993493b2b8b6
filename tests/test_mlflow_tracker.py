"""The built-in MLflow tracker (``--track mlflow``), read back from a real local MLflow store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fake_strategies import plugin as fake_strategies

from slmbench import hookimpl
from slmbench.cli.exit_codes import EXIT_INPUT, EXIT_SOME_FAILED
from slmbench.cli.main import main


def run(task: Path, output, *extra: str, plugins: dict | None = None, strategies: str = "majority,last-label,exploding") -> int:
    """``slmbench run`` of model-free strategies (by default three, one of which fails) on the smoke profile,
    on the toy task ``task`` (its data beside it)."""
    return main(
        [
            "run",
            "--task",
            str(task),
            "--strategies",
            strategies,
            "--profile",
            "smoke",
            "--data-dir",
            str(task.parent),
            "--output",
            str(output),
            "--run-id",
            "tracked",
            "--no-progress",
            *extra,
        ],
        extra_plugins={"fake-strategies": fake_strategies(), **(plugins or {})},
    )


def use_file_store(monkeypatch, uri: str):
    """A client of the MLflow file store at ``uri``, which the tracker will use (MLflow 3.7+ asks to opt in
    to file stores). MLflow caches a store by its URI: a relative one must not be reused from another folder."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return mlflow.MlflowClient(uri)


def test_each_trial_is_an_mlflow_run_under_a_parent_holding_the_report(toy_task_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file_store = use_file_store(monkeypatch, "file:./mlruns-check")

    assert run(toy_task_file, tmp_path / "runs", "--track", "mlflow") == EXIT_SOME_FAILED

    experiment = file_store.get_experiment_by_name("slmbench/toy-sentiment")
    runs = {r.info.run_name: r for r in file_store.search_runs([experiment.experiment_id])}
    assert set(runs) == {"tracked", "majority.seed0", "last-label.seed0", "exploding.seed0"}
    parent = runs.pop("tracked")
    for name, child in runs.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["strategy"] == name.removesuffix(".seed0")
        assert child.data.params["seed"] == "0" and child.data.params["profile"] == "smoke"
        assert child.data.tags["config_hash"] and child.data.tags["variant"] == child.data.params["strategy"]
    majority = runs["majority.seed0"]
    assert majority.info.status == "FINISHED" and majority.data.tags["status"] == "ok"
    assert 0 <= majority.data.metrics["accuracy"] <= 1
    assert majority.data.metrics["train_seconds"] >= 0
    assert {"macro_f1", "f1.negative", "f1.neutral", "f1.positive", "predict_seconds", "peak_memory_mb"} <= set(majority.data.metrics)
    failed = runs["exploding.seed0"]
    assert failed.info.status == "FAILED" and failed.data.tags["error"].startswith("MemoryError: pretend the model did not fit")
    assert "accuracy" not in failed.data.metrics
    assert [a.path for a in file_store.list_artifacts(majority.info.run_id)] == ["majority.seed0.json"]
    report = {a.path for a in file_store.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/run.json"} <= report
    assert parent.data.tags["slmbench.task"] == "toy-sentiment"


def test_a_resumed_run_logs_only_the_trials_it_runs_under_the_same_parent(toy_task_file, tmp_path, monkeypatch):
    file_store = use_file_store(monkeypatch, (tmp_path / "mlruns").as_uri())
    run(toy_task_file, tmp_path / "runs", "--track", "mlflow")
    run(toy_task_file, tmp_path / "runs", "--track", "mlflow")  # majority and last-label are reused

    experiment = file_store.get_experiment_by_name("slmbench/toy-sentiment")
    names = sorted(r.info.run_name for r in file_store.search_runs([experiment.experiment_id]))
    assert names == ["exploding.seed0", "exploding.seed0", "last-label.seed0", "majority.seed0", "tracked"]


def test_by_default_the_store_is_mlruns_in_the_current_folder(toy_task_file, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    assert run(toy_task_file, tmp_path / "runs", "--track", "mlflow", strategies="majority") == 0

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("slmbench/toy-sentiment")
    (trial,) = client.search_runs([experiment.experiment_id], filter_string="tags.status = 'ok'")
    assert trial.data.metrics["accuracy"] > 0 and "train_seconds" in trial.data.metrics


def test_without_mlflow_the_run_stops_before_any_trial_saying_what_to_install(toy_task_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError

    assert run(toy_task_file, tmp_path / "runs", "--track", "mlflow") == EXIT_INPUT

    assert "--track mlflow: MLflow is not installed: pip install 'slmbench[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_tracker_that_fails_only_warns(toy_task_file, tmp_path):
    class Failing:
        @hookimpl
        def register_trackers(self, register):
            register("failing", "raises on every trial")

        @hookimpl
        def trial_finished(self, trial, track):
            if "failing" in track:
                raise ConnectionError("tracking server unreachable")

    with pytest.warns(UserWarning, match="tracker plugin .* failed in trial_finished: ConnectionError: tracking server unreachable"):
        code = run(toy_task_file, tmp_path / "runs", "--track", "failing", plugins={"failing-tracker": Failing()})

    assert code == EXIT_SOME_FAILED  # the run went on: only exploding failed
    assert (tmp_path / "runs" / "toy-sentiment" / "tracked" / "report.md").is_file()
