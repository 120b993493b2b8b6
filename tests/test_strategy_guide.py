"""docs/writing-a-strategy.md does what it says: its code blocks run, its listings are the example files.

- A ``python`` or ``toml`` block whose first line is ``# file: examples/...`` must be that file, verbatim.
- A ``python`` block whose first line is ``# file: NAME.py`` (any other path) is written to the working
  folder, so later blocks can import it.
- Every other ``python`` block runs, in order, in one namespace (the guide is one session), in a
  temporary working folder, with the example plugins importable (pip-installed, ``example_site``).
- In a ``console`` block, each ``$ slmbench ...`` command runs and must succeed; the lines after a
  command, when there are any, are its exact output. ``slmbench run`` gets a temporary ``--output``,
  the kit's tiny models (``--model``, ``--embedding-model``: the guide's commands run on the smoke
  profile) and the shared data folder for ``../shared/data``. ``pip install`` lines are what the
  ``example_site`` fixture does.
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
            exec(compile(body, f"<python block {number} of {GUIDE.name}>", "exec"), namespace)
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
def test_console_commands_run(command, output, example_site, shared_data_dir, tmp_path):
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
    arguments = [str(shared_data_dir) if word == "../shared/data" else word for word in words[1:]]
    if arguments[0] == "run":
        causal_lm, embedder = tiny_models()
        arguments += ["--output", str(tmp_path / "runs"), "--no-progress", "--model", str(causal_lm), "--embedding-model", str(embedder)]
    result = subprocess.run(
        [sys.executable, "-m", "slmbench.cli.main", *arguments], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )

    assert result.returncode == 0, result.stderr[-3000:]
    if output:
        assert result.stdout.splitlines() == output
