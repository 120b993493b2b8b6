"""Malformed task YAMLs and data files, generated: each is accepted or rejected with a TaskError that
names the file at fault, never a traceback from inside a library."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmbench.data import validate
from slmbench.tasks import TaskError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID_TASK = {
    "name": "fuzz",
    "description": "generated",
    "source": {"file": "data.csv"},
    "text_column": "text",
    "label_column": "label",
    "labels": ["a", "b", {"name": "c", "verbalizer": "cee", "values": ["c", 3]}],
    "instruction": "Classify.",
    "split": {"test_size": 0.2, "validation_size": 0.2, "stratify": True, "seed": 1},
}
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _accepted_or_explained(task_file: Path, data_dir: Path, culprits: tuple[Path, ...]) -> None:
    try:
        validate(task_file, data_dir)
    except TaskError as error:
        message = str(error)
        assert any(str(path) in message for path in culprits), message
        assert "Traceback" not in message


@st.composite
def broken_tasks(draw) -> dict:
    """The valid task with some fields removed, replaced by values of any type, or unknown keys added."""
    dropped = draw(st.sets(st.sampled_from(sorted(VALID_TASK)), max_size=3))
    task = {key: value for key, value in VALID_TASK.items() if key not in dropped}
    for key in draw(st.lists(st.sampled_from(sorted(VALID_TASK)), max_size=3)):
        task[key] = draw(ANY_VALUE)
    if draw(st.booleans()):
        task[draw(st.sampled_from(["lables", "split_seed", "Text_column"]))] = draw(ANY_VALUE)
    if draw(st.booleans()):
        task["split"] = {**VALID_TASK["split"], draw(st.sampled_from(["test_size", "validation_size", "seed", "stratify"])): draw(ANY_VALUE)}
    return task


GOOD_ROWS = [(f"text number {i} about {label}", label) for i in range(12) for label in ("a", "b", "c")]


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    import pandas as pd

    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)


@FUZZ
@given(task=broken_tasks())
def test_malformed_task_yaml(task):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        _write_csv(folder / "data.csv", GOOD_ROWS)
        task_file = folder / "task.yaml"
        task_file.write_text(yaml.safe_dump(task, allow_unicode=True))
        _accepted_or_explained(task_file, folder, (task_file, folder / "data.csv"))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_task_yaml_of_random_bytes(raw):
    with tempfile.TemporaryDirectory() as folder:
        task_file = Path(folder) / "task.yaml"
        task_file.write_bytes(raw)
        _accepted_or_explained(task_file, Path(folder), (task_file,))


TEXTS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "   ", "\t\n", "x" * 100_000, "a,\"quoted\nline\"", "text number 0 about a"]),
)
LABELS = st.one_of(st.sampled_from(["a", "b", "c", "3", "", "nan", "NaN", "d", " a "]), st.text(max_size=4))


@FUZZ
@given(
    extra=st.lists(st.tuples(TEXTS, LABELS), max_size=8),
    keep=st.sampled_from(["all", "one class", "none"]),
    tail=st.one_of(st.just(b""), st.binary(min_size=1, max_size=8)),
    fmt=st.sampled_from([".csv", ".jsonl", ".parquet"]),
)
def test_malformed_data_files(extra, keep, tail, fmt):
    rows = {"all": GOOD_ROWS, "one class": [r for r in GOOD_ROWS if r[1] == "a"], "none": []}[keep] + extra
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data_file = folder / f"data{fmt}"
        import pandas as pd

        frame = pd.DataFrame(rows, columns=["text", "label"])
        frame.loc[frame["label"] == "nan", "label"] = math.nan
        if fmt == ".csv":
            frame.to_csv(data_file, index=False)
            data_file.write_bytes(data_file.read_bytes() + tail)
        elif fmt == ".jsonl":
            frame.to_json(data_file, orient="records", lines=True, force_ascii=False)
            data_file.write_bytes(data_file.read_bytes() + tail)
        else:
            frame.to_parquet(data_file)
        task_file = folder / "task.yaml"
        task_file.write_text(yaml.safe_dump({**VALID_TASK, "source": {"file": data_file.name}}))
        _accepted_or_explained(task_file, folder, (task_file, data_file))
