"""Statistics of the decision report: bootstrap intervals, McNemar's test and the Pareto front.

Everything works on the per-example predictions stored in trial JSONs, so a report can be
recomputed from a copied run folder alone.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Metric = Callable[..., np.ndarray]


def accuracy(gold: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
    """Share of correct predictions along ``axis`` (vectorized for the bootstrap)."""
    return np.mean(gold == predicted, axis=axis)


def macro_f1(n_labels: int) -> Metric:
    """Macro-F1 over all ``n_labels`` classes, a class never gold nor predicted scoring 0 (as sklearn)."""

    def statistic(gold: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
        per_class = []
        for label in range(n_labels):
            is_gold, is_predicted = gold == label, predicted == label
            true_positives = np.sum(is_gold & is_predicted, axis=axis)
            denominator = np.sum(is_gold, axis=axis) + np.sum(is_predicted, axis=axis)
            per_class.append(np.where(denominator > 0, 2 * true_positives / np.maximum(denominator, 1), 0.0))
        return np.mean(per_class, axis=0)

    return statistic


def bootstrap_ci(
    gold: Sequence[int],
    predicted: Sequence[int],
    metric: Metric,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``metric`` over test examples; None below two examples."""
    from scipy.stats import bootstrap

    if len(gold) < 2:
        return None
    result = bootstrap(
        (np.asarray(gold), np.asarray(predicted)),
        metric,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mcnemar_exact(gold: Sequence[int], predicted_a: Sequence[int], predicted_b: Sequence[int]) -> float:
    """Two-sided p-value of McNemar's exact test: a binomial test on the discordant examples."""
    from scipy.stats import binomtest

    correct_a = np.asarray(predicted_a) == np.asarray(gold)
    correct_b = np.asarray(predicted_b) == np.asarray(gold)
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(correct_b & ~correct_a))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats: lower or equal cost and higher or equal score, one strictly."""
    points = list(zip(costs, scores))
    return [
        i
        for i, (cost, score) in enumerate(points)
        if not any(c <= cost and s >= score and (c, s) != (cost, score) for c, s in points)
    ]
