"""Hook specifications: the whole contract between slmbench and its plugins.

A plugin is a module (or object) with functions decorated by ``slmbench.hookimpl`` whose names
match the specs below. Implementations may accept a subset of a spec's arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from slmbench.records import RunRecord, TrialRecord

hookspec = pluggy.HookspecMarker("slmbench")
hookimpl = pluggy.HookimplMarker("slmbench")


@hookspec
def register_strategies(register: Callable[[type], None]) -> None:
    """Register strategy classes: call ``register(StrategySubclass)`` once per strategy."""


@hookspec
def register_tasks(register: Callable[[str], None]) -> None:
    """Register task definitions: call ``register(path_to_task_yaml)`` once per task."""


@hookspec
def register_trackers(register: Callable[..., None]) -> None:
    """Register experiment trackers: ``register(name, description, check=None)``; ``slmbench run --track
    NAME`` turns one on, and the plugin's ``trial_finished`` / ``run_finished`` act when ``name`` is in
    ``track``. ``check()``, if given, runs before such a run starts and raises saying what is missing
    (the tracker's library, its store), so the run stops before any trial."""


@hookspec
def trial_finished(trial: TrialRecord, run_dir: Path, track: tuple[str, ...]) -> None:
    """A trial finished (ok or not) and its record is written under ``run_dir``; reused trials don't call it.

    ``track``: the tracker names the user turned on with ``--track``.
    """


@hookspec
def run_finished(run: RunRecord, run_dir: Path, report: Path, track: tuple[str, ...]) -> None:
    """A run finished (or was interrupted) and its ``report`` is rendered."""
