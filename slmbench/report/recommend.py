"""The recommendation: the most accurate variant within the user's constraints, or a cheaper one
statistically tied with it.

Tie test: with one seed, McNemar's exact test on the test examples; with several seeds, a paired
bootstrap over the seeds both variants share and the test examples (``stats.paired_seed_bootstrap_p``),
so a difference must hold beyond both the test set's and the seeds' noise.

Cost order: variant A is *cheaper* than B when it needs no more training time and peak memory
than B (give or take ``COST_NOISE``) and at most half of B's on at least one of the two, by more
than that noise. Among several cheaper tied variants, the one that trains fastest wins (then the
one with less peak memory). A cheaper variant no more accurate than always answering the majority
label never stands in for one that beats it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import NamedTuple

from slmbench.report import stats
from slmbench.report.markdown import number
from slmbench.report.summary import Entry, Summary

SIGNIFICANCE = 0.05
COST_NOISE = {"train_seconds": 1.0, "peak_memory_mb": 50.0}
"""Cost differences this small are measurement noise, never a reason to prefer a strategy."""
CHEAPER_RATIO = 0.5


@dataclass(frozen=True)
class Constraints:
    """Limits the recommended strategy must respect; ``None`` means no limit."""

    max_train_minutes: float | None = None
    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    max_labelled_examples: int | None = None

    def violations(self, entry: Entry) -> list[str]:
        """Why ``entry`` breaks these constraints (an unrecorded measurement counts as a breach)."""
        reasons = []
        for limit, measure in self._active():
            value = measure.of(entry)
            if value is None:
                reasons.append(f"{measure.what} not recorded")
            elif value > limit:
                reasons.append(f"{measure.what} {number(value)}{measure.unit} > {limit:g}{measure.unit}")
        return reasons

    def describe(self) -> str:
        return ", ".join(f"{measure.what} ≤ {limit:g}{measure.unit}" for limit, measure in self._active())

    def _active(self) -> list[tuple[float, _Measure]]:
        return [(getattr(self, f.name), _MEASURES[f.name]) for f in fields(self) if getattr(self, f.name) is not None]


class _Measure(NamedTuple):
    """What a constraint limits, in which unit, and how to read it from an entry."""

    what: str
    unit: str
    of: Callable[[Entry], float | None]


def _train_minutes(entry: Entry) -> float | None:
    seconds = entry.cost("train_seconds")
    return None if seconds is None else seconds / 60


def latency_ms(entry: Entry) -> float | None:
    """What ``--max-latency-ms`` limits: the p95 of single requests, else the batched time per example."""
    single = entry.cost("single_request")
    return single if single is not None else entry.cost("latency_ms_per_example")


_MEASURES = {
    "max_train_minutes": _Measure("training time", " min", _train_minutes),
    "max_latency_ms": _Measure("latency", " ms", latency_ms),
    "max_memory_mb": _Measure("peak memory", " MiB", lambda entry: entry.cost("peak_memory_mb")),
    "max_labelled_examples": _Measure("labelled examples", "", lambda entry: entry.labelled_examples),
}


@dataclass(frozen=True)
class Recommendation:
    """What the numbers say to use, and why."""

    best: Entry | None
    """Most accurate variant, constraints aside."""
    best_allowed: Entry | None
    """Most accurate variant within the constraints."""
    choice: Entry | None
    """``best_allowed``, or a cheaper variant statistically tied with it."""
    tie_p_value: float | None
    """p-value of ``choice`` against ``best_allowed`` when they differ."""
    excluded: dict[str, list[str]]
    """Variant -> the constraints it breaks."""


def shared_seeds(a: Entry, b: Entry) -> list[int]:
    return sorted(set(a.seeds) & set(b.seeds))


def difference_test(a: Entry, b: Entry) -> str:
    """The name of the test ``difference_p`` uses for this pair."""
    if len(shared_seeds(a, b)) > 1:
        return "paired bootstrap over seeds and test examples"
    return "McNemar exact test"


def paired_rows(a: Entry, b: Entry) -> tuple[list[int], list[list[int]], list[list[int]]] | None:
    """(gold, A's predictions, B's predictions) over the seeds both share, one row per seed; None when the two
    were not scored on the same test examples."""
    seeds = shared_seeds(a, b)
    if not seeds or not a.gold or a.gold != b.gold:
        return None
    rows_a, rows_b = a.predicted_by_seed(seeds), b.predicted_by_seed(seeds)
    if any(len(row) != len(a.gold) for row in (*rows_a, *rows_b)):
        return None
    return a.gold, rows_a, rows_b


def difference_p(a: Entry, b: Entry) -> float | None:
    """p-value of the accuracy difference of two variants on the same test examples, or None if not paired."""
    paired = paired_rows(a, b)
    if paired is None:
        return None
    gold, rows_a, rows_b = paired
    if len(rows_a) == 1:
        return stats.mcnemar_exact(gold, rows_a[0], rows_b[0])
    return stats.paired_seed_bootstrap_p(gold, rows_a, rows_b)


def _cheaper(a: Entry, b: Entry) -> bool:
    """The module's cost order (see the module docstring); unrecorded costs are never cheaper."""
    costs: list[tuple[float, float, float]] = []
    for key, noise in COST_NOISE.items():
        x, y = a.cost(key), b.cost(key)
        if x is None or y is None:
            return False
        costs.append((x, y, noise))
    no_more = all(x <= y + noise for x, y, noise in costs)
    materially_less = any(x <= CHEAPER_RATIO * y and y - x > noise for x, y, noise in costs)
    return no_more and materially_less


def beats_floor(entry: Entry, floor: float | None) -> bool:
    """Whether ``entry`` is more accurate than always answering the majority label (no floor: counted as so)."""
    return floor is None or entry.accuracy is None or entry.accuracy > floor


def recommend(summary: Summary, constraints: Constraints = Constraints()) -> Recommendation:
    """Best overall, best within ``constraints``, and the cheapest variant statistically tied with it."""
    ranked = summary.entries
    excluded = {entry.name: reasons for entry in ranked if (reasons := constraints.violations(entry))}
    allowed = [entry for entry in ranked if entry.name not in excluded]
    best_allowed = allowed[0] if allowed else None
    floor = summary.floor_accuracy
    tied: list[tuple[Entry, float]] = []
    if best_allowed is not None:  # else nothing is allowed and nothing can tie with it
        tied = [
            (entry, p)
            for entry in allowed[1:]
            if _cheaper(entry, best_allowed)
            and (beats_floor(entry, floor) or not beats_floor(best_allowed, floor))  # never a floor-level stand-in for one that learnt
            and (p := difference_p(entry, best_allowed)) is not None
            and p >= SIGNIFICANCE
        ]
    choice, p = min(tied, key=lambda pair: [pair[0].cost(key) for key in COST_NOISE], default=(best_allowed, None))
    return Recommendation(ranked[0] if ranked else None, best_allowed, choice, p, excluded)
