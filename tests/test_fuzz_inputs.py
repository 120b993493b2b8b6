"""Generated hostile input to every entry point, through the CLI: task YAMLs, data files (CSV, TSV,
JSONL, Parquet), ``run`` arguments and damaged run folders given to ``report``.

Each input must end in a clean error (non-zero exit, one line naming the file or argument, no
traceback) or, where it may be valid, a clean accept; never a hang, and nothing may be written
outside the folder the command writes to. Inputs known to be malformed must not be accepted.
``cli_harness`` counts every outcome; conftest prints the counts.

Examples per test are fixed (derandomized) so CI sees the same inputs each time;
``SLMBENCH_FUZZ_SCALE=10`` runs ten times as many, drawn at random, to explore.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from cli_harness import FIXTURE, GOOD_ROWS, RUN, VALID_TASK, VALIDATE, check, make_workdir, run_cli, write_rows
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from slmbench.engine.run_options import RUN_ID

SCALE = float(os.environ.get("SLMBENCH_FUZZ_SCALE", "1"))
REQUIRED = {"name", "source", "labels", "instruction"}


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, round(examples * SCALE)),
        deadline=None,
        database=None,
        derandomize=SCALE <= 1,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


@contextmanager
def workdir() -> Iterator[Path]:
    """A fresh working folder with the tiny valid task in ``data/`` (hypothesis examples can't share tmp_path)."""
    with tempfile.TemporaryDirectory() as folder:
        yield make_workdir(Path(folder) / "wd")


# --- task YAMLs -------------------------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _surely_invalid(task: dict) -> bool:
    """Whether a mutated task breaks the schema for certain (a required field gone, a wrong type, a
    source or column that cannot be the data's); other mutations may be valid."""

    def text(value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    checks = [
        bool(REQUIRED - set(task)) or bool(set(task) - set(VALID_TASK)),
        not (text(task.get("name")) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", task["name"])),
        not text(task.get("instruction")),
        task.get("source") != VALID_TASK["source"],
        task.get("description") is not None and not text(task["description"]),
        task.get("text_column") not in (None, "text") or task.get("label_column") not in (None, "label"),
        not isinstance(task.get("labels"), list) or len(task["labels"]) < 2,
        task.get("split") is not None and not isinstance(task["split"], dict),
    ]
    return any(checks)


@st.composite
def broken_tasks(draw) -> tuple[dict, bool | None]:
    """The valid task with fields removed, replaced by values of any type, or unknown keys added."""
    dropped = draw(st.sets(st.sampled_from(sorted(VALID_TASK)), max_size=3))
    task = {key: value for key, value in VALID_TASK.items() if key not in dropped}
    for key in draw(st.lists(st.sampled_from(sorted(VALID_TASK)), max_size=3)):
        task[key] = draw(ANY_VALUE)
    unknown = draw(st.booleans())
    if unknown:
        task[draw(st.sampled_from(["lables", "split_seed", "Text_column"]))] = draw(ANY_VALUE)
    if draw(st.booleans()):
        task["split"] = {
            **VALID_TASK["split"],
            draw(st.sampled_from(["test_size", "validation_size", "seed", "stratify"])): draw(ANY_VALUE),
        }
    return task, True if _surely_invalid(task) else None


@fuzz(200)
@given(case=broken_tasks())
def test_malformed_task_yaml(case):
    task, invalid = case
    with workdir() as wd:
        (wd / "data" / "task.yaml").write_text(yaml.safe_dump(task, allow_unicode=True))
        check(run_cli(VALIDATE, cwd=wd, kind="task yaml", invalid=invalid), "task.yaml", "data.csv")


VALID_YAML = yaml.safe_dump(VALID_TASK)
HOSTILE_SCALARS = [
    "9" * 5000,
    "-" + "9" * 400,
    "!!python/object/apply:os.system ['echo x']",
    "!!python/name:os.system",
    "!!binary aGk=",
    "!custom x",
    ".nan",
    ".inf",
    "-.inf",
    "0x1F",
    "0o17",
    "2001-12-14",
    "~",
    "'\x1b[31mred'",
    '"\\0"',
    '"\\x07"',
    "*undefined",
    "&a x",
    "'[/red]'",
    "'$x^2$'",
    "'<b>x</b>'",
    "[[[[[]]]]]",
    "{a: {b: {c: {}}}}",
    "'" + "x" * 100_000 + "'",
    "|\n  multi\n  line",
    '"\\ud800"',
    "!!set {a, b}",
    "!!omap [a: 1, a: 2]",
    "? [a, b]\n: c",
]


@st.composite
def hostile_yaml(draw) -> tuple[str | bytes, bool | None]:
    """YAML text built to break a parser or a loader: deep nesting, alias bombs, duplicate keys,
    oversized files, hostile scalars, random bytes."""
    kind = draw(
        st.sampled_from(
            ["deep", "deep", "aliases", "aliases", "duplicate", "duplicate", "scalar", "scalar", "scalar", "bytes", "oversized", "layout"]
        )
    )
    field = draw(st.sampled_from(["name", "labels", "split", "description", "source", "references"]))
    rest = yaml.safe_dump({key: value for key, value in VALID_TASK.items() if key != field})
    if kind == "deep":
        depth = draw(st.integers(17, 3000))
        if draw(st.booleans()):
            return rest + f"{field}: " + "[" * depth + "]" * depth + "\n", True
        depth = min(depth, 900)
        return rest + f"{field}:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(depth)), True
    if kind == "aliases":
        fanout, levels = draw(st.integers(2, 12)), draw(st.integers(2, 10))
        anchors = ["a0: &a0 [" + ", ".join(["x"] * fanout) + "]"]
        anchors += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]" for i in range(1, levels)]
        return rest + "\n".join(anchors) + f"\n{field}: *a{levels - 1}\n", True
    if kind == "duplicate":
        key = draw(st.sampled_from(sorted(VALID_TASK)))
        return VALID_YAML + f"{key}: {draw(st.sampled_from(['again', '[a, b]', '{}', '1']))}\n", True
    if kind == "scalar":
        return rest + f"{field}: {draw(st.sampled_from(HOSTILE_SCALARS))}\n", None
    if kind == "bytes":
        return draw(st.binary(max_size=300)), True
    if kind == "oversized":
        return VALID_YAML + "# " + "x" * ((1 << 20) + draw(st.integers(0, 100))) + "\n", True
    layout = draw(st.sampled_from(["\ufeff", "crlf", "tabs", "flow"]))  # valid tasks written oddly
    text = {
        "\ufeff": "\ufeff" + VALID_YAML,
        "crlf": VALID_YAML.replace("\n", "\r\n"),
        "tabs": VALID_YAML.replace("  ", "\t"),
        "flow": yaml.safe_dump(VALID_TASK, default_flow_style=True),
    }[layout]
    return text, None


@fuzz(220)
@given(case=hostile_yaml())
def test_hostile_task_yaml_text(case):
    content, invalid = case
    with workdir() as wd:
        (wd / "data" / "task.yaml").write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        result = run_cli(VALIDATE, cwd=wd, kind="task yaml", invalid=invalid)
        check(result, "task.yaml", "data.csv")
        assert len(result.stderr) < 5000, result.stderr[:300]  # no message echoes a file or an expanded alias


# --- data files -------------------------------------------------------------------------------

TEXTS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "   ", "\t\n", "x" * 100_000, 'a,"quoted\nline"', "text number 0 about a", "[/red]", "\x1b[2J"]),
)
LABELS = st.one_of(st.sampled_from(["a", "b", "c", "3", "", "nan", "NaN", "d", " a ", "[/red]"]), st.text(max_size=4))
CELLS = st.sampled_from([{"an": "object"}, ["a", "list"], 42, 1.5, None, True])
DECLARED = {"a", "b", "c", "3"}


def _bad_row(text: Any, label: Any) -> bool:
    """Whether one row is surely rejected: a blank or non-text text, or a missing or undeclared label."""
    if not isinstance(text, str) or not text.strip():
        return True
    return label == "nan" or not isinstance(label, str) or label.strip() not in DECLARED


@fuzz(240)
@given(
    extra=st.lists(st.tuples(TEXTS, LABELS), max_size=8),
    cells=st.lists(st.tuples(CELLS, LABELS | CELLS), max_size=2),
    keep=st.sampled_from(["all", "all", "one class", "none"]),
    tail=st.one_of(st.just(b""), st.just(b""), st.binary(min_size=1, max_size=8)),
    fmt=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]),
)
def test_malformed_data_files(extra, cells, keep, tail, fmt):
    rows = {"all": GOOD_ROWS, "one class": [r for r in GOOD_ROWS if r[1] == "a"], "none": []}[keep] + extra
    if fmt == ".jsonl":
        rows += cells  # objects, lists and numbers where text belongs: only JSONL mixes types in a column
    with workdir() as wd:
        data_file = wd / "data" / f"data{fmt}"
        if fmt == ".parquet":
            import pandas as pd

            frame = pd.DataFrame(rows, columns=["text", "label"])
            frame.loc[frame["label"] == "nan", "label"] = math.nan
            frame.to_parquet(data_file)
        else:
            write_rows(data_file, rows)
            data_file.write_bytes(data_file.read_bytes() + tail)
        (wd / "data" / "task.yaml").write_text(yaml.safe_dump({**VALID_TASK, "source": {"file": data_file.name}}))
        invalid = True if keep != "all" or any(_bad_row(*row) for row in rows) else None
        if tail:
            invalid = None
        check(run_cli(VALIDATE, cwd=wd, kind="data file", invalid=invalid), "task.yaml", data_file.name)


# --- run arguments ----------------------------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            ".",
            "..",
            "../..",
            "/",
            "/etc/passwd",
            "/dev/zero",
            "-",
            "--",
            "-1",
            "0",
            "nan",
            "inf",
            "1e309",
            "x" * 300,
            "a\x00b",
            "[/red]",
            "$HOME",
            "~",
            "a,b",
            ",",
            "all",
            "majority",
            "\x1b[2J",
            "..\\..",
            "lora.r=8",
            "=",
            "data/data.csv",
            "majority.x=1",
            "0,1,2",
            "2,all",
            "18446744073709551616",
            "١٢",
            "cpu",
            "cuda:1",
            "auto",
            "org/model",
            "data",
        ]
    ),
)
OPTIONS = [
    "--task",
    "--strategies",
    "--set",
    "--profile",
    "--data-dir",
    "--output",
    "--seeds",
    "--run-id",
    "--model",
    "--embedding-model",
    "--device",
    "--dtype",
    "--trial-timeout",
    "--train-sizes",
    "--track",
    "--max-train-minutes",
    "--max-latency-ms",
    "--max-memory-mb",
    "--max-labelled-examples",
]
SURELY_INVALID = {
    "--run-id": lambda value: not RUN_ID.fullmatch(value) or ".." in value,
    "--profile": lambda value: value not in ("smoke", "quick", "full"),
    "--dtype": lambda value: value not in ("auto", "float32", "bfloat16", "float16"),
    "--strategies": lambda value: not value.strip(" ,"),
    "--track": lambda value: value not in ("mlflow",),
}


def _with(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option`` set to ``value`` (replaced where it is already given)."""
    if option in argv:
        index = argv.index(option)
        return [*argv[: index + 1], value, *argv[index + 2 :]]
    return [*argv, option, value]


@fuzz(80)
@given(option=st.sampled_from(OPTIONS), value=HOSTILE_TEXT)
def test_hostile_run_argument(option, value):
    assume(not (option == "--strategies" and value.strip() == "all"))  # valid, and runs every real model
    if option == "--output" and (Path(value).is_absolute() or ".." in value or "\x00" in value):
        value = "out/" + value.replace("/", "_").replace("\x00", "_").replace(".", "_")  # a run elsewhere is a user's right
    with workdir() as wd:
        writes = wd / value if option == "--output" else wd / "out"
        invalid = True if SURELY_INVALID.get(option, lambda v: False)(value) else None
        result = run_cli(_with(RUN, option, value), cwd=wd, kind="cli argument", invalid=invalid, writes=writes)
        check(result)


TOKENS = st.sampled_from(
    [
        *OPTIONS,
        "--resume",
        "--no-progress",
        "--trust-remote-code",
        "--allow-outside-data-dir",
        "--strict-plugins",
        "--bogus",
        "-x",
        "--",
        "data/task.yaml",
        "majority",
        "smoke",
        "out",
        "data",
        "1",
        "-1",
        "",
        "all",
        "x",
    ]
)


@fuzz(60)
@given(
    command=st.sampled_from(["run", "validate", "report", "list", "show", "predict", "export", "bogus"]),
    tokens=st.lists(TOKENS, max_size=8),
)
def test_argument_soup(command, tokens):
    """Options, values and flags in any order and number: argparse or the command says what is wrong."""
    with workdir() as wd:
        check(run_cli([command, *tokens], cwd=wd, kind="cli argument", invalid=None, writes=wd / "out"))


@fuzz(40)
@given(command=st.sampled_from(["validate", "report", "show", "resume", "predict", "export"]), value=HOSTILE_TEXT)
def test_hostile_positional(command, value):
    argv = {"resume": ["run", "--resume", value], "predict": ["predict", value, value], "export": ["export", value, "--to", "out"]}.get(
        command, [command, value]
    )
    with workdir() as wd:
        check(run_cli(argv, cwd=wd, kind="cli argument", invalid=None, writes=wd / "out"))


# --- damaged run folders ----------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.sampled_from([math.inf, -math.inf, math.nan, -1.0, 0.0, -1, 99, 1e308, 2**70, -(2**70), "[/red]", "<b>x</b>", "`` x ``"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
FILES = ["run.json", "trials/lora.seed0.json", "trials/zero-shot.seed0.json", "trials/embedding-classifier.seed0.json", "test_texts.json"]


def _pick(draw, data: Any) -> tuple[Any, Any] | None:
    """A (container, key) somewhere inside ``data``, walked at random; None if ``data`` has no place."""
    place = None
    node = data
    while isinstance(node, (dict, list)) and node:
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        place = (node, key)
        if not draw(st.integers(0, 3)):
            break
        node = node[key]
    return place


@st.composite
def damaged_folders(draw) -> tuple[str, str, Any, bool | None]:
    """(file, how, new content, known malformed): one file of the fixture run damaged."""
    file = draw(st.sampled_from(FILES))
    data = json.loads((FIXTURE / file).read_text())
    how = draw(st.sampled_from(["set", "set", "set", "drop", "replace", "truncate", "bytes"]))
    if how in ("set", "drop") and (place := _pick(draw, data)) is not None:
        container, key = place
        if how == "set":
            container[key] = draw(JSON_VALUES)
        else:
            del container[key]
        return file, how, json.dumps(data), None
    if how == "replace":
        value = draw(JSON_VALUES)
        return file, how, json.dumps(value), True if file == "run.json" and not isinstance(value, dict) else None
    text = json.dumps(data, indent=1)
    if how == "truncate":
        cut = draw(st.integers(0, len(text) - 2))
        return file, how, text[:cut], True if file == "run.json" else None
    return file, how, draw(st.binary(max_size=200)), True if file == "run.json" else None


@fuzz(70)
@given(damage=damaged_folders(), form=st.sampled_from(["md", "md", "md", "json", "csv", "compare", "predict", "export"]))
def test_report_on_a_damaged_run_folder(damage, form):
    file, how, content, invalid = damage
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        run_dir = Path(shutil.copytree(FIXTURE, root / "runs" / "task" / "damaged"))
        target = run_dir / file
        target.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        argv = {
            "md": ["report", str(run_dir)],
            "json": ["report", str(run_dir), "--format", "json"],
            "csv": ["report", str(run_dir), "--format", "csv"],
            "compare": ["report", str(FIXTURE), str(run_dir), "--compare"],
            "predict": ["predict", str(run_dir), str(FIXTURE / "test_texts.json")],
            "export": ["export", str(run_dir), "--to", str(root / "out")],
        }[form]
        result = run_cli(argv, cwd=root, kind="run folder", invalid=invalid, writes=root / "out" if form == "export" else run_dir)
        reused = form in ("predict", "export")  # the fixture keeps no artifacts: predict and export may stop there
        check(result, *(() if reused else (file, "run.json")))
        assert form != "export" or not (root / "out").exists()
