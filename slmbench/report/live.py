"""A report rendered while its run goes on: what is finished, what is still to come."""

from __future__ import annotations

from dataclasses import dataclass, field

from slmbench.common.text import plural
from slmbench.report.markdown import code


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands when its report is rendered before the end."""

    finished: int
    """Trials of this run folder finished so far (in this command, reused ones included)."""
    total: int
    still_to_come: list[str] = field(default_factory=list)
    """The keys of the trials not finished yet (``strategy.seed0``...), in the order they will run."""
    after_trials: list[str] = field(default_factory=list)
    """What the run still does after its trials (``the deployment check of the contenders``...)."""


def progress_section(progress: RunProgress) -> str:
    """The banner of a report rendered mid-run."""
    lines = [
        "## This run is still going",
        f"{progress.finished} of {plural(progress.total, 'trial')} finished; this report is rewritten after each one, and its "
        "figures with it. Everything below is what the finished trials say so far.",
    ]
    if progress.still_to_come:
        lines.append("Still to come: " + ", ".join(code(key) for key in progress.still_to_come) + ".")
    if progress.after_trials:
        lines.append(f"After the trials: {', '.join(progress.after_trials)}.")
    return "\n\n".join(lines)
