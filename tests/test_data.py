"""Task data: reading files, checking rows, splitting without leakage, capping to a budget."""

from __future__ import annotations

import hashlib
import sys
import types
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from slmbench.tasks.examples import Examples
from slmbench.tasks.profiles import Budget
from slmbench.tasks.sources import DATA_DIR_ENV, LoadedData, load_rows, resolve_data_dir
from slmbench.tasks.spec import (
    DataSource,
    HubSource,
    Label,
    SplitProtocol,
    TaskError,
    TaskSpec,
    load_task,
)
from slmbench.tasks.splits import cap_examples, load_splits, make_splits, nested_subset, validate

REPO = Path(__file__).resolve().parents[1]


def make_task(tmp_path: Path, file: str | None = "data.csv", hub: HubSource | None = None, **changes) -> TaskSpec:
    """A three-label task whose YAML would sit in tmp_path."""
    fields = dict(
        name="t",
        description="",
        path=tmp_path / "task.yaml",
        source=DataSource(file=file, hub=hub),
        text_column="text",
        label_column="label",
        labels=(
            Label("neg", "negative", values=("neg", 0)),
            Label("neu", "neutral", values=("neu", 1)),
            Label("pos", "positive", values=("pos", 2)),
        ),
        instruction="Sentiment?",
    )
    return TaskSpec(**{**fields, **changes})


def table(per_label: dict[str, int] | None = None) -> pd.DataFrame:
    """Distinct texts, n per label."""
    per_label = per_label or {"neg": 30, "neu": 50, "pos": 40}
    rows = [(f"{label} sentence number {i}", label) for label, n in per_label.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["text", "label"])


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="," if path.suffix == ".csv" else "\t")
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    return path


def error_of(task: TaskSpec, data_dir: Path | None) -> str:
    with pytest.raises(TaskError) as caught:
        load_rows(task, data_dir)
    return str(caught.value)


# --- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_reads_every_format_with_provenance(tmp_path: Path, suffix: str) -> None:
    path = write(table(), tmp_path / f"data{suffix}")
    data = load_rows(make_task(tmp_path, file=path.name), tmp_path)
    assert len(data) == 120 and data.texts[0] == "neg sentence number 0"
    assert Counter(data.labels) == {0: 30, 1: 50, 2: 40}
    assert data.provenance.file == str(path.resolve()) and data.provenance.rows == 120
    assert data.provenance.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_label_values_map_raw_data_to_labels(tmp_path: Path) -> None:
    frame = table()
    frame["label"] = frame["label"].map({"neg": 0, "neu": "neu", "pos": 2})
    write(frame, tmp_path / "data.jsonl")
    write(frame, tmp_path / "data.csv")  # the integers come back as text "0", "2"
    for name in ("data.jsonl", "data.csv"):
        assert Counter(load_rows(make_task(tmp_path, file=name), tmp_path).labels) == {0: 30, 1: 50, 2: 40}


def test_csv_labels_like_na_or_none_stay_labels(tmp_path: Path) -> None:
    task = make_task(tmp_path, labels=(Label("NA", "america"), Label("None", "none")))
    write(table({"NA": 12, "None": 12}), tmp_path / "data.csv")
    assert Counter(load_rows(task, tmp_path).labels) == {0: 12, 1: 12}


def test_file_is_found_beside_the_yaml_without_a_data_dir(tmp_path: Path) -> None:
    write(table(), tmp_path / "data.csv")
    assert len(load_rows(make_task(tmp_path), None)) == 120


def test_resolve_data_dir_prefers_option_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir(None) is None
    monkeypatch.setenv(DATA_DIR_ENV, "/from/env")
    assert resolve_data_dir(None) == Path("/from/env")
    assert resolve_data_dir("/from/option") == Path("/from/option")


# --- data errors -------------------------------------------------------------------------------


def test_missing_file_lists_where_it_looked(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    message = error_of(make_task(tmp_path), data_dir)
    assert message.startswith(f"{tmp_path / 'task.yaml'}: data file 'data.csv' not found")
    assert f"- {data_dir / 'data.csv'}" in message and f"- {tmp_path / 'data.csv'}" in message
    assert "no hub source" in message
    assert f"set {DATA_DIR_ENV}" in error_of(make_task(tmp_path), None)


def fake_datasets(monkeypatch: pytest.MonkeyPatch, load_dataset) -> None:
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


def test_hub_fallback_failure_says_where_it_looked_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/data' on the Hub")

    fake_datasets(monkeypatch, offline)
    message = error_of(make_task(tmp_path, hub=HubSource(path="org/data")), tmp_path / "data")
    assert f"- {tmp_path / 'data' / 'data.csv'}" in message
    assert "the hub fallback 'org/data' failed: ConnectionError: Couldn't reach 'org/data' on the Hub" in message


def test_hub_fallback_loads_with_its_own_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    frame = table().rename(columns={"text": "sentence"})
    frame["label"] = frame["label"].map({"neg": 0, "neu": 1, "pos": 2})

    def load_dataset(path, name, **kwargs):
        calls.append((path, name, kwargs))
        return types.SimpleNamespace(to_pandas=lambda: frame)

    fake_datasets(monkeypatch, load_dataset)
    hub = HubSource(path="org/data", split="train", revision="abc", data_dir="cfg", text_column="sentence")
    data = load_rows(make_task(tmp_path, file=None, hub=hub), None)
    assert calls == [("org/data", None, {"split": "train", "revision": "abc", "data_dir": "cfg"})]
    assert Counter(data.labels) == {0: 30, 1: 50, 2: 40}
    assert data.provenance.source == "hub" and data.provenance.hub == hub


def test_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_bytes(b"text,label\ncaf\xe9 au lait,neg\n")
    assert error_of(make_task(tmp_path), tmp_path).startswith(f"{tmp_path / 'data.csv'}: not UTF-8 text")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("data.parquet", b"not parquet at all", "could not be read as Parquet"),
        ("data.jsonl", b'{"text": "a", "label": \n', "could not be read as JSONL"),
        ("data.csv", b"", "could not be read as CSV: EmptyDataError"),
        ("data.xlsx", b"PK", "unsupported file type '.xlsx'; expected one of .csv, .tsv, .jsonl, .parquet"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    (tmp_path / name).write_bytes(content)
    message = error_of(make_task(tmp_path, file=name), tmp_path)
    assert message.startswith(f"{tmp_path / name}: ") and expected in message


def test_missing_column_lists_existing_columns(tmp_path: Path) -> None:
    write(table().rename(columns={"text": "texts"}), tmp_path / "data.csv")
    message = error_of(make_task(tmp_path), tmp_path)
    assert message.startswith(str(tmp_path / "data.csv"))
    assert "no column 'text' (the task's text_column); did you mean 'texts'?; columns found: texts, label" in message


def test_undeclared_labels_listed_with_counts(tmp_path: Path) -> None:
    frame = table()
    frame.loc[:6, "label"] = "mixed"
    frame.loc[7:8, "label"] = "unsure"
    write(frame, tmp_path / "data.csv")
    message = error_of(make_task(tmp_path), tmp_path)
    assert "column 'label' holds 2 values the task does not declare: 'mixed' (7 rows), 'unsure' (2 rows)" in message
    assert "declared labels and their values: neg: neg, 0; neu: neu, 1; pos: pos, 2" in message


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_empty_texts_counted_with_row_numbers(tmp_path: Path, blank: str | None) -> None:
    frame = table()
    frame.loc[[2, 5, 9], "text"] = blank
    write(frame, tmp_path / "data.jsonl")
    message = error_of(make_task(tmp_path, file="data.jsonl"), tmp_path)
    assert "3 rows with an empty or missing text in column 'text': rows 3, 6, 10" in message


def test_missing_labels_counted_with_row_numbers(tmp_path: Path) -> None:
    frame = table()
    frame.loc[range(0, 14, 2), "label"] = None
    write(frame, tmp_path / "data.csv")
    message = error_of(make_task(tmp_path), tmp_path)
    assert "7 rows with an empty or missing label in column 'label': rows 1, 3, 5, 7, 9 and 2 more" in message


def test_too_few_examples_per_label(tmp_path: Path) -> None:
    write(table({"neg": 4, "neu": 50, "pos": 0}), tmp_path / "data.csv")
    message = error_of(make_task(tmp_path), tmp_path)
    assert "too few examples for the split: label 'neg' has 4, label 'pos' has 0 distinct texts" in message
    assert "each label needs at least 10" in message


# --- splits ------------------------------------------------------------------------------------


def loaded(texts: list[str], labels: list[int]) -> LoadedData:
    return LoadedData(texts, labels, {"source": "test"})


def test_duplicates_kept_in_one_split_only_and_counted(tmp_path: Path) -> None:
    frame = table({"neg": 60, "neu": 60, "pos": 60})
    texts, labels = frame["text"].tolist(), [["neg", "neu", "pos"].index(v) for v in frame["label"]]
    for i in range(0, 180, 6):  # 30 repeats, some padded with whitespace, plus one text three times
        texts.append(f"  {texts[i]} " if i % 12 else texts[i])
        labels.append(labels[i])
    texts.append(texts[0])
    labels.append(labels[0])
    splits = make_splits(make_task(tmp_path), loaded(texts, labels))
    keys = {name: [t.strip() for t in getattr(splits, name).texts] for name in ("train", "validation", "test")}
    assert all(len(k) == len(set(k)) for k in keys.values())
    train, validation, test = (set(keys[name]) for name in ("train", "validation", "test"))
    assert not (train & test or validation & test or train & validation)
    assert sum(len(k) for k in keys.values()) == 180
    assert sum(splits.duplicates_removed.values()) == 31
    assert splits.summary()["duplicates_removed"] == splits.duplicates_removed


def test_splits_are_stratified_sized_and_deterministic(tmp_path: Path) -> None:
    data = loaded([f"text {i}" for i in range(400)], [i % 3 if i < 300 else 0 for i in range(400)])
    task = make_task(tmp_path)
    splits = make_splits(task, data)
    assert splits.full_sizes == {"train": 280, "validation": 40, "test": 80}
    whole = Counter(data.labels)
    for name in ("train", "validation", "test"):
        counts = Counter(getattr(splits, name).labels)
        size = len(getattr(splits, name))
        for label, n in whole.items():
            assert abs(counts[label] - n * size / len(data)) <= 1
    assert make_splits(task, data) == splits
    reseeded = make_splits(make_task(tmp_path, split=SplitProtocol(seed=14)), data)
    assert reseeded.test.texts != splits.test.texts


def test_unstratified_split(tmp_path: Path) -> None:
    data = loaded([f"text {i}" for i in range(100)], [i % 2 for i in range(100)])
    splits = make_splits(make_task(tmp_path, split=SplitProtocol(stratify=False)), data)
    assert [len(splits.train), len(splits.validation), len(splits.test)] == [70, 10, 20]


def test_summary_has_sizes_and_per_class_counts(tmp_path: Path) -> None:
    splits = make_splits(make_task(tmp_path), loaded([f"t{i}" for i in range(60)], [i % 3 for i in range(60)]))
    summary = splits.summary()
    assert summary["sizes"] == summary["full_sizes"] == {"train": 42, "validation": 6, "test": 12}
    assert summary["per_class"]["test"] == {"neg": 4, "neu": 4, "pos": 4}


# --- caps --------------------------------------------------------------------------------------


def test_cap_keeps_every_class_is_proportional_and_deterministic() -> None:
    examples = Examples([f"t{i}" for i in range(201)], [0] * 150 + [1] * 50 + [2])
    capped = cap_examples(examples, 20, seed=3)
    assert len(capped) == 20 and Counter(capped.labels) == {0: 14, 1: 5, 2: 1}
    assert set(capped.texts) <= set(examples.texts)
    assert cap_examples(examples, 20, seed=3) == capped
    assert cap_examples(examples, 20, seed=4) != capped
    assert len(cap_examples(examples, 2, seed=3)) == 2


def test_learning_curve_subsets_nest_and_keep_class_proportions() -> None:
    examples = Examples([f"t{i}" for i in range(400)], [0] * 240 + [1] * 120 + [2] * 40)
    subsets = [set(nested_subset(examples, n, seed=5).texts) for n in (10, 40, 160, 400)]
    assert [len(subset) for subset in subsets] == [10, 40, 160, 400]
    assert subsets[0] < subsets[1] < subsets[2] < subsets[3]
    labels = Counter(nested_subset(examples, 40, seed=5).labels)
    assert labels == {0: 24, 1: 12, 2: 4}
    assert set(nested_subset(examples, 40, seed=6).texts) != subsets[1]


def test_cap_is_a_no_op_when_not_needed() -> None:
    examples = Examples(["a", "b"], [0, 1])
    assert cap_examples(examples, None, 0) is examples and cap_examples(examples, 5, 0) is examples


def test_load_splits_caps_each_split_and_test_ignores_other_caps(tmp_path: Path) -> None:
    write(table({"neg": 100, "neu": 100, "pos": 100}), tmp_path / "data.csv")
    task = make_task(tmp_path)

    def caps(train: int | None, validation: int | None, test: int | None) -> Budget:
        return Budget(
            name="caps",
            max_train_examples=train,
            max_validation_examples=validation,
            max_test_examples=test,
            max_input_tokens=64,
            max_train_steps=1,
            batch_size=1,
        )

    small = load_splits(task, tmp_path, caps(30, 10, 25))
    large = load_splits(task, tmp_path, caps(200, 20, 25))
    uncapped = load_splits(task, tmp_path, caps(None, None, None))
    assert small.summary()["sizes"] == {"train": 30, "validation": 10, "test": 25}
    assert small.full_sizes == uncapped.summary()["sizes"] == {"train": 210, "validation": 30, "test": 60}
    assert small.test == large.test and set(small.test.texts) <= set(uncapped.test.texts)


def test_validate_summarises_task_and_data(tmp_path: Path) -> None:
    frame = pd.concat([table(), table().head(3)])
    write(frame, tmp_path / "data.csv")
    path = tmp_path / "task.yaml"
    path.write_text("name: t\nsource: {file: data.csv}\nlabels: [neg, neu, pos]\ninstruction: Sentiment?\n", encoding="utf-8")
    summary = validate(path, None)
    assert "123 rows" in summary and "labels: neg 33, neu 50, pos 40" in summary
    assert "exact duplicate texts removed: 3" in summary


# --- the real data sets ------------------------------------------------------------------------


@pytest.mark.real_data
def test_bbc_duplicates_all_removed_and_counted(shared_data_dir: Path) -> None:
    task = load_task(REPO / "tasks" / "bbc.yaml")
    data = load_rows(task, shared_data_dir)
    assert len(data) == 1490
    assert Counter(data.labels) == {
        task.label_names.index(k): v for k, v in {"business": 336, "sport": 346, "politics": 274, "entertainment": 273, "tech": 261}.items()
    }
    splits = make_splits(task, data)
    texts = [t.strip() for name in ("train", "validation", "test") for t in getattr(splits, name).texts]
    assert len(texts) == len(set(texts)) == 1440
    assert sum(splits.duplicates_removed.values()) == 50


@pytest.mark.real_data
def test_financial_phrasebank_loads_and_splits(shared_data_dir: Path) -> None:
    task = load_task(REPO / "tasks" / "financial_sentiment.yaml")
    data = load_rows(task, shared_data_dir)
    assert Counter(task.label_names[i] for i in data.labels) == {"neutral": 2879, "positive": 1363, "negative": 604}
    splits = make_splits(task, data)
    texts = [t.strip() for name in ("train", "validation", "test") for t in getattr(splits, name).texts]
    assert len(texts) == len(set(texts)) == 4846 - sum(splits.duplicates_removed.values())
    assert abs(len(splits.test) - 0.2 * 4846) <= 5
