"""Task data: read the rows, check them against the task, split them once for every strategy.

The splits depend only on the task (its data and split protocol), never on a strategy: the
profile's caps are seeded, stratified subsamples taken after splitting, each split capped on its
own, so the test set never depends on the train or validation caps.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.common.files import file_problem, is_inside
from slmbench.common.names import did_you_mean
from slmbench.tasks.examples import Examples
from slmbench.tasks.spec import TaskError, TaskSpec, brief, load_task, value_key

if TYPE_CHECKING:
    import pandas as pd

    from slmbench.tasks.profiles import Budget

DATA_DIR_ENV = "SLMBENCH_DATA_DIR"
FORMATS = {".csv": "CSV", ".tsv": "TSV", ".jsonl": "JSONL", ".parquet": "Parquet"}
SPLIT_NAMES = ("train", "validation", "test")
MAX_DATA_BYTES = 1 << 30
"""A data file larger than this (1 GiB) is refused unread: it would not fit in memory as a table."""
OUTSIDE_FLAG = "--allow-outside-data-dir"
_SHOWN = 5
"""How many offending rows or values an error message lists."""


@dataclass(frozen=True)
class LoadedData:
    """Every row of a task's data, checked: texts, label indices and where they came from."""

    texts: list[str]
    labels: list[int]
    provenance: dict[str, Any]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Splits:
    """Train, validation and test examples shared by every strategy of a run."""

    train: Examples
    validation: Examples
    test: Examples
    label_names: tuple[str, ...]
    provenance: dict[str, Any]
    duplicates_removed: dict[str, int]
    """Exact duplicate texts dropped per split (test wins over validation, validation over train)."""
    full_sizes: dict[str, int]
    """Split sizes before the profile's caps."""

    def summary(self) -> dict[str, Any]:
        """Sizes, per-class counts and duplicates removed, for the run and trial JSON."""
        splits = {name: getattr(self, name) for name in SPLIT_NAMES}
        return {
            "sizes": {name: len(examples) for name, examples in splits.items()},
            "full_sizes": dict(self.full_sizes),
            "per_class": {name: class_counts(examples.labels, self.label_names) for name, examples in splits.items()},
            "duplicates_removed": dict(self.duplicates_removed),
        }


def class_counts(labels: list[int], label_names: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Examples per label name, in the task's label order."""
    counts = Counter(labels)
    return {name: counts[i] for i, name in enumerate(label_names)}


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
                f"{task.path}: field 'source.file' {brief(task.source.file)} is outside {folders}; "
                f"pass {OUTSIDE_FLAG} to read it"
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
        raise TaskError(f"{path}: could not be read as {FORMATS[suffix]}: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _hub_reads_local_files(path: str) -> bool:
    """Whether ``load_dataset(path)`` may read this machine's files: a local folder or script, or a
    name without a namespace such as datasets' packaged builders (csv, json...), which read local
    folders. A hub dataset is ``namespace/name``."""
    return os.path.exists(os.path.expanduser(path)) or not _HUB_ID.fullmatch(path) or ".." in path


def _load_hub(task: TaskSpec, looked_in: list[Path], data_dir: Path | None, allow_outside: bool) -> pd.DataFrame:
    """The task's hub dataset as a DataFrame; the error says where local files were looked for."""
    hub = task.source.hub
    if not allow_outside and _hub_reads_local_files(hub.path):
        raise TaskError(f"{task.path}: field 'source.hub.path' {brief(hub.path)} reads local files, not a hub dataset; "
                        f"put the file in the data folder as 'source.file', or pass {OUTSIDE_FLAG}")
    try:
        from datasets import load_dataset

        dataset = load_dataset(hub.path, hub.name, split=hub.split, revision=hub.revision, data_dir=hub.data_dir)
        return dataset.to_pandas()
    except Exception as error:  # noqa: BLE001 - offline, unknown dataset, bad split...: all reported
        failure = f"\nthe hub fallback {hub.path!r} failed: {_first_line(error)}"
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


def _row_list(mask: pd.Series) -> str:
    rows = [i + 1 for i, bad in enumerate(mask.tolist()) if bad]
    more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    noun = "row" if len(rows) == 1 else "rows"
    return f"{noun} {', '.join(map(str, rows[:_SHOWN]))}{more} (data rows counted from 1)"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _blank(column: pd.Series) -> pd.Series:
    return column.isna() | column.astype(str).str.strip().eq("")


def _check_rows(
    task: TaskSpec, frame: pd.DataFrame, origin: str, text_column: str, label_column: str
) -> tuple[list[str], list[int]]:
    """Texts and label indices of a table, or a TaskError naming the column and rows at fault."""
    import pandas as pd

    columns = [str(column) for column in frame.columns]
    for role, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in columns:
            found = ", ".join(name[:40] for name in columns[:_SHOWN * 2]) or "none"
            more = f" and {len(columns) - _SHOWN * 2} more" if len(columns) > _SHOWN * 2 else ""
            raise TaskError(
                f"{origin}: no column {column!r} (the task's {role}){did_you_mean(column, columns)}; "
                f"columns found: {found}{more}"
            )
    if frame.columns.tolist().count(text_column) > 1 or frame.columns.tolist().count(label_column) > 1:
        raise TaskError(f"{origin}: more than one column named {text_column!r} or {label_column!r}")
    texts, raw_labels = frame[text_column], frame[label_column]
    for what, column, values in (("text", text_column, texts), ("label", label_column, raw_labels)):
        blank = _blank(values)
        if blank.any():
            count = _plural(int(blank.sum()), "row")
            raise TaskError(f"{origin}: {count} with an empty or missing {what} in column {column!r}: {_row_list(blank)}")
    # JSONL and Parquet cells may be numbers, objects or lists: a text must be text, a label a scalar.
    for column, values, fits, expected in (
        (text_column, texts, lambda value: isinstance(value, str), "text"),
        (label_column, raw_labels, pd.api.types.is_scalar, "a string or a number"),
    ):
        wrong = ~values.map(fits).astype(bool)
        if wrong.any():
            raise TaskError(f"{origin}: column {column!r} holds {_plural(int(wrong.sum()), 'value')} that "
                            f"{'is' if int(wrong.sum()) == 1 else 'are'} not {expected} (such as {brief(values[wrong].iloc[0])}): "
                            f"{_row_list(wrong)}")
    keys = raw_labels.map(value_key)
    index = task.label_index()
    labels = keys.map(index)
    unknown = labels.isna()
    if unknown.any():
        counts = Counter(keys[unknown]).most_common()
        shown = ", ".join(f"{brief(value)} ({_plural(count, 'row')})" for value, count in counts[:_SHOWN])
        more = f" and {len(counts) - _SHOWN} more" if len(counts) > _SHOWN else ""
        values_of = {n: ", ".join(key for key, i in index.items() if i == n) for n in range(len(task.labels))}
        declared = "; ".join(f"{name}: {values_of[n]}" for n, name in enumerate(task.label_names))
        raise TaskError(
            f"{origin}: column {label_column!r} holds {len(counts)} values the task does not declare: {shown}{more}; "
            f"declared labels and their values: {declared}. Add them to a label's 'values' in {task.path} or remove those rows"
        )
    return texts.astype(str).tolist(), labels.astype(int).tolist()


def min_examples_per_label(task: TaskSpec) -> int:
    """Distinct texts a label needs so that train, validation and test can each get one."""
    smallest = min(task.split.test_size, task.split.validation_size, 1 - task.split.test_size - task.split.validation_size)
    return max(3, math.ceil(round(1 / smallest, 9)))


def _check_label_sizes(task: TaskSpec, texts: list[str], labels: list[int], origin: str) -> None:
    distinct = Counter(label for _, label in {(text.strip(), label) for text, label in zip(texts, labels)})
    need = min_examples_per_label(task)
    short = [f"{name!r} has {distinct[i]}" for i, name in enumerate(task.label_names) if distinct[i] < need]
    if short:
        raise TaskError(
            f"{origin}: too few examples for the split: label {', label '.join(short)} distinct texts; each label needs at "
            f"least {need} so that train, validation and test (test_size {task.split.test_size:g}, "
            f"validation_size {task.split.validation_size:g}) each get one"
        )


def _conflicting_texts(texts: list[str], labels: list[int]) -> int:
    seen: dict[str, set[int]] = {}
    for text, label in zip(texts, labels):
        seen.setdefault(text.strip(), set()).add(label)
    return sum(len(found) > 1 for found in seen.values())


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
        provenance: dict[str, Any] = {"source": "file", "file": str(found.resolve()), "sha256": _sha256(found)}
    elif task.source.hub is not None:
        hub = task.source.hub
        frame = _load_hub(task, looked_in, data_dir, allow_outside)
        origin = f"{task.path}: hub dataset {brief(hub.path)}"
        text_column, label_column = hub.text_column or task.text_column, hub.label_column or task.label_column
        provenance = {"source": "hub", "hub": {k: v for k, v in vars(hub).items() if v is not None}}
    else:
        raise TaskError(_not_found(task, looked_in, data_dir))
    texts, labels = _check_rows(task, frame, origin, text_column, label_column)
    _check_label_sizes(task, texts, labels, origin)
    provenance.update(
        rows=len(texts),
        content_sha256=hashlib.sha256(json.dumps([texts, labels]).encode()).hexdigest(),
        texts_with_conflicting_labels=_conflicting_texts(texts, labels),
    )
    return LoadedData(texts, labels, provenance)


def _subset(examples: Examples | LoadedData, indices: list[int]) -> Examples:
    return Examples([examples.texts[i] for i in indices], [examples.labels[i] for i in indices])


def make_splits(task: TaskSpec, data: LoadedData) -> Splits:
    """Seeded (stratified) test, then validation split; exact duplicate texts kept in one split only."""
    from sklearn.model_selection import train_test_split

    protocol = task.split
    indices = list(range(len(data)))
    try:
        rest, test = train_test_split(
            indices, test_size=protocol.test_size, random_state=protocol.seed, stratify=data.labels if protocol.stratify else None
        )
        rest_labels = [data.labels[i] for i in rest] if protocol.stratify else None
        train, validation = train_test_split(
            rest, test_size=protocol.validation_size / (1 - protocol.test_size), random_state=protocol.seed, stratify=rest_labels
        )
    except ValueError as error:
        raise TaskError(f"{task.path}: cannot split {len(data)} rows: {error}") from error
    parts = {"train": train, "validation": validation, "test": test}
    seen: set[str] = set()
    kept: dict[str, list[int]] = {}
    for name in ("test", "validation", "train"):  # a text is kept in the first split that holds it
        kept[name] = []
        for i in parts[name]:
            key = data.texts[i].strip()
            if key not in seen:
                seen.add(key)
                kept[name].append(i)
    examples = {name: _subset(data, kept[name]) for name in SPLIT_NAMES}
    _check_deduplicated(task, examples)
    return Splits(
        **examples,
        label_names=tuple(task.label_names),
        provenance=data.provenance,
        duplicates_removed={name: len(parts[name]) - len(kept[name]) for name in SPLIT_NAMES},
        full_sizes={name: len(examples[name]) for name in SPLIT_NAMES},
    )


def _check_deduplicated(task: TaskSpec, examples: dict[str, Examples]) -> None:
    """After duplicates are dropped, every split must still hold examples."""
    empty = [name for name in SPLIT_NAMES if not len(examples[name])]
    if empty:
        raise TaskError(f"{task.path}: the {' and '.join(empty)} split is empty once duplicate texts are removed "
                        "(a text is kept in one split only); add distinct texts or remove duplicates from the data")


def _quotas(counts: list[int], n: int) -> list[int]:
    """Per-class sample sizes summing to n: one per class first (when n allows), the rest proportional."""
    base = [1 if n >= len(counts) else 0 for _ in counts]
    spare = [count - b for count, b in zip(counts, base)]
    remaining = n - sum(base)
    shares = [remaining * s / sum(spare) for s in spare]
    quotas = [b + math.floor(share) for b, share in zip(base, shares)]
    by_remainder = sorted(range(len(counts)), key=lambda i: (math.floor(shares[i]) - shares[i], i))
    for i in by_remainder[: n - sum(quotas)]:
        quotas[i] += 1
    return quotas


def cap_examples(examples: Examples, n: int | None, seed: int) -> Examples:
    """At most n examples: a seeded stratified subsample keeping every class present where possible."""
    if n is None or len(examples) <= n:
        return examples
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.asarray(examples.labels)
    classes, counts = np.unique(labels, return_counts=True)
    chosen: list[int] = []
    for label, quota in zip(classes, _quotas(counts.tolist(), n)):
        chosen += rng.choice(np.flatnonzero(labels == label), size=quota, replace=False).tolist()
    return _subset(examples, sorted(chosen))


def nested_subset(examples: Examples, n: int, seed: int) -> Examples:
    """The first ``n`` of a seeded, stratified order of ``examples`` (for learning curves).

    Every class is shuffled and spread evenly along the order, so each prefix keeps the class
    proportions as closely as whole examples allow, and a smaller subset is part of every larger one.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.asarray(examples.labels)
    position = np.empty(len(labels))
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((rng.random(len(labels)), position))  # ties between classes broken at random
    return _subset(examples, sorted(order[:n].tolist()))


def load_splits(task: TaskSpec, data_dir: Path | None, budget: Budget, allow_outside: bool = False) -> Splits:
    """The task's splits with the profile's caps applied to each split on its own."""
    splits = make_splits(task, load_rows(task, data_dir, allow_outside))
    seed = task.split.seed
    return replace(
        splits,
        train=cap_examples(splits.train, budget.max_train_examples, seed),
        validation=cap_examples(splits.validation, budget.max_validation_examples, seed),
        test=cap_examples(splits.test, budget.max_test_examples, seed),
    )


def validate(task_path: str | Path, data_dir: Path | None, allow_outside: bool = False) -> str:
    """Check a task YAML and its data; a short human summary, or a TaskError."""
    task = load_task(task_path)
    data = load_rows(task, data_dir, allow_outside)
    splits = make_splits(task, data)
    provenance = data.provenance
    where = provenance["file"] if provenance["source"] == "file" else f"hub dataset {provenance['hub']['path']}"
    counts = class_counts(data.labels, task.label_names)
    protocol = task.split
    sizes = splits.summary()["sizes"]
    removed = splits.duplicates_removed
    lines = [
        f"task {task.name} ({task_path}): OK",
        f"data: {where}, {len(data)} rows",
        "labels: " + ", ".join(f"{name} {count}" for name, count in counts.items()),
        f"splits (seed {protocol.seed}, {'stratified' if protocol.stratify else 'not stratified'}): "
        + ", ".join(f"{name} {sizes[name]}" for name in SPLIT_NAMES),
        f"exact duplicate texts removed: {sum(removed.values())} ("
        + ", ".join(f"{name} {removed[name]}" for name in SPLIT_NAMES)
        + ")",
    ]
    if provenance["texts_with_conflicting_labels"]:
        lines.append(f"warning: {provenance['texts_with_conflicting_labels']} texts appear with more than one label")
    return "\n".join(lines)
