"""The RunContext strategy tests hand their strategies: CPU, fp32, seed 0, no progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmbench.models import SharedModels
from slmbench.profiles import Budget, get_profile
from slmbench.progress import ProgressReporter
from slmbench.strategy import RunContext


def run_context(task: Any, models: SharedModels, artifact_dir: Path, budget: Budget | None = None, **params) -> RunContext:
    """A context on ``task`` with ``models``; ``budget`` defaults to the smoke profile, ``params`` are the strategy's."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    return RunContext(
        task=task,
        models=models,
        device="cpu",
        dtype="float32",
        seed=0,
        budget=budget or get_profile("smoke"),
        artifact_dir=artifact_dir,
        progress=ProgressReporter(enabled=False),
        params=params,
    )
