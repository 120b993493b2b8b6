"""Finding and reading a task's data: its local file (in the data folder or beside the task YAML),
else its hub dataset, every row checked, with where it came from.

Only files inside the data folder or the task file's folder are read, unless the user allows others.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slmbench.common.files import file_problem, file_sha256, is_inside
from slmbench.common.text import first_line
from slmbench.records import DataProvenance, HubSource
from slmbench.tasks.rows import check_label_sizes, check_rows, conflicting_texts
from slmbench.tasks.spec import TaskError, TaskSpec, brief

if TYPE_CHECKING:
    import pandas as pd

DATA_DIR_ENV = "SLMBENCH_DATA_DIR"
FORMATS = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSONL", ".parquet": "Parquet"}
MAX_DATA_BYTES = 1 << 30
"""A data file larger than this (1 GiB) is refused unread: it would not fit in memory as a table."""
OUTSIDE_FLAG = "--allow-outside-data-dir"


@dataclass(frozen=True)
class LoadedData:
    """Every row of a task's data, checked: texts, label indices and where they came from."""

    texts: list[str]
    labels: list[int]
    provenance: DataProvenance
    """Where the rows came from (the file's full path while it is read; a run record keeps its name)."""

    def __len__(self) -> int:
        return len(self.texts)


def resolve_data_dir(option: str | None) -> Path | None:
    """The ``--data-dir`` option, else ``$SLMBENCH_DATA_DIR``, else None."""
    value = option or os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def _roots(task: TaskSpec, data_dir: Path | None) -> list[Path]:
    """The folders a task may read from: the data dir, then the task file's folder."""
    return [data_dir, task.path.parent] if data_dir else [task.path.parent]


def candidate_files(task: TaskSpec, data_dir: Path | None) -> list[Path]:
    """Where the task's file may be: as given if absolute, else in the data dir, then beside the YAML."""
    if task.source.file is None:
        return []
    file = Path(task.source.file).expanduser()
    if file.is_absolute():
        return [file]
    return list(dict.fromkeys(root / file for root in _roots(task, data_dir)))


def _find_file(task: TaskSpec, looked_in: list[Path], data_dir: Path | None, allow_outside: bool) -> Path | None:
    """The first candidate that exists, or None; a TaskError if it lies outside the task's folders
    (unless ``allow_outside``) or is not a readable regular file."""
    roots = _roots(task, data_dir)
    for path in looked_in:
        if not allow_outside and not any(is_inside(path, root) for root in roots):
            folders = " or ".join(str(root) for root in roots)
            raise TaskError(
                f"{task.path}: field 'source.file' {brief(task.source.file)} is outside {folders}; pass {OUTSIDE_FLAG} to read it"
            )
        problem = file_problem(path, MAX_DATA_BYTES)
        if problem != "not found":
            if problem:
                raise TaskError(f"{path}: data file {problem}")
            return path
    return None


def read_table(path: Path) -> pd.DataFrame:
    """A CSV, TSV, JSONL or Parquet file as a DataFrame (CSV cells are kept as text)."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise TaskError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(FORMATS)}")
    try:
        if suffix in (".csv", ".tsv"):
            # Only empty cells are missing: a label such as "NA" or "None" stays a label.
            sep = "," if suffix == ".csv" else "\t"
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8-sig")
        return pd.read_parquet(path)
    except UnicodeDecodeError as error:
        raise TaskError(f"{path}: not UTF-8 text (invalid byte at position {error.start}); save it as UTF-8") from error
    except Exception as error:  # noqa: BLE001 - any reader failure is a problem with the file
        raise TaskError(f"{path}: could not be read as {FORMATS[suffix]}: {first_line(error)}") from error


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _hub_reads_local_files(path: str) -> bool:
    """Whether ``load_dataset(path)`` may read this machine's files: a local folder or script, or a
    name without a namespace such as datasets' packaged builders (csv, json...), which read local
    folders. A hub dataset is ``namespace/name``."""
    return os.path.exists(os.path.expanduser(path)) or not _HUB_ID.fullmatch(path) or ".." in path


def _load_hub(task: TaskSpec, hub: HubSource, looked_in: list[Path], data_dir: Path | None, allow_outside: bool) -> pd.DataFrame:
    """The task's hub dataset (``hub``, its ``source.hub``) as a DataFrame; the error says where local files were looked for."""
    if not allow_outside and _hub_reads_local_files(hub.path):
        raise TaskError(
            f"{task.path}: field 'source.hub.path' {brief(hub.path)} reads local files, not a hub dataset; "
            f"put the file in the data folder as 'source.file', or pass {OUTSIDE_FLAG}"
        )
    try:
        from datasets import load_dataset

        dataset = load_dataset(hub.path, hub.name, split=hub.split, revision=hub.revision, data_dir=hub.data_dir)
        return dataset.to_pandas()
    except Exception as error:  # noqa: BLE001 - offline, unknown dataset, bad split...: all reported
        failure = f"\nthe hub fallback {hub.path!r} failed: {first_line(error)}"
        raise TaskError(_not_found(task, looked_in, data_dir) + failure) from error


def _not_found(task: TaskSpec, looked_in: list[Path], data_dir: Path | None) -> str:
    if not looked_in:
        return f"{task.path}: task {task.name!r} names no local file (source.file)"
    lines = [f"{task.path}: data file {brief(task.source.file)} not found; looked for:"]
    lines += [f"  - {path}" for path in looked_in]
    if data_dir is None:
        lines.append(f"no data directory given: pass --data-dir DIR or set {DATA_DIR_ENV}")
    if task.source.hub is None:
        lines.append("the task has no hub source (source.hub) to fall back on")
    return "\n".join(lines)


def load_rows(task: TaskSpec, data_dir: Path | None, allow_outside: bool = False) -> LoadedData:
    """Read the task's local file (or, when there is none, its hub dataset) and check every row.

    Only files inside ``data_dir`` or the task file's folder are read, unless ``allow_outside``.
    """
    looked_in = candidate_files(task, data_dir)
    found = _find_file(task, looked_in, data_dir, allow_outside)
    if found is not None:
        frame = read_table(found)
        origin = str(found)
        text_column, label_column = task.text_column, task.label_column
        provenance = DataProvenance(source="file", file=str(found.resolve()), sha256=file_sha256(found))
    elif task.source.hub is not None:
        hub = task.source.hub
        frame = _load_hub(task, hub, looked_in, data_dir, allow_outside)
        origin = f"{task.path}: hub dataset {brief(hub.path)}"
        text_column, label_column = hub.text_column or task.text_column, hub.label_column or task.label_column
        provenance = DataProvenance(source="hub", hub=hub)
    else:
        raise TaskError(_not_found(task, looked_in, data_dir))
    texts, labels = check_rows(task, frame, origin, text_column, label_column)
    check_label_sizes(task, texts, labels, origin)
    read = {
        "rows": len(texts),
        "content_sha256": hashlib.sha256(json.dumps([texts, labels]).encode()).hexdigest(),
        "texts_with_conflicting_labels": conflicting_texts(texts, labels),
    }
    return LoadedData(texts, labels, provenance.model_copy(update=read))
