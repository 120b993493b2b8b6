"""mlflow: ``slmbench run --track mlflow`` logs every trial as an MLflow run, and the report with them.

What goes where:

- one MLflow **experiment** per task, ``slmbench/<task>``;
- one **parent run** per slmbench run folder (run name: the run id), created with the first trial
  and found again when the run is resumed; when the run finishes it gets ``report.md``, the report's
  figures and ``run.json`` as artifacts (under ``report/``);
- one **child run** per trial that ran (reused trials are not logged again), named after the trial:
  params are the strategy's options (``option.<name>``) and the trial's set-up (strategy, task,
  seed, train size, profile, models, device, dtype); metrics are accuracy, macro-F1, F1 per class
  (``f1.<label>``), every cost of the record (``train_seconds``, ``peak_memory_mb``...), the
  labelled examples used and the deployment checks; tags are status, variant, config hash and
  family; the trial's JSON record is its artifact. A failed trial is a ``FAILED`` run with its error.

The store is ``MLFLOW_TRACKING_URI`` when set, else ``mlruns/`` in the current folder (a SQLite
store, ``mlruns/mlflow.db``, with the artifacts beside it): ``mlflow ui --backend-store-uri
sqlite:///mlruns/mlflow.db`` shows it. MLflow (``pip install 'slmbench[mlflow]'``) is imported only
when a run tracks with it; without it, ``--track mlflow`` stops before the first trial.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.strategy.hookspecs import hookimpl

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from slmbench.records import RunRecord, TrialRecord

TRACKER = "mlflow"
INSTALL_HINT = "pip install 'slmbench[mlflow]'"
DEFAULT_FOLDER = "mlruns"
RUN_KEY_TAG = "slmbench.run_key"
"""Tag of a parent run: a hash of its run folder's absolute path, to find the parent again."""
MAX_PARAM_LENGTH = 6000
"""MLflow refuses longer parameter values."""
_METRIC_NAME_UNSAFE = re.compile(r"[^\w.\- ]")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the SQLite store in ``mlruns/`` under the current folder."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    folder = Path(DEFAULT_FOLDER).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _client() -> MlflowClient:
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise RuntimeError(f"MLflow is not installed: {INSTALL_HINT}") from None
    return MlflowClient(tracking_uri())


def check_store() -> None:
    """Before a tracked run: MLflow is installed and its store answers (MLflow's own error otherwise)."""
    _client().search_experiments(max_results=1)


def _experiment_id(client: MlflowClient, task: str) -> str:
    name = f"slmbench/{task}"
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _run_key(run_dir: Path) -> str:
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def _milliseconds(timestamp: str | None) -> int | None:
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000) if timestamp else None


def _parent_run(client: MlflowClient, run_dir: Path, run: RunRecord) -> tuple[str, str]:
    """(experiment id, run id) of the run folder's parent run in its task's experiment, created the first time."""
    experiment_id = _experiment_id(client, run.task)
    key = _run_key(run_dir)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", max_results=1)
    if found:
        return experiment_id, found[0].info.run_id
    tags = {
        RUN_KEY_TAG: key,
        "slmbench.run_dir": str(Path(run_dir).resolve()),
        "slmbench.task": run.task,
        "slmbench.profile": run.profile.name if run.profile is not None else "",
        "slmbench.seeds": ",".join(map(str, run.seeds)),
    }
    created = client.create_run(experiment_id, start_time=_milliseconds(run.started_at), tags=tags, run_name=Path(run_dir).name)
    return experiment_id, created.info.run_id


def trial_params(trial: TrialRecord) -> dict[str, str]:
    """The trial's options (``option.<name>``) and set-up, as MLflow parameters (text)."""
    config = trial.config
    models = trial.models or (config.models if config else None)
    params: dict[str, Any] = {
        "strategy": trial.strategy,
        "task": trial.task,
        "seed": trial.seed,
        "train_size": "all" if trial.train_size is None else trial.train_size,
        "train_examples": trial.train_examples,
        "profile": config.profile.name if config else None,
        "causal_lm": models.causal_lm if models else None,
        "embedding_model": models.embedding_model if models else None,
        "device": models.device if models else None,
        "dtype": models.dtype if models else None,
        **{f"option.{name}": value for name, value in trial.options.items()},
    }
    return {name: _as_text(value)[:MAX_PARAM_LENGTH] for name, value in params.items() if value is not None}


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def trial_metrics(trial: TrialRecord) -> dict[str, float]:
    """Accuracy, macro-F1, F1 per class, every cost, labelled examples and deployment checks, as MLflow metrics."""
    metrics: dict[str, Any] = {}
    if trial.metrics is not None:
        metrics.update(accuracy=trial.metrics.accuracy, macro_f1=trial.metrics.macro_f1)
        metrics.update({f"f1.{label}": scores.f1 for label, scores in trial.metrics.per_class.items()})
    cost = trial.cost.model_dump()
    single_request = cost.pop("single_request") or {}
    metrics.update(cost)
    metrics.update({f"single_request_{name}": value for name, value in single_request.items()})
    metrics.update(
        labelled_examples=trial.labelled_examples,
        train_examples_seen=trial.train_examples_seen,
        prompt_tokens_per_example=trial.prompt_tokens_per_example,
    )
    for check in trial.deployment:
        metrics.update(
            {
                f"deployment.{check.quantization}.{name}": getattr(check, name)
                for name in ("accuracy", "macro_f1", "size_bytes", "latency_ms_per_example")
            }
        )
    return {_METRIC_NAME_UNSAFE.sub("_", name): float(value) for name, value in metrics.items() if value is not None}


def trial_tags(trial: TrialRecord) -> dict[str, str]:
    tags = {"status": trial.status, "variant": trial.name, "config_hash": trial.config_hash, "family": trial.family or ""}
    if trial.error is not None:
        tags["error"] = f"{trial.error.type}: {trial.error.message}"[:MAX_PARAM_LENGTH]
    return tags


def log_trial(client: MlflowClient, trial: TrialRecord, run_dir: Path) -> str:
    """Log ``trial`` as a child run of its run folder's parent run; return the child's id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from slmbench import records

    run = records.read_run(run_dir)
    experiment_id, parent = _parent_run(client, run_dir, run)
    key = records.trial_key(trial.name, trial.seed, trial.train_size)
    child = client.create_run(experiment_id, start_time=_milliseconds(trial.started_at), tags={MLFLOW_PARENT_RUN_ID: parent}, run_name=key)
    run_id = child.info.run_id
    finished = _milliseconds(trial.finished_at) or 0
    client.log_batch(
        run_id,
        metrics=[Metric(name, value, finished, 0) for name, value in trial_metrics(trial).items()],
        params=[Param(name, value) for name, value in trial_params(trial).items()],
        tags=[RunTag(name, value) for name, value in trial_tags(trial).items()],
    )
    if (record_file := records.trial_file(run_dir, key)).is_file():
        client.log_artifact(run_id, str(record_file))
    client.set_terminated(run_id, "FINISHED" if trial.ok else "FAILED", end_time=_milliseconds(trial.finished_at))
    return run_id


def log_report(client: MlflowClient, run: RunRecord, run_dir: Path, report: Path) -> str:
    """Give the run folder's parent run the report, its figures and ``run.json``; return the parent's id."""
    _, parent = _parent_run(client, run_dir, run)
    for path in [Path(report), *sorted(Path(report).parent.glob("*.png")), Path(run_dir) / "run.json"]:
        if path.is_file():
            client.log_artifact(parent, str(path), artifact_path="report")
    client.set_terminated(parent, "FINISHED")
    return parent


@hookimpl
def register_trackers(register) -> None:
    register(
        TRACKER,
        "MLflow: a run per trial (options, metrics, costs) under a run per run folder holding the report "
        f"(MLFLOW_TRACKING_URI, default ./{DEFAULT_FOLDER}; {INSTALL_HINT})",
        check=check_store,
    )


@hookimpl
def trial_finished(trial: TrialRecord, run_dir: Path, track: tuple[str, ...]) -> None:
    if TRACKER in track:
        log_trial(_client(), trial, run_dir)


@hookimpl
def run_finished(run: RunRecord, run_dir: Path, report: Path, track: tuple[str, ...]) -> None:
    if TRACKER in track:
        log_report(_client(), run, run_dir, report)
