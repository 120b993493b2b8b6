"""Several runs (usually several tasks) side by side: which strategy wins where, and its mean rank.

Accuracies on different tasks are not comparable, ranks are: within each run the variants are
ranked by accuracy (1 = best, ties share the mean rank), and the mean rank over the runs a variant
ran in orders the table. A variant missing from a run is left out of that run's ranking.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from slmbench.report.markdown import MISSING, code, metric, table, text
from slmbench.report.summary import Summary, load_summary


def ranks(summary: Summary) -> dict[str, float]:
    """Variant -> rank by mean accuracy in this run (1 = best; tied accuracies share the mean rank)."""
    ordered = sorted(summary.entries, key=lambda entry: -entry.accuracy)
    result: dict[str, float] = {}
    position = 0
    while position < len(ordered):
        tied = [entry for entry in ordered[position:] if abs(entry.accuracy - ordered[position].accuracy) < 1e-12]
        for entry in tied:
            result[entry.name] = position + (len(tied) + 1) / 2
        position += len(tied)
    return result


def _cell(summary: Summary, name: str, rank: float | None) -> str:
    entry = summary.entry(name)
    if entry is None:
        failed = any(file.record and file.record.name == name for file in summary.failures)
        return "failed" if failed else MISSING
    value = metric(entry.accuracy) + (f" ± {entry.accuracy_sd:.3f}" if entry.accuracy_sd is not None else "")
    value += f" (#{rank:g})"
    return f"**{value}**" if entry is summary.entries[0] else value


def render_comparison(run_dirs: Sequence[Path]) -> str:
    """Markdown comparing runs: the best variant of each, then every variant's accuracy and rank per run."""
    summaries = [load_summary(run_dir) for run_dir in run_dirs]
    run_ranks = [ranks(summary) for summary in summaries]
    names = sorted(
        {name for ranking in run_ranks for name in ranking}
        | {file.record.name for summary in summaries for file in summary.failures if file.record}
    )
    mean_rank = {name: statistics.fmean(r[name] for r in run_ranks if name in r) for name in names if any(name in r for r in run_ranks)}
    order = sorted(names, key=lambda name: (mean_rank.get(name, float("inf")), name))
    best_rows = []
    for summary in summaries:
        best = summary.entries[0] if summary.entries else None
        best_rows.append(
            [
                text(summary.name),
                len(best.gold) if best else MISSING,
                text(best.name) if best else "none succeeded",
                metric(best.accuracy) if best else MISSING,
                metric(best.macro_f1) if best else MISSING,
                len(summary.entries),
                len(summary.failures),
            ]
        )
    rows = [
        [
            text(name),
            *(_cell(summary, name, ranking.get(name)) for summary, ranking in zip(summaries, run_ranks)),
            f"{mean_rank[name]:.2f}" if name in mean_rank else MISSING,
        ]
        for name in order
    ]
    winners: dict[str, list[str]] = {}
    for summary in summaries:
        if summary.entries:
            winners.setdefault(summary.entries[0].name, []).append(summary.task)
    where = "; ".join(f"{code(name)} on {', '.join(map(code, tasks))}" for name, tasks in winners.items())
    overall = f" Lowest mean rank: {code(order[0])} ({mean_rank[order[0]]:.2f})." if order and order[0] in mean_rank else ""
    return (
        "\n\n".join(
            [
                f"# Comparison of {len(summaries)} runs",
                "## Best strategy per run",
                table(["run", "test examples", "best strategy", "accuracy", "macro-F1", "strategies ok", "failed trials"], best_rows),
                "## Every strategy on every run",
                f"Wins: {where or 'none'}.{overall} Each cell is the test accuracy (± its sd over seeds) and, after #, the rank "
                "within that run (1 = best); bold is each run's best. Accuracies on different tasks or test sets are not "
                "comparable, ranks are: the last column is the mean rank over the runs the strategy ran in.",
                table(["strategy", *(text(summary.name) for summary in summaries), "mean rank"], rows),
            ]
        )
        + "\n"
    )
