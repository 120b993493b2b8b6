"""Reading and writing a run folder's records (the schema is ``slmbench.records.schema``).

Writes are atomic (a temporary file, fsynced, renamed over the target); reads migrate older schema
versions and raise ``RecordError`` naming the file and the field; paths are kept relative to the
run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from slmbench.common.files import NEW_FILE_MODE, InputFileError, read_input_text
from slmbench.records.migrations import migrate_run, migrate_trial
from slmbench.records.schema import (
    MAX_RECORD_BYTES,
    SAFE_NAME,
    ExportChecks,
    ExportManifest,
    Record,
    RecordError,
    RunOptionsRecord,
    RunRecord,
    TrialRecord,
)

# --- reading --------------------------------------------------------------------------------------


def _describe_error(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "the record"
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"field {where!r}: {error['msg']} (found {shown})"


def _read_object(path: Path, what: str) -> dict[str, Any]:
    try:
        text = read_input_text(path, MAX_RECORD_BYTES)
    except InputFileError as error:
        raise RecordError(f"{path}: {what} {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    except RecursionError:
        raise RecordError(f"{path}: JSON nested too deeply to be a {what}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: holds a JSON {type(data).__name__}, not a {what} (a JSON object)")
    return data


def _validate(model: type[Record], data: dict[str, Any], path: Path, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        more = f" (and {len(problems) - 3} more problems)" if len(problems) > 3 else ""
        raise RecordError(f"{path}: damaged {what}: " + "; ".join(map(_describe_error, problems[:3])) + more) from None


def _migrated(migrate: Any, data: dict[str, Any], path: Path, what: str) -> dict[str, Any]:
    """``migrate(data)``; an old record whose fields have the wrong shapes to migrate is damaged."""
    try:
        return migrate(data)
    except (AttributeError, TypeError, ValueError) as error:
        raise RecordError(f"{path}: damaged {what} (schema version 1): {error}") from None


def read_trial(path: Path) -> TrialRecord:
    """The trial record at ``path`` (any schema version), or a RecordError."""
    data = _migrated(migrate_trial, _read_object(path, "trial record"), path, "trial record")
    return _validate(TrialRecord, data, path, "trial record")


def read_run(run_dir: Path) -> RunRecord:
    """The run record of ``run_dir``, its paths resolved against the folder, or a RecordError."""
    path = Path(run_dir) / "run.json"
    run = _validate(RunRecord, _migrated(migrate_run, _read_object(path, "run record"), path, "run record"), path, "run record")
    if run.task_path:
        run.task_path = _from_run_dir(run.task_path, Path(run_dir))
    if run.options is not None:
        run.options = _option_paths(run.options, lambda value: _from_run_dir(value, Path(run_dir)))
    return run


def _option_paths(options: RunOptionsRecord, convert: Callable[[str], str | None]) -> RunOptionsRecord:
    """``options`` with its paths (the task file, stored resolved, and the data folder) converted where set."""
    paths = {key: convert(value) for key, value in (("task", options.task), ("data_dir", options.data_dir)) if value}
    return options.model_copy(update=paths)


def read_test_texts(run_dir: Path) -> list[str] | None:
    """The run's test texts (``test_texts.json``), or None when the file is missing or damaged."""
    try:
        texts = json.loads(read_input_text(Path(run_dir) / "test_texts.json", MAX_RECORD_BYTES))
    except (InputFileError, ValueError, RecursionError):
        return None
    return texts if isinstance(texts, list) and all(isinstance(text, str) for text in texts) else None


EXPORT_MANIFEST = "slmbench-export.json"
"""The manifest of an export folder (``slmbench export``): an ``ExportManifest``."""
EXPORT_CHECKS = "export_check.json"
"""A run folder's export check (``ExportChecks``)."""


def read_export_manifest(directory: Path) -> ExportManifest:
    """The manifest of the export folder ``directory``, or a RecordError."""
    path = Path(directory) / EXPORT_MANIFEST
    return _validate(ExportManifest, _read_object(path, "export manifest"), path, "export manifest")


def read_export_checks(run_dir: Path) -> ExportChecks | None:
    """The run folder's export check, or None when it has none; a damaged file is a RecordError."""
    path = Path(run_dir) / EXPORT_CHECKS
    if not os.path.lexists(path):
        return None
    return _validate(ExportChecks, _read_object(path, "export check"), path, "export check")


@dataclass
class TrialFile:
    """A file under ``trials/``: its record, or why it could not be read."""

    file: str
    """Path relative to the run folder."""
    record: TrialRecord | None = None
    problem: str | None = None

    @property
    def key(self) -> str:
        """The trial's key (``trials/<key>.json``), which also names its artifact folder."""
        return self.file.removeprefix("trials/").removesuffix(".json")


@dataclass
class RunFolder:
    """Everything in a run folder, read back; nothing else (no model, no data) is needed for a report."""

    directory: Path
    run: RunRecord | None
    trials: list[TrialFile] = field(default_factory=list)
    test_texts: list[str] | None = None
    export_checks: ExportChecks | None = None
    export_problem: str | None = None
    """Why ``export_check.json`` could not be read (the report says so instead of failing)."""

    @property
    def records(self) -> list[TrialRecord]:
        return [trial.record for trial in self.trials if trial.record is not None]


def load_run_folder(run_dir: Path) -> RunFolder:
    """Read ``run.json`` (optional), every trial file and the test texts of ``run_dir``.

    A damaged ``run.json`` raises RecordError; a damaged trial file is kept as a ``TrialFile`` with
    its ``problem``. A folder with neither is not a run folder (RecordError).
    """
    run_dir = Path(run_dir)
    if not os.path.isdir(run_dir):
        raise RecordError(f"{run_dir}: not a folder" if os.path.lexists(run_dir) else f"{run_dir}: no such folder")
    run = read_run(run_dir) if os.path.lexists(run_dir / "run.json") else None
    trials = []
    for path in sorted((run_dir / "trials").rglob("*.json")):
        file = path.relative_to(run_dir).as_posix()
        try:
            trials.append(TrialFile(file, read_trial(path)))
        except RecordError as error:
            trials.append(TrialFile(file, problem=str(error).removeprefix(f"{path}: ")))
    if run is None and not trials:
        raise RecordError(f"{run_dir}: not a slmbench run folder (no run.json and no trials/*.json)")
    try:
        checks, problem = read_export_checks(run_dir), None
    except RecordError as error:
        checks, problem = None, str(error)
    return RunFolder(run_dir, run, trials, read_test_texts(run_dir), checks, problem)


# --- writing --------------------------------------------------------------------------------------


def _to_run_dir(path: str | None, run_dir: Path) -> str | None:
    """``path`` relative to the run folder (absolute only when no relative path exists, e.g. another drive).

    A relative ``path`` is already relative to the run folder (a record read back) and stays as it is.
    """
    if not path or not Path(path).is_absolute():
        return path
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())).as_posix()
    except ValueError:
        return str(path)


def _from_run_dir(path: str, run_dir: Path) -> str:
    return str(path) if Path(path).is_absolute() else os.path.normpath(run_dir / path)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (see ``write_text``)."""
    write_text(path, json.dumps(data, indent=1, ensure_ascii=False))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically: a temporary file, fsync, rename; the temporary file never stays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept (delete=False) to be renamed over the target
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8"
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, NEW_FILE_MODE)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); folders cannot be opened for this on Windows."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_trial(path: Path, record: TrialRecord, run_dir: Path) -> None:
    """Write a trial record, its config's paths made relative to ``run_dir``."""
    if record.config is not None:
        config = record.config.model_copy(
            update={"task_path": _to_run_dir(record.config.task_path, run_dir), "data_dir": _to_run_dir(record.config.data_dir, run_dir)}
        )
        record = record.model_copy(update={"config": config})
    write_json(path, record.model_dump(mode="json"))


def write_run(run_dir: Path, run: RunRecord) -> None:
    """Write ``run.json``, its paths made relative to the run folder."""
    options = None if run.options is None else _option_paths(run.options, lambda value: _to_run_dir(value, run_dir))
    stored = run.model_copy(update={"task_path": _to_run_dir(run.task_path, run_dir), "options": options})
    write_json(Path(run_dir) / "run.json", stored.model_dump(mode="json"))


def write_test_texts(run_dir: Path, texts: list[str]) -> None:
    write_json(Path(run_dir) / "test_texts.json", list(texts))


def trial_key(variant: str, seed: int, train_size: int | None = None) -> str:
    """A trial's place in the run folder: ``trials/<key>.json`` and ``artifacts/<key>/``.

    ``[train-<n>/]<variant>.seed<seed>``, the variant made safe as a file name.
    """
    name = SAFE_NAME.sub("_", variant)
    if len(name) > 150:  # keep file names well under the usual 255-byte limit
        name = name[:120] + "-" + hashlib.sha256(variant.encode()).hexdigest()[:12]
    return ("" if train_size is None else f"train-{train_size}/") + f"{name}.seed{seed}"


TASK_COPY = "slmbench-task.yaml"
"""The task file as a trial ran it, copied into the artifact folder of every trial that can be reused."""


def trial_file(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / "trials" / f"{key}.json"
