"""Task YAML loading: the schema, its defaults, and an error naming file and field for bad input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from slmbench.tasks.spec import Label, TaskError, load_task, value_key

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"

VALID: dict[str, Any] = {
    "name": "tickets",
    "description": "Route tickets.",
    "source": {"file": "tickets.csv"},
    "text_column": "body",
    "label_column": "team",
    "labels": [
        "billing",
        {"name": "technical", "verbalizer": "tech", "description": "bugs", "values": ["technical", 1]},
    ],
    "instruction": "Which team should handle this ticket?",
    "split": {"test_size": 0.25, "validation_size": 0.15, "stratify": False, "seed": 7},
    "references": [{"system": "SVM", "metric": "accuracy", "value": 0.9, "source": "a paper"}],
}


def write_yaml(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return path


def with_change(path: tuple, value: Any) -> dict:
    """VALID with one nested key set (or deleted when value is ...)."""
    data = copy.deepcopy(VALID)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def test_full_task_loads_with_every_field(tmp_path: Path) -> None:
    task = load_task(write_yaml(tmp_path, VALID))
    assert task.name == "tickets" and task.text_column == "body" and task.label_column == "team"
    assert task.labels == (
        Label("billing", "billing", None, ("billing",)),
        Label("technical", "tech", "bugs", ("technical", 1)),
    )
    assert (task.split.test_size, task.split.validation_size, task.split.stratify, task.split.seed) == (0.25, 0.15, False, 7)
    assert task.references[0].value == 0.9 and task.source.file == "tickets.csv" and task.source.hub is None
    assert task.label_index() == {"billing": 0, "technical": 1, "1": 1}


def test_minimal_task_gets_defaults(tmp_path: Path) -> None:
    task = load_task(write_yaml(tmp_path, {"name": "t", "source": {"file": "d.csv"}, "labels": ["a", "b"], "instruction": "Which?"}))
    assert (task.text_column, task.label_column, task.description, task.references) == ("text", "label", "", ())
    assert (task.split.test_size, task.split.validation_size, task.split.stratify, task.split.seed) == (0.2, 0.1, True, 13)


def test_readme_style_inline_yaml_loads(tmp_path: Path) -> None:
    text = """
name: support_tickets
source:
  file: tickets.csv
labels:
  - name: billing
    description: invoices, refunds
  - name: technical
instruction: Which team should handle this customer ticket?
split: {test_size: 0.2, validation_size: 0.1, stratify: true, seed: 13}
"""
    assert load_task(write_yaml(tmp_path, text)).label_names == ["billing", "technical"]


def test_hub_source_with_its_own_columns(tmp_path: Path) -> None:
    hub = {"path": "org/data", "name": "cfg", "split": "train", "revision": "abc", "data_dir": "d", "text_column": "sentence"}
    task = load_task(write_yaml(tmp_path, with_change(("source",), {"hub": hub})))
    assert task.source.file is None
    assert task.source.hub.path == "org/data" and task.source.hub.text_column == "sentence"
    assert task.source.hub.label_column is None


@pytest.mark.parametrize(
    ("change", "value", "expected"),
    [
        (("name",), ..., ["field 'name' is missing", "expected a non-empty string"]),
        (("name",), 5, ["field 'name' is 5 (int)", "quote it"]),
        (("name",), "a/b", ["field 'name'", "names the run folder"]),
        (("instruction",), ..., ["field 'instruction' is missing"]),
        (("lables",), ["a", "b"], ["field 'lables'", "is not a known key; did you mean 'labels'?"]),
        (("split", "test_sise"), 0.2, ["field 'split.test_sise'", "did you mean 'test_size'?"]),
        (("source", "hub"), {"path": "x", "revison": "y"}, ["field 'source.hub.revison'", "did you mean 'revision'?"]),
        (("source",), ..., ["field 'source' is missing", "expected a mapping"]),
        (("source",), {}, ["field 'source' names no data", "'file'", "'hub'"]),
        (("source",), {"hub": {"split": "train"}}, ["field 'source.hub.path' is missing"]),
        (("source",), "data.csv", ["field 'source' is 'data.csv' (str)", "expected a mapping with keys file, hub"]),
        (("labels",), ..., ["field 'labels' is missing", "at least two labels"]),
        (("labels",), ["only"], ["field 'labels'", "at least two labels"]),
        (("labels",), "a, b", ["field 'labels' is 'a, b' (str)"]),
        (("labels",), [0, 1], ["field 'labels[0]' is 0 (int)", "quote numbers"]),
        (("labels",), ["a", "a"], ["field 'labels' has label name 'a' more than once (labels [0, 1])"]),
        (("labels",), ["a", {"name": "b", "verbalizer": "a"}], ["has label verbalizer 'a' more than once"]),
        (
            ("labels",),
            [{"name": "a", "values": [0]}, {"name": "b", "values": ["0"]}],
            ["has data value '0' listed for both 'a' and 'b'"],
        ),
        (("labels",), [{"name": "a", "values": []}, "b"], ["field 'labels[0].values' is empty"]),
        (("labels",), [{"name": "a", "values": [[1]]}, "b"], ["field 'labels[0].values[0]' is [1] (list)"]),
        (("labels",), [{"name": "a", "colour": "red"}, "b"], ["field 'labels[0].colour' is not a known key"]),
        (("split", "test_size"), 1.5, ["field 'split.test_size' is 1.5", "strictly between 0 and 1"]),
        (("split", "validation_size"), 0, ["field 'split.validation_size' is 0.0"]),
        (("split", "test_size"), "big", ["field 'split.test_size' is 'big' (str)", "expected a number"]),
        (("split", "validation_size"), 0.8, ["field 'split' has test_size + validation_size = 1.05", "a sum below 1"]),
        (("split", "seed"), -1, ["field 'split.seed' is -1"]),
        (("split", "seed"), 1.5, ["field 'split.seed' is 1.5 (float)", "expected an integer"]),
        (("split", "stratify"), "yes", ["field 'split.stratify' is 'yes' (str)", "expected true or false"]),
        (("references",), {"system": "x"}, ["field 'references' is", "expected a list"]),
        (("references", 0, "value"), "high", ["field 'references[0].value' is 'high' (str)", "expected a number"]),
        (("references", 0, "source"), ..., ["field 'references[0].source' is missing"]),
    ],
)
def test_schema_errors_name_file_field_and_expectation(tmp_path: Path, change: tuple, value: Any, expected: list[str]) -> None:
    path = write_yaml(tmp_path, with_change(change, value))
    with pytest.raises(TaskError) as caught:
        load_task(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the task file is empty; expected a mapping"),
        ("- a\n- b\n", "the task file holds a list, not a mapping"),
        ("name: [unclosed\n", "not valid YAML at line 2"),
        (b"name: caf\xe9\n", "not UTF-8 text"),
    ],
)
def test_unreadable_task_files(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "task.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TaskError, match=f"^{path}: ") as caught:
        load_task(path)
    assert expected in str(caught.value)


def test_missing_task_file(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="nope.yaml: task file not found"):
        load_task(tmp_path / "nope.yaml")


def test_value_key_matches_csv_text_and_numbers() -> None:
    assert value_key(0) == value_key(0.0) == value_key("0") == value_key(" 0 ") == "0"
    assert value_key(True) == "True" and value_key(1.5) == "1.5" and value_key("neutral ") == "neutral"


def test_builtin_tasks_load_and_register() -> None:
    from slmbench_tasks import register_tasks

    registered: list[str] = []
    register_tasks(registered.append)
    assert sorted(Path(path).name for path in registered) == ["bbc.yaml", "financial_sentiment.yaml"]
    for path in registered:
        task = load_task(path)
        assert task.instruction and task.references and task.source.file and task.source.hub
        assert all(label.description for label in task.labels)
        assert (task.split.test_size, task.split.validation_size, task.split.stratify, task.split.seed) == (0.2, 0.1, True, 13)


def test_financial_hub_labels_map_from_integers() -> None:
    task = load_task(TASKS_DIR / "financial_sentiment.yaml")
    index = task.label_index()
    assert [index[value_key(v)] for v in (0, 1, 2)] == [task.label_names.index(n) for n in ("negative", "neutral", "positive")]
