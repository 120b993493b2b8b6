"""Executors: how a run's trials are carried out. The driver (``slmbench.runner``) stays the only
writer of records; an executor only runs trials and hands each record back through ``on_done``.

- ``LocalExecutor``: one trial after another in this process (the default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from slmbench.records import TrialRecord
    from slmbench.runner import PlannedTrial

OnDone = Callable[["PlannedTrial", "TrialRecord"], None]


class LocalExecutor:
    """Trials one after another in this process, sharing one workspace (splits and models load once).

    ``timeout_seconds`` stops a trial with status ``timeout``; Ctrl-C or SIGTERM records the running
    trial as ``cancelled`` and stops the run (KeyboardInterrupt).
    """

    def __init__(self, progress: Any, timeout_seconds: float | None = None) -> None:
        from slmbench.trial import Workspace

        self.workspace = Workspace(progress)
        self.timeout_seconds = timeout_seconds

    def run(self, trials: Sequence[PlannedTrial], on_done: OnDone) -> None:
        from slmbench.trial import run_trial

        for planned in trials:
            record = run_trial(
                planned.config, planned.strategy, self.workspace, planned.artifact_dir, self.timeout_seconds, planned.variant
            )
            on_done(planned, record)
            if record.status == "cancelled":
                raise KeyboardInterrupt
