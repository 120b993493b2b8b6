"""docs/writing-a-strategy.md does what it says: its code blocks run, its listings are the example files.

- A ``python`` or ``toml`` block whose first line is ``# file: examples/...`` must be that file, verbatim.
- A ``python`` block whose first line is ``# file: NAME.py`` (any other path) is written to the working
  folder, so later blocks can import it.
- Every other ``python`` block runs, in order, in one namespace (the guide is one session), in a
  temporary working folder, with the example plugins importable (pip-installed, ``example_site``).
- In a ``console`` block, each ``$ slmbench ...`` command runs and must succeed; the lines after a
  command, when there are any, are its exact output. ``slmbench run`` gets a temporary ``--output``,
  the kit's tiny models (``--model``, ``--embedding-model``: the guide's commands run on the smoke
  profile) and, for ``../shared/data``, a folder of toy rows in the real data's format (the
  ``toy_data_dir`` fixture: the commands are checked to run, not for their figures). ``pip install``
  lines are what the ``example_site`` fixture does.
- The table of ``StrategyMetadata``'s fields and the table of families list exactly the fields and the
  ``Family`` members, in order, each with its description (``FAMILY_MEANINGS`` for a family).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "writing-a-strategy.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_LINE = re.compile(r"^# file: (\S+)\n")


def blocks(kind: str) -> list[str]:
    return [body for language, body in BLOCK.findall(GUIDE.read_text(encoding="utf-8")) if language == kind]


@pytest.mark.parametrize("kind", ["python", "toml"])
def test_listings_are_the_example_files(kind):
    listed = [(m.group(1), body[m.end() :]) for body in blocks(kind) if (m := FILE_LINE.match(body)) and m.group(1).startswith("examples/")]

    assert listed or kind == "toml"
    for path, body in listed:
        assert body == (ROOT / path).read_text(encoding="utf-8"), f"the guide's listing of {path} differs from the file"


def table(header: str) -> list[list[str]]:
    """The rows (stripped cells) of the guide's markdown table whose header line is ``header``."""
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    assert lines.count(header) == 1, f"the guide should have exactly one table headed {header!r}"
    rows = []
    for line in lines[lines.index(header) + 2 :]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))  # a cell may hold an escaped pipe, \|
        rows.append([cell.strip().replace("\\|", "|") for cell in cells])
    return rows


def code(cell: str) -> str:
    """The text of a table cell that is one piece of inline code, `like this`."""
    assert re.fullmatch(r"`[^`]+`", cell), f"expected one piece of code in the cell {cell!r}"
    return cell[1:-1]


def as_markdown(text: str) -> str:
    """Docstring text as the guide writes it: reST's ``literal`` becomes markdown's `literal`."""
    return text.replace("``", "`")


def type_name(annotation: object) -> str:
    """A field's type as the guide writes it: ``str``, ``Family``, ``tuple[SharedModel, ...]``."""
    written = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", written)


def test_metadata_table_documents_every_field():
    """The guide's `metadata` table lists StrategyMetadata's fields, in order, with their types and descriptions."""
    from slmbench.strategy.metadata import StrategyMetadata

    rows = table("| field | type | meaning |")
    fields = StrategyMetadata.model_fields

    assert [code(row[0]) for row in rows] == list(fields), "the guide's metadata table must list StrategyMetadata's fields, in order"
    for (name, written_type, meaning), info in zip(rows, fields.values()):
        assert code(written_type) == type_name(info.annotation), f"the guide gives {name} the type {written_type}"
        assert info.description and as_markdown(info.description) in meaning, f"the guide's meaning of {name} lacks its description"


def test_family_table_documents_every_family():
    """The guide's family table lists every Family member, in order, with its value and its FAMILY_MEANINGS line."""
    from slmbench.strategy.metadata import FAMILY_MEANINGS, Family

    rows = table("| family | value | meaning |")

    assert [code(row[0]) for row in rows] == [f"Family.{family.name}" for family in Family], "the guide must list every Family, in order"
    for (name, value, meaning), family in zip(rows, Family):
        assert code(value) == family.value, f"the guide gives {name} the value {value}"
        assert as_markdown(FAMILY_MEANINGS[family]) in meaning, f"the guide's meaning of {name} lacks FAMILY_MEANINGS[Family.{family.name}]"


def test_python_blocks_run_in_order(example_site, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(example_site))
    monkeypatch.delenv("SLMBENCH_PLUGINS", raising=False)
    namespace: dict = {"__name__": "guide"}
    for number, body in enumerate(blocks("python"), 1):
        match = FILE_LINE.match(body)
        if match and not match.group(1).startswith("examples/"):
            (tmp_path / match.group(1)).write_text(body, encoding="utf-8")
            continue
        try:
            # dont_inherit: the blocks run as a reader runs them, without this file's ``from __future__ import annotations``
            exec(compile(body, f"<python block {number} of {GUIDE.name}>", "exec", dont_inherit=True), namespace)
        except Exception as error:
            raise AssertionError(f"python block {number} of the guide failed: {type(error).__name__}: {error}\n{body}") from error


def commands() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of every ``$ slmbench`` line of the console blocks."""
    found = []
    for body in blocks("console"):
        for chunk in re.split(r"^\$ ", body, flags=re.MULTILINE)[1:]:
            command, *output = chunk.rstrip("\n").split("\n")
            if "slmbench " in command and not command.startswith("pip "):
                found.append((command, output))
    return found


@pytest.mark.parametrize(("command", "output"), commands(), ids=[c for c, _ in commands()])
def test_console_commands_run(command, output, example_site, toy_data_dir, tmp_path):
    from slmbench.testing import tiny_models

    words = shlex.split(command)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(example_site), os.environ.get("PYTHONPATH")])),
        "COLUMNS": "250",
    }
    environment.pop("SLMBENCH_PLUGINS", None)
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        environment[name] = value
    assert words[0] == "slmbench", command
    arguments = [str(toy_data_dir) if word == "../shared/data" else word for word in words[1:]]
    if arguments[0] == "run":
        causal_lm, embedder = tiny_models()
        arguments += ["--output", str(tmp_path / "runs"), "--no-progress", "--model", str(causal_lm), "--embedding-model", str(embedder)]
    result = subprocess.run(
        [sys.executable, "-m", "slmbench.cli.main", *arguments], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )

    assert result.returncode == 0, result.stderr[-3000:]
    if output:
        assert result.stdout.splitlines() == output
