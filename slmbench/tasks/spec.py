"""Task definitions: what a task YAML holds, loaded and validated before any model is touched.

Every schema error is a ``TaskError`` whose message starts with the YAML path, names the field
(``labels[2].values``, ``split.test_size``) and says what was found and what was expected.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import reprlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from slmbench.common.text import did_you_mean
from slmbench.records import HubSource, Reference


class TaskError(ValueError):
    """A task YAML or its data is wrong; the message names the file and the problem."""


MAX_TASK_BYTES = 1 << 20
"""A task YAML is a page of text; anything larger is refused unread."""
MAX_YAML_DEPTH = 16
"""Nesting a task YAML may use (a label's values are 4 levels deep)."""
MAX_YAML_ALIASES = 64
"""Aliases (``*name``) a task YAML may use: enough to share values, too few for an alias bomb."""


@dataclass(frozen=True)
class Label:
    name: str
    verbalizer: str
    """The words the language model should answer with for this label (scored by log-likelihood)."""
    description: str | None = None
    values: tuple[Any, ...] = ()
    """Raw values in the data that mean this label (default: the name itself)."""


@dataclass(frozen=True)
class DataSource:
    file: str | None = None
    """A CSV, JSONL or Parquet file, relative to the data directory."""
    hub: HubSource | None = None
    """The public Hugging Face dataset, for users who are online."""


@dataclass(frozen=True)
class SplitProtocol:
    test_size: float = 0.2
    validation_size: float = 0.1
    stratify: bool = True
    seed: int = 13


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    path: Path
    source: DataSource
    text_column: str
    label_column: str
    labels: tuple[Label, ...]
    instruction: str
    split: SplitProtocol = SplitProtocol()
    references: tuple[Reference, ...] = field(default_factory=tuple)
    license: str | None = None
    """The data's licence, as the task file states it (copied into the model card of an export)."""

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    def label_index(self) -> dict[str, int]:
        """``value_key`` of every raw data value the task declares -> index of its label."""
        return {value_key(value): i for i, label in enumerate(self.labels) for value in label.values or (label.name,)}


def value_key(value: Any) -> str:
    """A raw label value as compared with the task's ``values``: 0, 0.0 and "0" (from a CSV) match."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real) and float(value).is_integer():  # 2.0 (a float, numpy's float32...) -> "2"
        return str(int(float(value)))
    return str(value).strip()


_MISSING = object()
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TOP_KEYS = ("name", "description", "source", "text_column", "label_column", "labels", "instruction", "split", "references", "license")
_SOURCE_KEYS = ("file", "hub")
_HUB_KEYS = ("path", "name", "split", "revision", "data_dir", "text_column", "label_column")
_LABEL_KEYS = ("name", "verbalizer", "description", "values")
_SPLIT_KEYS = ("test_size", "validation_size", "stratify", "seed")
_REFERENCE_KEYS = ("system", "metric", "value", "source")

# kind -> (type check, what the message says was expected)
_KINDS: dict[str, tuple[Any, str]] = {
    "text": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v), "a number"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "list": (lambda v: isinstance(v, list), "a list"),
}


_BRIEF = reprlib.Repr()  # keyword arguments only from Python 3.12
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 2, 36, 36, 36
_BRIEF.maxdict = _BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxset = 3
"""Bounded repr: a value from a file is shown in a message, never expanded in full (an alias bomb)."""


def brief(value: Any) -> str:
    """``repr(value)`` cut to a few dozen characters, however large or deep ``value`` is."""
    return _BRIEF.repr(value)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _describe(value: Any) -> str:
    return f"{brief(value)} ({type(value).__name__})"


@dataclass(frozen=True)
class _Section:
    """One mapping of the YAML; its errors name the file and the dotted path of the field."""

    file: Path
    where: str
    data: dict[str, Any]

    @classmethod
    def read(cls, file: Path, where: str, value: Any, keys: tuple[str, ...]) -> _Section:
        if not isinstance(value, dict):
            found = "is missing" if value is None else f"is {_describe(value)}"
            if not where:  # the whole file: say what it holds, never echo it (it may be any file)
                found = "is empty" if value is None else f"holds a {type(value).__name__}, not a mapping"
            _fail(file, where, found, f"a mapping with keys {', '.join(keys)}")
        for key in value:
            if key not in keys:
                hint = did_you_mean(str(key), list(keys))
                _fail(file, _join(where, str(key)[:40]), f"is not a known key{hint}", f"one of {', '.join(keys)}")
        return cls(file, where, value)

    def path_of(self, key: str) -> str:
        return _join(self.where, key)

    def get(self, key: str, kind: str, default: Any = _MISSING) -> Any:
        value = self.data.get(key)
        check, expected = _KINDS[kind]
        if value is None:
            if default is _MISSING:
                _fail(self.file, self.path_of(key), "is missing", expected)
            return default
        if not check(value):
            hint = " (quote it)" if kind == "text" and isinstance(value, (int, float, bool)) else ""
            _fail(self.file, self.path_of(key), f"is {_describe(value)}", expected + hint)
        return value

    def fraction(self, key: str, default: float) -> float:
        value = float(self.get(key, "number", default))
        if not 0 < value < 1:
            _fail(self.file, self.path_of(key), f"is {value}", "a fraction strictly between 0 and 1")
        return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _fail(file: Path, where: str, problem: str, expected: str | None = None) -> NoReturn:
    subject = f"field {where!r} " if where else "the task file "
    raise TaskError(f"{file}: {subject}{problem}" + (f"; expected {expected}" if expected else ""))


@functools.cache
def _loader() -> type:
    """PyYAML's safe loader with limits on nesting and aliases, and duplicate keys refused.

    A subclass, because PyYAML has no option for either: its composer recurses once per level (a
    deep file ends in RecursionError), and an alias bomb is cheap to load but explodes wherever the
    value is walked.
    """
    import yaml
    from yaml.composer import ComposerError
    from yaml.constructor import ConstructorError

    class TaskLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.depth, self.aliases = 0, 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise ComposerError(None, None, f"more than {MAX_YAML_ALIASES} aliases", self.peek_event().start_mark)
            self.depth += 1
            try:
                if self.depth > MAX_YAML_DEPTH:
                    raise ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                except TypeError:  # unhashable: the base class says so
                    continue
                if repeated:
                    raise ConstructorError(None, None, f"duplicate key {brief(key)}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return TaskLoader


def _read_yaml(path: Path) -> Any:
    import yaml

    from slmbench.common.files import InputFileError, read_input_text

    try:
        text = read_input_text(path, MAX_TASK_BYTES)
    except InputFileError as error:
        raise TaskError(f"{path}: task file {error}") from None
    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise TaskError(f"{path}: not valid YAML{where}: {problem}") from None
    except ValueError as error:  # an integer of more digits than Python converts
        raise TaskError(f"{path}: not a valid task file: {error}") from None


def _hub(file: Path, value: Any) -> HubSource:
    hub = _Section.read(file, "source.hub", value, _HUB_KEYS)
    optional = {key: hub.get(key, "text", None) for key in _HUB_KEYS if key not in ("path", "split")}
    return HubSource(path=hub.get("path", "text"), split=hub.get("split", "text", "train"), **optional)


def _source(file: Path, value: Any) -> DataSource:
    source = _Section.read(file, "source", value, _SOURCE_KEYS)
    data_file = source.get("file", "text", None)
    if data_file is not None and "\x00" in data_file:
        _fail(file, source.path_of("file"), "contains a NUL character", "a file name")
    hub = _hub(file, source.data["hub"]) if source.data.get("hub") is not None else None
    if data_file is None and hub is None:
        _fail(file, "source", "names no data", "'file' (a CSV, JSONL or Parquet file), 'hub' (a Hugging Face dataset) or both")
    return DataSource(file=data_file, hub=hub)


def _label(file: Path, index: int, value: Any) -> Label:
    where = f"labels[{index}]"
    if isinstance(value, str) and value.strip():
        return Label(name=value, verbalizer=value, values=(value,))
    if not isinstance(value, dict):
        expected = "a label name (quote numbers) or a mapping with keys " + ", ".join(_LABEL_KEYS)
        _fail(file, where, f"is {_describe(value)}", expected)
    label = _Section.read(file, where, value, _LABEL_KEYS)
    name = label.get("name", "text")
    values = label.get("values", "list", [name])
    for position, raw in enumerate(values):
        if not isinstance(raw, (str, int, float, bool)):
            _fail(file, f"{where}.values[{position}]", f"is {_describe(raw)}", "a string or a number as it appears in the data")
    if not values:
        _fail(file, label.path_of("values"), "is empty", "at least one value (or leave 'values' out to use the name)")
    return Label(
        name=name,
        verbalizer=label.get("verbalizer", "text", name),
        description=label.get("description", "text", None),
        values=tuple(values),
    )


def _labels(file: Path, value: Any) -> tuple[Label, ...]:
    if not isinstance(value, list) or len(value) < 2:
        found = "is missing" if value is None else f"is {_describe(value)}"
        _fail(file, "labels", found, "a list of at least two labels")
    labels = tuple(_label(file, i, item) for i, item in enumerate(value))
    for what, items in (("name", [label.name for label in labels]), ("verbalizer", [label.verbalizer for label in labels])):
        for repeated in [item for item, count in Counter(items).items() if count > 1]:
            positions = [i for i, item in enumerate(items) if item == repeated]
            problem = f"has label {what} {brief(repeated)} more than once (labels {brief(positions)})"
            _fail(file, "labels", problem, f"a distinct {what} per label")
    owners: dict[str, str] = {}
    for label in labels:
        for raw in label.values:
            owner = owners.setdefault(value_key(raw), label.name)
            if owner != label.name:
                problem = f"has data value {brief(raw)} listed for both {brief(owner)} and {brief(label.name)}"
                _fail(file, "labels", problem, "each data value to mean one label")
    return labels


def _split(file: Path, value: Any) -> SplitProtocol:
    if value is None:
        return SplitProtocol()
    split = _Section.read(file, "split", value, _SPLIT_KEYS)
    defaults = SplitProtocol()
    test_size = split.fraction("test_size", defaults.test_size)
    validation_size = split.fraction("validation_size", defaults.validation_size)
    if test_size + validation_size >= 1:
        problem = f"has test_size + validation_size = {test_size + validation_size:g}, leaving nothing to train on"
        _fail(file, "split", problem, "a sum below 1")
    seed = split.get("seed", "integer", defaults.seed)
    if not 0 <= seed < 2**32:
        _fail(file, split.path_of("seed"), f"is {seed}", "an integer from 0 to 2**32 - 1")
    return SplitProtocol(test_size, validation_size, split.get("stratify", "boolean", defaults.stratify), seed)


def _references(file: Path, value: Any) -> tuple[Reference, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail(file, "references", f"is {_describe(value)}", "a list of mappings with keys " + ", ".join(_REFERENCE_KEYS))
    references = []
    for i, item in enumerate(value):
        ref = _Section.read(file, f"references[{i}]", item, _REFERENCE_KEYS)
        value = float(ref.get("value", "number"))
        references.append(
            Reference(system=ref.get("system", "text"), metric=ref.get("metric", "text"), value=value, source=ref.get("source", "text"))
        )
    return tuple(references)


def load_task(path: str | Path) -> TaskSpec:
    """Read and validate a task YAML; raise ``TaskError`` naming the file and field on any problem."""
    file = Path(path)
    top = _Section.read(file, "", _read_yaml(file), _TOP_KEYS)
    name = top.get("name", "text")
    if not _NAME_PATTERN.fullmatch(name):
        _fail(file, "name", f"is {brief(name)}", "letters, digits, '_', '-' or '.' (it names the run folder)")
    return TaskSpec(
        name=name,
        description=top.get("description", "text", ""),
        path=file,
        source=_source(file, top.data.get("source")),
        text_column=top.get("text_column", "text", "text"),
        label_column=top.get("label_column", "text", "label"),
        labels=_labels(file, top.data.get("labels")),
        instruction=top.get("instruction", "text"),
        split=_split(file, top.data.get("split")),
        references=_references(file, top.data.get("references")),
        license=top.get("license", "text", None),
    )
