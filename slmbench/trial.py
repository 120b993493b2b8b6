"""One trial: a serializable config in, one JSON record out.

``run_trial`` needs nothing but a ``TrialConfig`` and a ``Workspace`` (a per-process cache of
loaded splits and models), so a trial can be rerun alone or sent to another process or machine.
A trial never raises for a strategy's error: it returns a record with ``status: failed``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import signal
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

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
OUT_OF_MEMORY_HINT = "out of memory: try a smaller --profile or batch size, or qlora / a parameter-efficient strategy"


class TrialTimeout(BaseException):
    """Raised inside a trial that ran past its time limit (a BaseException, so strategies can't swallow it)."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TrialTimeout in the main thread after ``seconds`` (no limit when None or off the main thread).

    The alarm interrupts Python code; a call stuck inside native code is interrupted when it returns.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TrialTimeout(f"stopped after the {seconds:g} s trial time limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
    strategy_version: str = ""
    """The distribution (name and version) the strategy came from: a new version is a new config."""
    train_size: int | None = None
    """Learn from a nested stratified subset of this many train examples (a learning-curve point);
    ``None``: the whole train split."""

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


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (on every device) for a reproducible trial."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def _error(error: BaseException, hint: str | None = None) -> dict[str, str]:
    message = str(error)
    return {
        "type": type(error).__name__,
        "message": f"{message} ({hint})" if hint else message,
        "traceback": "".join(traceback.format_exception(error)),
    }


def _free_accelerator_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_trial(
    config: TrialConfig, workspace: Workspace, artifact_dir: Path, timeout_seconds: float | None = None
) -> dict[str, Any]:
    """Fit and evaluate one strategy; always return a complete trial record.

    Its ``status`` is ``ok``, ``failed`` (the strategy raised), ``timeout`` (past
    ``timeout_seconds``) or ``cancelled`` (Ctrl-C or SIGTERM while it ran).
    """
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
        with time_limit(timeout_seconds):
            _fit_and_evaluate(config, workspace, artifact_dir, record)
    except TrialTimeout as error:
        record.update(status="timeout", error=_error(error))
    except KeyboardInterrupt as error:
        record.update(status="cancelled", error=_error(error, "interrupted by the user or a SIGTERM"))
    except Exception as error:  # noqa: BLE001 - one failing strategy never takes down a run
        out_of_memory = isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
        if out_of_memory:
            _free_accelerator_memory()
        record["error"] = _error(error, OUT_OF_MEMORY_HINT if out_of_memory else None)
    record["environment"] = collect_environment()
    record["finished_at"] = _now()
    return record


def _fit_and_evaluate(config: TrialConfig, workspace: Workspace, artifact_dir: Path, record: dict[str, Any]) -> None:
    """The trial itself; fills ``record`` in place so that a failure keeps what was learnt."""
    from slmbench.data import nested_subset

    task = load_task(config.task_path)
    record.update(task=task.name, labels=task.label_names)
    strategy_cls = workspace.registry.strategy(config.strategy)
    record.update(description=strategy_cls.description, family=str(strategy_cls.family.value))
    splits = workspace.splits(task, config)
    models = workspace.models(config)
    for model_name in strategy_cls.uses_models:  # load outside the timers: shared by all trials
        getattr(models, model_name)()
    models.reset_usage()

    train, validation = splits.train, splits.validation
    if config.train_size is not None:  # a learning-curve point: validation shrinks in the same proportion
        train = nested_subset(splits.train, config.train_size, config.seed)
        share = config.train_size / len(splits.train)
        validation = nested_subset(splits.validation, math.ceil(share * len(splits.validation)), config.seed)
    record.update(
        train_size=config.train_size,
        train_examples=len(train),
        validation_examples=len(validation),
        learns_from_train=strategy_cls.learns_from_train,
    )
    seed_everything(config.seed)
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
        strategy.fit(train, validation)
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


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays (and anything with ``tolist``) as plain JSON; the rest as text."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and a rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, default=_jsonable)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)
