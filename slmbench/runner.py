"""A run: one task, several strategies, one shared protocol; trials written as they finish."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from slmbench.environment import collect_environment
from slmbench.models import EMBEDDED_CAUSAL_LM, EMBEDDED_EMBEDDING_MODEL, choose_device, choose_dtype
from slmbench.plugins import Registry
from slmbench.profiles import get_profile
from slmbench.progress import ProgressReporter
from slmbench.tasks import TaskSpec, load_task
from slmbench.trial import SCHEMA_VERSION, TrialConfig, Workspace, run_trial, write_json_atomic


@dataclass
class RunOptions:
    task: str
    strategies: str = "all"
    profile: str = "quick"
    data_dir: str | None = None
    output: str = "runs"
    seed: int = 0
    model: str = EMBEDDED_CAUSAL_LM
    embedding_model: str = EMBEDDED_EMBEDDING_MODEL
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    run_id: str | None = None


def resolve_task_path(name_or_path: str, registry: Registry) -> Path:
    """A YAML path as given, or the path of a task registered under that name."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return path
    return registry.task_path(name_or_path)


def select_strategies(spec: str, registry: Registry) -> list[str]:
    """``all`` (every registered strategy, in name order) or a comma-separated list."""
    if spec == "all":
        return sorted(registry.strategies)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    for name in names:
        registry.strategy(name)  # raises with a "did you mean" for unknown names
    return names


def run_benchmark(
    options: RunOptions,
    registry: Registry,
    progress: ProgressReporter,
    on_trial: Callable[[dict], None] = lambda record: None,
) -> Path:
    """Run every selected strategy as an isolated trial and return the run directory.

    The task and its data are validated before any model is loaded.
    """
    from slmbench.data import resolve_data_dir

    budget = get_profile(options.profile)
    task_path = resolve_task_path(options.task, registry)
    task: TaskSpec = load_task(task_path)
    strategies = select_strategies(options.strategies, registry)
    data_dir = resolve_data_dir(options.data_dir)
    device = choose_device(options.device)
    base_config = TrialConfig(
        strategy="",
        task_path=str(task_path),
        data_dir=str(data_dir) if data_dir else None,
        profile=budget.to_dict(),
        seed=options.seed,
        models={
            "causal_lm_name": options.model,
            "embedding_model_name": options.embedding_model,
            "device": device,
            "dtype": choose_dtype(options.dtype, device),
            "trust_remote_code": options.trust_remote_code,
        },
    )
    workspace = Workspace(registry, progress)
    splits = workspace.splits(task, base_config)
    run_id = options.run_id or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(options.output) / task.name / run_id
    write_json_atomic(
        run_dir / "run.json",
        {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "task": task.name,
            "task_path": str(task_path),
            "command": shlex.join(["slmbench", *sys.argv[1:]]),
            "profile": budget.to_dict(),
            "seed": options.seed,
            "labels": task.label_names,
            "strategies": strategies,
            "splits": splits.summary(),
            "data": splits.provenance,
            "models": {
                "causal_lm": options.model,
                "embedding_model": options.embedding_model,
                "device": device,
                "dtype": base_config.models["dtype"],
            },
            "references": [vars(reference) for reference in task.references],
            "environment": collect_environment(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    write_json_atomic(run_dir / "test_texts.json", list(splits.test.texts))

    for name in strategies:
        config = replace(base_config, strategy=name)
        record = run_trial(config, workspace, run_dir / "artifacts" / name)
        write_json_atomic(run_dir / "trials" / f"{name}.json", record)
        on_trial(record)

    from slmbench.report import render_report

    render_report(run_dir)
    return run_dir
