"""Built-in tasks: registers every task YAML in this folder (installed as ``slmbench_tasks``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from slmbench import hookimpl


@hookimpl
def register_tasks(register: Callable[[str], None]) -> None:
    for path in sorted(Path(__file__).parent.glob("*.yaml")):
        register(str(path))
