"""The leaderboard the terminal shows while a run goes on: from the trials finished so far (in this
command, reused ones included), the variants by mean test accuracy over their finished seeds.

A rich table above the progress bars in a terminal; one plain line after each trial in a pipe or
with ``--no-progress``. The report (``report.md``, rewritten after every trial) has the full picture.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from slmbench.cli.console import printable

SHOWN = 10
"""Rows the live table shows (the line names them all)."""


@dataclass
class LiveLeaderboard:
    """Finished whole-split trials grouped by (task, variant); the task is named when a sweep runs several."""

    accuracies: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    train_seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    finished: int = 0
    failed: int = 0

    def add(self, record: Any) -> None:
        """A trial that ended (any status; learning-curve points are counted, not ranked)."""
        self.finished += 1
        if not record.ok:
            self.failed += 1
            return
        if record.train_size is not None:
            return
        key = (record.task or "", record.name)
        self.accuracies.setdefault(key, []).append(record.metrics.accuracy)
        self.train_seconds.setdefault(key, []).append(record.cost.train_seconds if record.cost else 0.0)

    def ranked(self) -> list[tuple[str, float, int, float]]:
        """(variant, mean accuracy, seeds, mean train seconds), most accurate first."""
        several_tasks = len({task for task, _ in self.accuracies}) > 1
        rows = []
        for (task, name), values in self.accuracies.items():
            label = f"{name} ({task})" if several_tasks else name
            rows.append((label, statistics.fmean(values), len(values), statistics.fmean(self.train_seconds[task, name])))
        return sorted(rows, key=lambda row: (-row[1], row[3], row[0]))

    def heading(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"leaderboard after {self.finished} trials{failed}"

    def line(self) -> str:
        """The leaderboard as one plain line."""
        ranked = "; ".join(f"{place}. {printable(name)} {accuracy:.3f}" for place, (name, accuracy, _, _) in enumerate(self.ranked(), 1))
        return f"{self.heading()}: {ranked or 'no strategy finished ok yet'}"

    def table(self) -> Any:
        """The leaderboard as a rich table (its first ``SHOWN`` rows)."""
        from rich.table import Table
        from rich.text import Text

        table = Table("#", "strategy", "accuracy", "seeds", "train s", title=self.heading(), title_justify="left")
        ranked = self.ranked()
        for place, (name, accuracy, seeds, train) in enumerate(ranked[:SHOWN], 1):
            table.add_row(str(place), Text(printable(name)), f"{accuracy:.3f}", str(seeds), f"{train:,.1f}")
        if len(ranked) > SHOWN:
            table.add_row("", Text(f"... {len(ranked) - SHOWN} more"), "", "", "")
        return table
