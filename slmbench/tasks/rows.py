"""Checking a table's rows against the task: its columns, its cells, its labels, enough texts per label.

Every check fails with a TaskError that names the column and the rows at fault.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from slmbench.common.text import did_you_mean, plural
from slmbench.tasks.spec import TaskError, TaskSpec, brief, value_key

if TYPE_CHECKING:
    import pandas as pd

_SHOWN = 5
"""How many offending rows or values an error message lists."""


def _row_list(mask: pd.Series) -> str:
    rows = [i + 1 for i, bad in enumerate(mask.tolist()) if bad]
    more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    noun = "row" if len(rows) == 1 else "rows"
    return f"{noun} {', '.join(map(str, rows[:_SHOWN]))}{more} (data rows counted from 1)"


def _blank(column: pd.Series) -> pd.Series:
    return column.isna() | column.astype(str).str.strip().eq("")


def _check_columns(frame: pd.DataFrame, origin: str, text_column: str, label_column: str) -> None:
    """The text and label columns must each be there, once."""
    columns = [str(column) for column in frame.columns]
    for role, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in columns:
            found = ", ".join(name[:40] for name in columns[: _SHOWN * 2]) or "none"
            more = f" and {len(columns) - _SHOWN * 2} more" if len(columns) > _SHOWN * 2 else ""
            raise TaskError(
                f"{origin}: no column {column!r} (the task's {role}){did_you_mean(column, columns)}; columns found: {found}{more}"
            )
    if frame.columns.tolist().count(text_column) > 1 or frame.columns.tolist().count(label_column) > 1:
        raise TaskError(f"{origin}: more than one column named {text_column!r} or {label_column!r}")


def _check_cells(origin: str, text_column: str, texts: pd.Series, label_column: str, raw_labels: pd.Series) -> None:
    """No cell may be empty; a text must be text and a label a scalar."""
    import pandas as pd

    for what, column, values in (("text", text_column, texts), ("label", label_column, raw_labels)):
        blank = _blank(values)
        if blank.any():
            count = plural(int(blank.sum()), "row")
            raise TaskError(f"{origin}: {count} with an empty or missing {what} in column {column!r}: {_row_list(blank)}")
    # JSONL and Parquet cells may be numbers, objects or lists: a text must be text, a label a scalar.
    for column, values, fits, expected in (
        (text_column, texts, lambda value: isinstance(value, str), "text"),
        (label_column, raw_labels, pd.api.types.is_scalar, "a string or a number"),
    ):
        wrong = ~values.map(fits).astype(bool)
        if wrong.any():
            raise TaskError(
                f"{origin}: column {column!r} holds {plural(int(wrong.sum()), 'value')} that "
                f"{'is' if int(wrong.sum()) == 1 else 'are'} not {expected} (such as {brief(values[wrong].iloc[0])}): "
                f"{_row_list(wrong)}"
            )


def _label_indices(task: TaskSpec, origin: str, label_column: str, raw_labels: pd.Series) -> pd.Series:
    """Each row's label index, or a TaskError listing the values the task does not declare."""
    keys = raw_labels.map(value_key)
    index = task.label_index()
    labels = keys.map(index)
    unknown = labels.isna()
    if unknown.any():
        counts = Counter(keys[unknown]).most_common()
        shown = ", ".join(f"{brief(value)} ({plural(count, 'row')})" for value, count in counts[:_SHOWN])
        more = f" and {len(counts) - _SHOWN} more" if len(counts) > _SHOWN else ""
        values_of = {n: ", ".join(key for key, i in index.items() if i == n) for n in range(len(task.labels))}
        declared = "; ".join(f"{name}: {values_of[n]}" for n, name in enumerate(task.label_names))
        raise TaskError(
            f"{origin}: column {label_column!r} holds {len(counts)} values the task does not declare: {shown}{more}; "
            f"declared labels and their values: {declared}. Add them to a label's 'values' in {task.path} or remove those rows"
        )
    return labels


def check_rows(task: TaskSpec, frame: pd.DataFrame, origin: str, text_column: str, label_column: str) -> tuple[list[str], list[int]]:
    """Texts and label indices of a table, or a TaskError naming the column and rows at fault."""
    _check_columns(frame, origin, text_column, label_column)
    texts, raw_labels = frame[text_column], frame[label_column]
    _check_cells(origin, text_column, texts, label_column, raw_labels)
    labels = _label_indices(task, origin, label_column, raw_labels)
    return texts.astype(str).tolist(), labels.astype(int).tolist()


def min_examples_per_label(task: TaskSpec) -> int:
    """Distinct texts a label needs so that train, validation and test can each get one."""
    smallest = min(task.split.test_size, task.split.validation_size, 1 - task.split.test_size - task.split.validation_size)
    return max(3, math.ceil(round(1 / smallest, 9)))


def check_label_sizes(task: TaskSpec, texts: list[str], labels: list[int], origin: str) -> None:
    """Every label must have enough distinct texts for each split to get one."""
    distinct = Counter(label for _, label in {(text.strip(), label) for text, label in zip(texts, labels)})
    need = min_examples_per_label(task)
    short = [f"{name!r} has {distinct[i]}" for i, name in enumerate(task.label_names) if distinct[i] < need]
    if short:
        raise TaskError(
            f"{origin}: too few examples for the split: label {', label '.join(short)} distinct texts; each label needs at "
            f"least {need} so that train, validation and test (test_size {task.split.test_size:g}, "
            f"validation_size {task.split.validation_size:g}) each get one"
        )


def conflicting_texts(texts: list[str], labels: list[int]) -> int:
    """How many distinct texts appear with more than one label."""
    seen: dict[str, set[int]] = {}
    for text, label in zip(texts, labels):
        seen.setdefault(text.strip(), set()).add(label)
    return sum(len(found) > 1 for found in seen.values())
