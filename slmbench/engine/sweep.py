"""Sweep files: many trials described in one YAML file (``slmbench run --config sweep.yaml``).

Every axis is a list; every combination is one trial with its own config hash, so resuming,
reusing and reporting work as for a plain run. One run folder per task::

    tasks: [financial_sentiment, bbc]          # registered names or task YAML paths
    strategies: [knn-vote, lora]               # or: all
    options:                                   # a list is a grid axis, a single value a fixed setting
      lora: {r: [4, 16], learning_rate: [1.0e-4, 1.0e-3]}
      knn-vote: {k: 3}
    seeds: [0, 1, 2]
    train_sizes: [16, 64]                      # learning curve (the whole split always runs)
    profile: quick
    models: [smollm2-135m-instruct]            # causal LMs: an axis like any other
    embedding_models: [all-minilm-l6-v2]
    data_dir: ../shared/data                   # relative paths: to the sweep file's folder
    output: runs
    trial_timeout: 3600
    executor: {type: ray, workers: 4, address: auto, gpus_per_trial: 0.5, threads_per_trial: 2}

Command-line arguments override the file's values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from slmbench.records import PromptFormatName


class ExecutorSettings(BaseModel):
    """How trials run: ``local`` (one after another, in this process) or ``ray`` (parallel Ray tasks)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["local", "ray"] = "local"
    workers: int | None = Field(None, ge=1, description="parallel trials (ray)")
    address: str | None = Field(None, description="join a Ray cluster: 'auto' or HOST:PORT; none: a local instance")
    gpus_per_trial: float = Field(1.0, gt=0, le=64, description="GPUs each trial asks for on CUDA (fractions pack small models)")
    threads_per_trial: int | None = Field(None, ge=1, le=1024, description="CPU threads (torch) of each trial")


class SweepFile(BaseModel):
    """The schema of a sweep file."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(min_length=1)
    strategies: list[str] | Literal["all"] = "all"
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train_sizes: list[int] = Field(default_factory=list)
    profile: str | None = None
    models: list[str] | None = Field(None, min_length=1)
    embedding_models: list[str] | None = Field(None, min_length=1)
    data_dir: str | None = None
    output: str | None = None
    trial_timeout: float | None = Field(None, gt=0)
    device: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    prompt_format: PromptFormatName | None = None
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    @field_validator("seeds", "train_sizes")
    @classmethod
    def _non_negative(cls, values: list[int]) -> list[int]:
        if any(value < 0 for value in values):
            raise ValueError("must be whole numbers of 0 or more")
        return sorted(set(values))

    def grid(self) -> dict[str, dict[str, list[Any]]]:
        """``options`` with every value as a list of values to try."""
        return {
            strategy: {name: value if isinstance(value, list) else [value] for name, value in values.items()}
            for strategy, values in self.options.items()
        }


def read_sweep(path: Path) -> SweepFile:
    """The sweep file at ``path``, validated; a RunError naming the file and the field otherwise.

    Relative ``data_dir``, ``output`` and task paths are taken relative to the sweep file's folder.
    """
    from slmbench.engine.run_options import RunError
    from slmbench.tasks.spec import TaskError, _read_yaml

    try:
        data = _read_yaml(Path(path))
    except TaskError as error:
        raise RunError(str(error).replace("task file", "sweep file")) from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: a sweep file is a mapping (tasks:, strategies:, options:, seeds: ...)")
    try:
        sweep = SweepFile.model_validate(data)
    except ValidationError as error:
        problems = [f"field {'.'.join(map(str, e['loc'])) or 'top level'!r}: {e['msg']}" for e in error.errors(include_url=False)]
        raise RunError(f"{path}: " + "; ".join(problems[:3])) from None
    folder = Path(path).parent

    def local(value: str | None) -> str | None:
        return value if value is None or Path(value).is_absolute() else str(folder / value)

    tasks = [local(task) if task.endswith((".yaml", ".yml")) else task for task in sweep.tasks]
    return sweep.model_copy(update={"tasks": tasks, "data_dir": local(sweep.data_dir), "output": local(sweep.output)})
