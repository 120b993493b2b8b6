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

    scores: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    """(task, variant) -> (accuracy, train seconds) of each finished seed."""
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
        train = record.cost.train_seconds if record.cost and record.cost.train_seconds is not None else 0.0
        self.scores.setdefault((record.task or "", record.name), []).append((record.metrics.accuracy, train))

    def ranked(self) -> list[tuple[str, float, int, float]]:
        """(variant, mean accuracy, seeds, mean train seconds), most accurate first. Read by the live display's
        refresh thread while ``add`` writes: it works on copies (each taken whole, under the GIL)."""
        scores = [(key, list(values)) for key, values in list(self.scores.items())]
        several_tasks = len({task for (task, _), _ in scores}) > 1
        rows = []
        for (task, name), values in scores:
            label = f"{name} ({task})" if several_tasks else name
            accuracies, trains = zip(*values)
            rows.append((label, statistics.fmean(accuracies), len(values), statistics.fmean(trains)))
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
