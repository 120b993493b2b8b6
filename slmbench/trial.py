"""One trial: a serializable config in, one JSON record out.

``run_trial`` needs nothing but a ``TrialConfig`` and a ``Workspace`` (a per-process cache of
loaded splits and models), so a trial can be rerun alone or sent to another process or machine.
A trial never raises for a strategy's error: it returns a record with ``status: failed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slmbench.environment import collect_environment
from slmbench.memory import PeakMemory
from slmbench.metrics import classification_metrics
from slmbench.models import SharedModels
from slmbench.plugins import Registry
from slmbench.profiles import Budget
from slmbench.progress import ProgressReporter
from slmbench.strategy import Predictions, RunContext
from slmbench.tasks import TaskSpec, load_task

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines a trial's result."""

    strategy: str
    task_path: str
    data_dir: str | None
    profile: dict[str, Any]
    seed: int
    models: dict[str, Any]
    """causal_lm, embedding_model, device, dtype, trust_remote_code."""
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class Workspace:
    """Per-process cache: splits and shared models are loaded once and reused by every trial."""

    def __init__(self, registry: Registry, progress: ProgressReporter) -> None:
        self.registry = registry
        self.progress = progress
        self._splits: dict[str, Any] = {}
        self._models: dict[str, SharedModels] = {}

    def splits(self, task: TaskSpec, config: TrialConfig) -> Any:
        from slmbench.data import load_splits

        key = json.dumps([config.task_path, config.data_dir, config.profile], sort_keys=True)
        if key not in self._splits:
            data_dir = Path(config.data_dir) if config.data_dir else None
            self._splits[key] = load_splits(task, data_dir, Budget(**config.profile))
        return self._splits[key]

    def models(self, config: TrialConfig) -> SharedModels:
        key = json.dumps(config.models, sort_keys=True)
        if key not in self._models:
            self._models[key] = SharedModels(**config.models)
        return self._models[key]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _artifact_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _check_predictions(predictions: Predictions, n_texts: int, n_labels: int) -> None:
    if len(predictions.labels) != n_texts:
        raise ValueError(f"strategy returned {len(predictions.labels)} predictions for {n_texts} texts")
    bad = [label for label in predictions.labels if not 0 <= int(label) < n_labels]
    if bad:
        raise ValueError(f"strategy returned label indices outside 0..{n_labels - 1}: {bad[:5]}")


def run_trial(config: TrialConfig, workspace: Workspace, artifact_dir: Path) -> dict[str, Any]:
    """Fit and evaluate one strategy; always return a complete trial record."""
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "strategy": config.strategy,
        "status": "failed",
        "error": None,
        "metrics": {},
        "cost": {},
        "details": {},
        "predictions": None,
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "started_at": _now(),
    }
    try:
        task = load_task(config.task_path)
        record.update(task=task.name, labels=task.label_names)
        strategy_cls = workspace.registry.strategy(config.strategy)
        record.update(description=strategy_cls.description, family=str(strategy_cls.family.value))
        splits = workspace.splits(task, config)
        models = workspace.models(config)
        for model_name in strategy_cls.uses_models:  # load outside the timers: shared by all trials
            getattr(models, model_name)()
        models.reset_usage()

        from transformers import set_seed

        set_seed(config.seed)
        artifact_dir.mkdir(parents=True, exist_ok=True)
        context = RunContext(
            task=task,
            models=models,
            device=models.device,
            dtype=models.dtype,
            seed=config.seed,
            budget=Budget(**config.profile),
            artifact_dir=artifact_dir,
            progress=workspace.progress,
            params=dict(config.params),
        )
        with PeakMemory(models.device) as memory:
            strategy = strategy_cls(context)
            start = time.perf_counter()
            strategy.fit(splits.train, splits.validation)
            train_seconds = time.perf_counter() - start
            start = time.perf_counter()
            predictions = strategy.predict(splits.test.texts)
            predict_seconds = time.perf_counter() - start
        _check_predictions(predictions, len(splits.test), len(task.labels))

        n_test = len(splits.test)
        trainable, total = strategy.parameter_counts()
        shared_bytes = sum(models.used.values())
        record.update(
            status="ok",
            metrics=classification_metrics(splits.test.labels, predictions.labels, task.label_names),
            cost={
                "train_seconds": round(train_seconds, 3),
                "predict_seconds": round(predict_seconds, 3),
                "latency_ms_per_example": round(1000 * predict_seconds / n_test, 3),
                "throughput_examples_per_second": round(n_test / predict_seconds, 3) if predict_seconds else None,
                "peak_memory_mb": round((memory.peak_added_bytes + shared_bytes) / 2**20, 1),
                "trainable_params": int(trainable),
                "total_params": int(total),
                "artifact_bytes": _artifact_bytes(artifact_dir),
            },
            details=strategy.details,
            predictions={
                "gold": list(splits.test.labels),
                "predicted": [int(label) for label in predictions.labels],
                "probabilities": None
                if predictions.probabilities is None
                else [[round(float(p), 5) for p in row] for row in predictions.probabilities],
            },
        )
        record["models"] = models.describe()
    except Exception as error:  # noqa: BLE001 - one failing strategy never takes down a run
        record["error"] = {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": traceback.format_exc(),
        }
    record["environment"] = collect_environment()
    record["finished_at"] = _now()
    return record


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(data, handle, indent=1)
        temporary = handle.name
    os.replace(temporary, path)
