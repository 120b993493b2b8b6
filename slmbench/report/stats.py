"""Statistics of the decision report: bootstrap intervals, McNemar's test and the Pareto front.

Everything works on the per-example predictions stored in trial JSONs, so a report can be
recomputed from a copied run folder alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    return [i for i, (cost, score) in enumerate(points) if not any(c <= cost and s >= score and (c, s) != (cost, score) for c, s in points)]


def _seed_resamples(n_seeds: int, n_examples: int, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(resamples, seeds) seed indices and (resamples, examples) example indices, drawn with replacement."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_seeds, (n_resamples, n_seeds)), rng.integers(0, n_examples, (n_resamples, n_examples))


def seed_bootstrap_ci(
    gold: Sequence[int],
    predicted: Sequence[Sequence[int]],
    metric: Metric,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile interval of the seed-averaged ``metric`` under a bootstrap over seeds *and* test examples.

    ``predicted`` holds one row per seed. Each resample draws seeds with replacement (the spread
    between seeds) and test examples with replacement (the spread of a finite test set), scores
    every drawn seed on the drawn examples and averages. With one seed it is ``bootstrap_ci``.
    """
    rows = np.asarray(predicted)
    if rows.shape[0] == 1:
        return bootstrap_ci(gold, rows[0], metric, n_resamples, confidence, seed)
    gold_array = np.asarray(gold)
    if len(gold_array) < 2:
        return None
    seeds, examples = _seed_resamples(rows.shape[0], len(gold_array), n_resamples, seed)
    drawn = rows[seeds[:, :, None], examples[:, None, :]]  # (resamples, seeds, examples)
    scores = metric(np.broadcast_to(gold_array[examples][:, None, :], drawn.shape), drawn, axis=-1).mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(scores, tail)), float(np.quantile(scores, 1 - tail))


def paired_seed_bootstrap_p(
    gold: Sequence[int],
    predicted_a: Sequence[Sequence[int]],
    predicted_b: Sequence[Sequence[int]],
    n_resamples: int = 2000,
    seed: int = 0,
) -> float:
    """Two-sided p-value that A and B have the same seed-averaged accuracy, paired over examples and seeds.

    Rows of ``predicted_a`` and ``predicted_b`` are the same seeds in the same order. The paired
    bootstrap resamples seeds and test examples together for both strategies and centres the
    resampled differences on zero (the null hypothesis); p is the share at least as far from zero
    as the observed difference.
    """
    gold_array = np.asarray(gold)
    correct = np.asarray(predicted_a) == gold_array, np.asarray(predicted_b) == gold_array
    difference = correct[0].astype(float) - correct[1]  # (seeds, examples)
    observed = difference.mean()
    seeds, examples = _seed_resamples(difference.shape[0], difference.shape[1], n_resamples, seed)
    resampled = difference[seeds[:, :, None], examples[:, None, :]].mean(axis=(1, 2))
    return float(np.mean(np.abs(resampled - observed) >= abs(observed) - 1e-12))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of p-values for the number of comparisons (None stays None).

    Hand-written because neither scipy (``false_discovery_control`` is Benjamini-Hochberg/Yekutieli
    only) nor the project's dependencies offer Holm; statsmodels' ``multipletests`` would add a large
    package for six lines.
    """
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted


def discordance(gold: Sequence[int], predicted_a: Sequence[Sequence[int]], predicted_b: Sequence[Sequence[int]]) -> tuple[float, float]:
    """(psi, delta): the share of test examples exactly one of A and B gets right, and A's accuracy minus B's,
    averaged over the seeds (rows of ``predicted_a`` and ``predicted_b``, the same seeds in the same order)."""
    gold_array = np.asarray(gold)
    correct_a, correct_b = np.asarray(predicted_a) == gold_array, np.asarray(predicted_b) == gold_array
    only_a, only_b = np.mean(correct_a & ~correct_b), np.mean(correct_b & ~correct_a)
    return float(only_a + only_b), float(only_a - only_b)


def _z(alpha: float, power: float) -> tuple[float, float]:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))


def mcnemar_detectable_difference(n: int, psi: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest accuracy difference a paired (McNemar) test on ``n`` examples detects with ``power`` at
    two-sided level ``alpha``, when a share ``psi`` of the examples is right for exactly one of the two.

    Inverts Connor's (1987) sample size for McNemar's test, n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2,
    for d (a difference cannot exceed psi). None when psi is 0 or n is too small for any difference.
    """
    from scipy.optimize import brentq

    if psi <= 0 or n <= 0:
        return None
    z_alpha, z_power = _z(alpha, power)

    def excess(difference: float) -> float:
        return np.sqrt(n) * difference - z_alpha * np.sqrt(psi) - z_power * np.sqrt(max(psi - difference**2, 0.0))

    if excess(psi) < 0:  # a difference is at most the discordant share
        return None
    return float(brentq(excess, 0.0, psi))


def mcnemar_examples_needed(psi: float, difference: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Connor's (1987) number of paired test examples for McNemar's test to detect ``difference`` with
    ``power`` at two-sided ``alpha``, given the discordant share ``psi``; None when undefined."""
    if difference == 0 or psi <= 0 or abs(difference) > psi:
        return None
    z_alpha, z_power = _z(alpha, power)
    return int(np.ceil((z_alpha * np.sqrt(psi) + z_power * np.sqrt(psi - difference**2)) ** 2 / difference**2))


def paired_difference_se(
    gold: Sequence[int],
    predicted_a: Sequence[Sequence[int]],
    predicted_b: Sequence[Sequence[int]],
    metric: Metric,
    n_resamples: int = 1000,
    seed: int = 0,
) -> float:
    """Bootstrap standard error of A's seed-averaged ``metric`` minus B's, resampling test examples (paired)."""
    gold_array, rows_a, rows_b = np.asarray(gold), np.asarray(predicted_a), np.asarray(predicted_b)
    examples = np.random.default_rng(seed).integers(0, len(gold_array), (n_resamples, len(gold_array)))
    drawn_gold = gold_array[examples]
    differences = [
        metric(drawn_gold, row_a[examples], axis=-1) - metric(drawn_gold, row_b[examples], axis=-1) for row_a, row_b in zip(rows_a, rows_b)
    ]
    return float(np.std(np.mean(differences, axis=0), ddof=1))


def detectable_by_se(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest difference a two-sided normal test at ``alpha`` detects with ``power`` given its standard error."""
    z_alpha, z_power = _z(alpha, power)
    return (z_alpha + z_power) * se
