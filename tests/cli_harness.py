"""The CLI run in-process on hostile input, each outcome classified and counted.

``run_cli`` runs ``slmbench.cli.main.main`` with the fake strategies registered, in a given working
folder, with stdout and stderr captured and a watchdog against hangs, and says what happened:

- ``clean error``: a non-zero exit with a one-line error, no traceback;
- ``accepted``: exit 0 on input that may be valid;
- ``traceback``: an exception escaped, or "Traceback" / "internal error" was printed;
- ``hang``: the watchdog fired;
- ``wrongly accepted``: exit 0 on input known to be invalid;
- ``wrote outside``: a file appeared, changed or vanished in the working folder outside the one
  folder the command may write to.

Every call adds to ``TALLY``, which conftest prints at the end of the session (and writes to
``$SLMBENCH_FUZZ_TALLY`` when set), so the counts in a report come from a real run.
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import fake_strategies

from slmbench.strategy.registry import load_registry

HANG_SECONDS = 120.0
"""Watchdog of one command: far above any command here, so only a real hang reaches it."""
OUTCOMES = ("clean error", "accepted", "traceback", "hang", "wrongly accepted", "wrote outside")
TALLY: Counter[str] = Counter()
"""Outcome -> inputs; ``inputs`` and ``malformed`` count the inputs tried and those known to be invalid."""
KINDS: Counter[str] = Counter()
"""Kind of input (task yaml, data file, cli argument, run folder, report) -> inputs tried."""
MALFORMED: Counter[str] = Counter()
"""Kind of input -> inputs known to be malformed."""
STARTED = time.monotonic()


class Hang(BaseException):
    """Raised in the main thread by the watchdog (a BaseException: the CLI's handlers don't catch it)."""


@dataclass
class Result:
    code: int | None
    stdout: str
    stderr: str
    outcome: str
    outside: list[str]

    def __str__(self) -> str:
        return f"{self.outcome} (exit {self.code}); stderr: {self.stderr[-2000:]!r}; written outside: {self.outside}"


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise Hang in this (main) thread after ``seconds``: a real signal, so a blocking open() or read() is interrupted."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGUSR1, expire)
    main = threading.get_ident()
    timer = threading.Timer(seconds, lambda: signal.pthread_kill(main, signal.SIGUSR1))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder``: relative path -> (size, modification time)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            status = path.lstat()
            found[path.relative_to(folder).as_posix()] = (status.st_size, status.st_mtime_ns)
    return found


@functools.cache
def _registry(strict: bool = False, extra_plugins: object = None):
    """The registry, loaded once: loading entry points is not what these tests test, and takes time."""
    return load_registry(strict=strict, extra_plugins={"fake-strategies": fake_strategies.plugin()})


def _call_main(argv: Sequence[str]) -> tuple[int | None, str | None]:
    """(exit code, traceback text if an exception escaped ``main``)."""
    from slmbench.cli.main import main

    try:
        with mock.patch("slmbench.strategy.registry.load_registry", _registry):
            return main(list(argv)), None
    except SystemExit as stop:  # argparse
        return stop.code if isinstance(stop.code, int) else 2, None
    except Hang:
        raise
    except BaseException:  # noqa: BLE001 - exactly what must never happen
        return None, traceback.format_exc()


def run_cli(
    argv: Sequence[str],
    *,
    cwd: Path,
    kind: str,
    invalid: bool | None,
    writes: Path | None = None,
    timeout: float = HANG_SECONDS,
) -> Result:
    """Run the CLI in ``cwd`` and classify the outcome. ``invalid``: True if the input is known to be
    malformed, None if it may be valid. ``writes``: the only folder (under ``cwd``) that may change."""
    before = snapshot(cwd)
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr), watchdog(timeout):
            code, escaped = _call_main(argv)
    except Hang:
        code, escaped = None, "hang"
    finally:
        os.chdir(previous)
    after = snapshot(cwd)
    allowed = writes.resolve().relative_to(cwd.resolve()).as_posix() if writes else None
    changed = {path for path, stamp in after.items() if before.get(path) != stamp} | (before.keys() - after.keys())
    outside = sorted(
        path
        for path in changed
        if not (allowed is not None and (allowed == "." or (path + "/").startswith(allowed + "/") or allowed.startswith(path + "/")))
    )  # or a folder on the way
    err = stderr.getvalue()
    if escaped == "hang":
        outcome = "hang"
    elif escaped or "Traceback" in err or "internal error" in err:
        outcome, err = "traceback", err + (escaped or "")
    elif outside:
        outcome = "wrote outside"
    elif code == 0:
        outcome = "wrongly accepted" if invalid else "accepted"
    else:
        outcome = "clean error"
    count(outcome, kind, invalid)
    return Result(code, stdout.getvalue(), err, outcome, outside)


def check(result: Result, *culprits: str, accept: bool = True) -> None:
    """The outcome is a clean error naming one of ``culprits`` (when given), or, if ``accept``, a clean accept."""
    allowed = ("clean error", "accepted") if accept else ("clean error",)
    assert result.outcome in allowed, str(result)
    if result.outcome == "clean error" and culprits:
        assert any(culprit in result.stderr for culprit in culprits), f"names none of {culprits}: {result}"


def count(outcome: str, kind: str, invalid: bool | None) -> None:
    """Tally an input run outside ``run_cli`` (a subprocess, a direct render)."""
    TALLY["inputs"] += 1
    TALLY["malformed"] += bool(invalid)
    TALLY[outcome] += 1
    KINDS[kind] += 1
    MALFORMED[kind] += bool(invalid)


def summary() -> str:
    """The session's counts, one line each."""
    lines = [f"hostile-input tally ({time.monotonic() - STARTED:.0f} s since the harness loaded):"]
    lines.append("  " + ", ".join(f"{name} {TALLY[name]}" for name in ("inputs", "malformed", *OUTCOMES)))
    lines.append("  by kind (malformed): " + ", ".join(f"{kind} {n} ({MALFORMED[kind]})" for kind, n in sorted(KINDS.items())))
    return "\n".join(lines)


def write_tally(path: str) -> None:
    Path(path).write_text(json.dumps({"outcomes": dict(TALLY), "kinds": dict(KINDS), "malformed": dict(MALFORMED)}, indent=1))


# --- a tiny valid task, to break one piece at a time -------------------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"
"""A finished run folder (one trial), as the records writer writes it."""
RUN = [
    "run",
    "--task",
    "data/task.yaml",
    "--data-dir",
    "data",
    "--strategies",
    "majority",
    "--profile",
    "smoke",
    "--output",
    "out",
    "--no-progress",
]
VALIDATE = ["validate", "data/task.yaml", "--data-dir", "data"]
"""The commands the hostile-input tests run on the tiny task's working folder."""
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
GOOD_ROWS = [(f"text number {i} about {label}", label) for i in range(12) for label in ("a", "b", "c")]


def write_rows(path: Path, rows: list[tuple[object, object]], columns: tuple[str, str] = ("text", "label")) -> Path:
    """``rows`` as a CSV, TSV, JSONL or Parquet file (by suffix); JSONL and Parquet keep the cells' types."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    if path.suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="," if path.suffix == ".csv" else "\t")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n" for row in rows))
    else:
        frame.to_parquet(path)
    return path


def write_task(folder: Path, name: str = "task.yaml", **changes: object) -> Path:
    """The valid task with top-level ``changes``, as YAML in ``folder``."""
    import yaml

    path = folder / name
    path.write_text(yaml.safe_dump({**VALID_TASK, **changes}, allow_unicode=True))
    return path


def make_workdir(folder: Path) -> Path:
    """``folder`` with ``data/data.csv`` (good rows) and ``data/task.yaml`` (the valid task)."""
    data = folder / "data"
    data.mkdir(parents=True)
    write_rows(data / "data.csv", GOOD_ROWS)
    write_task(data)
    return folder
