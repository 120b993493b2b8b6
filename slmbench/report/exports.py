"""A run's records in forms scripts keep: JSON (the typed records as written) and CSV (one row per trial)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmbench.records import RunFolder, TrialRecord, load_run_folder

COST_FIELDS = (
    "train_seconds",
    "predict_seconds",
    "latency_ms_per_example",
    "throughput_examples_per_second",
    "peak_memory_mb",
    "trainable_params",
    "total_params",
    "artifact_bytes",
)


def as_json(folders: Sequence[RunFolder]) -> str:
    """Every run's ``run.json`` and trial records, validated and in today's schema, as one JSON list."""
    return (
        json.dumps(
            [
                {
                    "run_dir": str(folder.directory),
                    "run": folder.run.model_dump(mode="json") if folder.run else None,
                    "trials": [trial.record.model_dump(mode="json") for trial in folder.trials if trial.record],
                    "unreadable": {trial.file: trial.problem for trial in folder.trials if trial.record is None},
                }
                for folder in folders
            ],
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )


def trial_row(folder: RunFolder, file: str, trial: TrialRecord) -> dict[str, Any]:
    """One trial as a flat row: identity, every metric (per-class F1 too), every cost, every option."""
    row: dict[str, Any] = {
        "task": trial.task,
        "run_id": folder.run.run_id if folder.run else folder.directory.name,
        "file": file,
        "variant": trial.name,
        "strategy": trial.strategy,
        "family": trial.family,
        "seed": trial.seed,
        "train_size": trial.train_size,
        "status": trial.status,
        "error": f"{trial.error.type}: {trial.error.message.splitlines()[0] if trial.error.message else ''}" if trial.error else "",
        "accuracy": trial.metrics.accuracy if trial.metrics else None,
        "macro_f1": trial.metrics.macro_f1 if trial.metrics else None,
    }
    if trial.metrics:
        row.update({f"f1.{label}": values.f1 for label, values in trial.metrics.per_class.items()})
    row.update({key: getattr(trial.cost, key) for key in COST_FIELDS})
    single = trial.cost.single_request
    row.update(single_request_p50_ms=single.p50_ms if single else None, single_request_p95_ms=single.p95_ms if single else None)
    row.update(
        labelled_examples=trial.labelled_examples,
        train_examples_seen=trial.train_examples_seen,
        prompt_tokens_per_example=trial.prompt_tokens_per_example,
    )
    row.update({f"option.{name}": json.dumps(value) if isinstance(value, (list, dict)) else value for name, value in trial.options.items()})
    return row


def as_csv(folders: Sequence[RunFolder]) -> str:
    """One row per trial of every run, with the union of all columns (blank where a trial has none)."""
    rows = [trial_row(folder, file.file, file.record) for folder in folders for file in folder.trials if file.record]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def export(run_dirs: Sequence[Path], form: str) -> str:
    """The records of ``run_dirs`` as ``json`` or ``csv`` text."""
    folders = [load_run_folder(run_dir) for run_dir in run_dirs]
    return as_json(folders) if form == "json" else as_csv(folders)
