"""The one schema of what slmbench writes to disk and reads back: trial and run records.

A run folder holds ``run.json`` (a ``RunRecord``), one JSON file per trial under ``trials/`` (a
``TrialRecord``) and ``test_texts.json``. This module is the only place that writes or reads them:

- **Writing** is atomic: a temporary file in the same folder, flushed and fsynced, then renamed over
  the target; the temporary file is removed if anything fails, so a crash never leaves half a file.
- **Reading** accepts every older schema version (migrated on read by ``slmbench.migrations``) and
  ignores unknown fields, so records of older and newer slmbench versions load. A damaged file (not
  JSON, not an object, a string where a number belongs) raises ``RecordError`` naming the file and
  the field.
- **Paths** in records (task file, data folder) are stored relative to the run folder, so a run
  folder names no machine's absolute paths and can be moved together with its data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, model_validator

from slmbench.files import InputFileError, read_input_text
from slmbench.migrations import migrate_run, migrate_trial

SCHEMA_VERSION = 2
"""Version 1: slmbench 0.1 (untyped dicts). Version 2: typed records, seeds, options, variants."""
Status = Literal["ok", "failed", "timeout", "cancelled"]
MAX_RECORD_BYTES = 512 * 2**20
"""A record larger than this is refused unread (a trial of 100,000 test examples is about 10 MiB)."""
_SAFE_NAME = re.compile(r'[\\/:*?"<>|\s\x00-\x1f]')


class RecordError(ValueError):
    """A record file cannot be read or is damaged; the message names the file and the problem."""


class Record(BaseModel):
    """Base of every record: unknown fields are ignored (newer writers), assignments are validated."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)


# --- trial records --------------------------------------------------------------------------------


class ErrorInfo(Record):
    type: str
    message: str = ""
    traceback: str = ""


class ClassMetrics(Record):
    precision: float
    recall: float
    f1: float
    support: int


class Metrics(Record):
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    """Rows are gold labels, columns predicted labels, both in task order."""


class Latency(Record):
    """Latency of single requests: one text per ``predict`` call, on a sample of test texts."""

    p50_ms: float
    p95_ms: float
    requests: int


class Cost(Record):
    train_seconds: float | None = None
    predict_seconds: float | None = None
    latency_ms_per_example: float | None = None
    """Batched: the test split's prediction time divided by its size."""
    throughput_examples_per_second: float | None = None
    single_request: Latency | None = None
    peak_memory_mb: float | None = None
    """Peak resident memory of the trial, shared models included (CUDA: peak allocation)."""
    trainable_params: int | None = None
    total_params: int | None = None
    artifact_bytes: int | None = None


class PredictionRecord(Record):
    """Per example: gold label index, predicted index and (when the strategy gives them) probabilities."""

    gold: list[NonNegativeInt]
    predicted: list[NonNegativeInt]
    probabilities: list[list[float]] | None = None

    @model_validator(mode="after")
    def _one_per_example(self) -> PredictionRecord:
        if len(self.predicted) != len(self.gold) or (self.probabilities is not None and len(self.probabilities) != len(self.gold)):
            raise ValueError("gold, predicted and probabilities must have one entry per example")
        return self

    def check_labels(self, n_labels: int) -> None:
        """A ValueError unless every index names one of ``n_labels`` labels and every row has a probability per label."""
        if any(index >= n_labels for index in (*self.gold, *self.predicted)):
            raise ValueError(f"a label index is not below the {n_labels} labels")
        if self.probabilities is not None and any(len(row) != n_labels for row in self.probabilities):
            raise ValueError(f"a row of probabilities does not have {n_labels} entries")


class ModelsConfig(Record):
    """The shared models of a trial and where they run."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    causal_lm: str
    embedding_model: str
    device: str = "cpu"
    dtype: str = "float32"
    trust_remote_code: bool = False


class TrialConfig(Record):
    """Everything that determines a trial's result; its hash decides whether a finished trial is reused.

    ``task_path`` and ``data_dir`` say where to find the inputs and are left out of the hash: the
    task and the data enter it by content (``task_sha256``, ``data_sha256``), so moving them reruns
    nothing while editing them reruns everything.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    strategy: str
    task: str = ""
    task_path: str
    task_sha256: str = ""
    data_dir: str | None = None
    allow_outside_data_dir: bool = Field(False, exclude=True)
    """The task may read a data file outside ``data_dir`` and its own folder (``--allow-outside-data-dir``):
    never written, so every command that reads such a file opts in again."""
    data_sha256: str = ""
    profile: dict[str, Any]
    seed: NonNegativeInt = 0
    models: ModelsConfig
    options: dict[str, Any] = Field(default_factory=dict)
    """The options set by the user or the sweep; the strategy's defaults fill in the rest."""
    code_version: str = ""
    """slmbench's version and a hash of the strategy's source files: edited code is a new config."""
    train_size: int | None = None
    """Learn from a nested stratified subset of this many train examples (a learning-curve point)."""
    inputs: dict[str, str] = Field(default_factory=dict)
    """For a strategy that combines others: their trial keys and config hashes (a changed member reruns it)."""

    def config_hash(self) -> str:
        identity = self.model_dump(mode="json", exclude={"task_path", "data_dir"})
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class TuningTrial(Record):
    """One option setting a strategy tried, scored on the validation split."""

    options: dict[str, Any]
    validation_accuracy: float | None
    state: str = "complete"
    """``complete``, ``pruned`` (stopped early by the search) or ``failed``."""
    seconds: float | None = None


class Tuning(Record):
    """The search over option settings, on the validation split only."""

    method: str
    budget: int
    """Settings the profile allows every strategy to try."""
    chosen: dict[str, Any]
    tried: list[TuningTrial]


class DeploymentCheck(Record):
    """The trained model quantized for deployment, scored on the same test split."""

    quantization: str
    accuracy: float | None = None
    macro_f1: float | None = None
    size_bytes: int | None = None
    latency_ms_per_example: float | None = None
    single_request: Latency | None = None
    error: str | None = None


def seconds_between(started_at: str | None, finished_at: str | None) -> float | None:
    """Seconds between two ISO timestamps of records, or None when either is missing or not one."""
    try:
        return (datetime.fromisoformat(finished_at) - datetime.fromisoformat(started_at)).total_seconds()
    except (TypeError, ValueError):
        return None


class TrialRecord(Record):
    """One strategy, fitted and evaluated once: ``trials/<variant>.seed<seed>.json``."""

    schema_version: int = SCHEMA_VERSION
    strategy: str
    variant: str = ""
    """The row this trial belongs to in the report: the strategy, plus the sweep's options that vary."""
    status: Status = "failed"
    error: ErrorInfo | None = None
    task: str | None = None
    labels: list[str] = Field(default_factory=list)
    description: str | None = None
    family: str | None = None
    config: TrialConfig | None = None
    config_hash: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    """Every option value the strategy ran with (its defaults included)."""
    train_examples: int | None = None
    """Size of the train split (or learning-curve subset) the trial was given."""
    validation_examples: int | None = None
    labelled_examples: int | None = None
    """Labelled examples the strategy needs: train + validation unless it uses fewer (few-shot, zero-shot)."""
    train_examples_seen: int | None = None
    """Distinct train examples the strategy actually learnt from (a capped fine-tune sees fewer)."""
    learns_from_train: bool = True
    prompt_tokens_per_example: float | None = None
    metrics: Metrics | None = None
    cost: Cost = Field(default_factory=Cost)
    predictions: PredictionRecord | None = None
    validation_predictions: PredictionRecord | None = None
    """Predictions on the validation split, kept for strategies that combine others (ensemble)."""
    tuning: Tuning | None = None
    deployment: list[DeploymentCheck] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    """Free-form, strategy-specific figures (loss curves, prompt plans...)."""
    models: ModelsConfig | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None

    @model_validator(mode="after")
    def _predictions_name_labels(self) -> TrialRecord:
        for predictions in (self.predictions, self.validation_predictions):
            if predictions is not None and self.labels:
                predictions.check_labels(len(self.labels))
        return self

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.metrics is not None

    @property
    def seed(self) -> int:
        return self.config.seed if self.config else 0

    @property
    def train_size(self) -> int | None:
        return self.config.train_size if self.config else None

    @property
    def name(self) -> str:
        """The variant's name (the strategy's when no option varies)."""
        return self.variant or self.strategy

    @property
    def wall_seconds(self) -> float | None:
        """Seconds from the trial's start to its record (loading, search, training, prediction, checks)."""
        return seconds_between(self.started_at, self.finished_at)


# --- run records ----------------------------------------------------------------------------------


class SplitSummary(Record):
    sizes: dict[str, int] = Field(default_factory=dict)
    full_sizes: dict[str, int] = Field(default_factory=dict)
    """Split sizes before the profile's caps."""
    per_class: dict[str, dict[str, int]] = Field(default_factory=dict)
    duplicates_removed: dict[str, int] = Field(default_factory=dict)


class Floors(Record):
    """What a strategy must beat to be worth anything: always answering the train split's majority label."""

    majority_label: str
    accuracy: float
    macro_f1: float


class Reference(Record):
    system: str
    metric: str
    value: float
    source: str


class RunRecord(Record):
    """A run folder's ``run.json``: the task, protocol, data and environment every trial shares."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    task: str
    task_path: str | None = None
    commands: list[str] = Field(default_factory=list)
    """Every command that added to the run folder, in the order first used."""
    options: dict[str, Any] = Field(default_factory=dict)
    """The run's options as last given (``slmbench run --resume`` starts from them)."""
    profile: dict[str, Any] = Field(default_factory=dict)
    seeds: list[NonNegativeInt] = Field(default_factory=lambda: [0])
    labels: list[str] = Field(default_factory=list)
    strategies: list[str] = Field(default_factory=list)
    splits: SplitSummary = Field(default_factory=SplitSummary)
    data: dict[str, Any] = Field(default_factory=dict)
    floors: Floors | None = None
    models: dict[str, Any] = Field(default_factory=dict)
    references: list[Reference] = Field(default_factory=list)
    environment: dict[str, Any] = Field(default_factory=dict)
    started_at: str | None = None


# --- reading --------------------------------------------------------------------------------------


def _describe_error(error: dict[str, Any]) -> str:
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


RUN_OPTION_PATHS = ("task", "data_dir")
"""Run options that are paths (the task file is stored resolved): written relative to the run folder."""


def read_run(run_dir: Path) -> RunRecord:
    """The run record of ``run_dir``, its paths resolved against the folder, or a RecordError."""
    path = Path(run_dir) / "run.json"
    run = _validate(RunRecord, _migrated(migrate_run, _read_object(path, "run record"), path, "run record"), path, "run record")
    if run.task_path:
        run.task_path = _from_run_dir(run.task_path, Path(run_dir))
    for key in RUN_OPTION_PATHS:
        value = run.options.get(key)
        if value is not None and not isinstance(value, str):
            raise RecordError(f"{path}: damaged run record: field 'options.{key}' is a {type(value).__name__}, not a path")
        if value:
            run.options = {**run.options, key: _from_run_dir(value, Path(run_dir))}
    return run


def read_test_texts(run_dir: Path) -> list[str] | None:
    """The run's test texts (``test_texts.json``), or None when the file is missing or damaged."""
    try:
        texts = json.loads(read_input_text(Path(run_dir) / "test_texts.json", MAX_RECORD_BYTES))
    except (InputFileError, ValueError, RecursionError):
        return None
    return texts if isinstance(texts, list) and all(isinstance(text, str) for text in texts) else None


@dataclass
class TrialFile:
    """A file under ``trials/``: its record, or why it could not be read."""

    file: str
    """Path relative to the run folder."""
    record: TrialRecord | None = None
    problem: str | None = None


@dataclass
class RunFolder:
    """Everything in a run folder, read back; nothing else (no model, no data) is needed for a report."""

    directory: Path
    run: RunRecord | None
    trials: list[TrialFile] = field(default_factory=list)
    test_texts: list[str] | None = None

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
    return RunFolder(run_dir, run, trials, read_test_texts(run_dir))


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
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8")
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
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
    options = {key: _to_run_dir(value, run_dir) if key in RUN_OPTION_PATHS else value for key, value in run.options.items()}
    stored = run.model_copy(update={"task_path": _to_run_dir(run.task_path, run_dir), "options": options})
    write_json(Path(run_dir) / "run.json", stored.model_dump(mode="json"))


def write_test_texts(run_dir: Path, texts: list[str]) -> None:
    write_json(Path(run_dir) / "test_texts.json", list(texts))


def trial_key(variant: str, seed: int, train_size: int | None = None) -> str:
    """A trial's place in the run folder: ``trials/<key>.json`` and ``artifacts/<key>/``.

    ``[train-<n>/]<variant>.seed<seed>``, the variant made safe as a file name.
    """
    name = _SAFE_NAME.sub("_", variant)
    if len(name) > 150:  # keep file names well under the usual 255-byte limit
        name = name[:120] + "-" + hashlib.sha256(variant.encode()).hexdigest()[:12]
    return ("" if train_size is None else f"train-{train_size}/") + f"{name}.seed{seed}"


def trial_file(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / "trials" / f"{key}.json"
