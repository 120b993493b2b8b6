"""The contenders: the strategies a decision can still land on, which the deployment check is spent on.

A variant is a contender when it is

- the recommended one (``slmbench.report.recommend``, under the user's constraints);
- not significantly worse than it: at least as accurate, or the recommendation's own tie test
  (``difference_p``, McNemar with one seed, the paired bootstrap with several) gives p >= ``SIGNIFICANCE``
  (unadjusted, as the tie test);
- on a Pareto front of accuracy against training time, latency (``recommend.latency_ms``: single-request
  p95, else the batched time per example) or peak memory: no other variant is at least as accurate
  and at most as costly on that measure, and better on one of the two (costs within ``FRONT_NOISE`` of
  each other are equal: a few milliseconds saved are no trade-off).

- a member of a combining contender (an ensemble): deploying it means deploying them.

Everything else is more costly than something at least as accurate, and significantly worse than the
recommendation: no deployment question is left about it.
"""

from __future__ import annotations

from collections.abc import Callable

from slmbench.report.markdown import p_value
from slmbench.report.recommend import COST_NOISE, SIGNIFICANCE, Constraints, difference_p, latency_ms, recommend
from slmbench.report.summary import Entry, Summary

FRONTS: dict[str, Callable[[Entry], float | None]] = {
    "training time": lambda entry: entry.cost("train_seconds"),
    "latency": latency_ms,
    "peak memory": lambda entry: entry.cost("peak_memory_mb"),
}
"""The costs accuracy is traded against, by the name the report uses."""
FRONT_NOISE = {"training time": COST_NOISE["train_seconds"], "latency": 1.0, "peak memory": COST_NOISE["peak_memory_mb"]}
"""Differences of cost this small (seconds, milliseconds, MiB) are measurement noise on a front."""


def pareto_front(entries: list[Entry], cost: Callable[[Entry], float | None], noise: float = 0.0) -> list[Entry]:
    """The entries no other entry dominates (accuracy up, ``cost`` down, costs within ``noise`` equal); those
    without the cost are left out."""
    measured = [(entry, value) for entry in entries if (value := cost(entry)) is not None]

    def dominates(other: Entry, other_cost: float, entry: Entry, entry_cost: float) -> bool:
        no_worse = other.accuracy >= entry.accuracy and other_cost <= entry_cost + noise
        return no_worse and (other.accuracy > entry.accuracy or other_cost < entry_cost - noise)

    return [entry for entry, value in measured if not any(dominates(other, other_value, entry, value) for other, other_value in measured)]


def contenders(summary: Summary, constraints: Constraints = Constraints()) -> dict[str, list[str]]:
    """Variant name -> why it is a contender (see the module docstring), in leaderboard order."""
    reasons: dict[str, list[str]] = {}
    choice = recommend(summary, constraints).choice
    if choice is not None:
        reasons[choice.name] = ["recommended"]
        for entry in summary.entries:
            if entry is choice:
                continue
            if entry.accuracy >= choice.accuracy:
                reasons[entry.name] = ["at least as accurate as the recommendation"]
            elif (p := difference_p(entry, choice)) is not None and p >= SIGNIFICANCE:
                reasons[entry.name] = [f"not significantly worse, p = {p_value(p)}"]
    for front, cost in FRONTS.items():
        for entry in pareto_front(summary.entries, cost, FRONT_NOISE[front]):
            reasons.setdefault(entry.name, []).append(f"{front} front")
    names = {file.key: file.record.name for file in summary.folder.trials if file.record is not None}
    for entry in [entry for entry in summary.entries if entry.name in reasons]:
        members = {names[key] for trial in entry.trials if trial.config for key in trial.config.inputs if key in names}
        for member in sorted(members - {entry.name}):
            reasons.setdefault(member, []).append(f"member of {entry.name}")
    order = [entry.name for entry in summary.entries]
    return {name: reasons[name] for name in order if name in reasons}
