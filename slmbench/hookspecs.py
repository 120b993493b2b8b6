"""Hook specifications: the whole contract between slmbench and its plugins.

A plugin is a module (or object) with functions decorated by ``slmbench.hookimpl`` whose names
match the specs below. Implementations may accept a subset of a spec's arguments.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("slmbench")
hookimpl = pluggy.HookimplMarker("slmbench")


@hookspec
def register_strategies(register: Callable[[type], None]) -> None:
    """Register strategy classes: call ``register(StrategySubclass)`` once per strategy."""


@hookspec
def register_tasks(register: Callable[[str], None]) -> None:
    """Register task definitions: call ``register(path_to_task_yaml)`` once per task."""
