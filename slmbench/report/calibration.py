"""The calibration section: whether a strategy's confidence means what it says.

For every strategy that gives probabilities: expected calibration error (ECE) over equal-width
confidence bins, the Brier score, and a reliability diagram, overall (top label: the confidence of the
predicted label against whether it was right) and per class (one-vs-rest: the probability of the class
against whether the example is of that class). Over several seeds the scores are averaged and the
diagram pools the seeds' predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmbench.report.markdown import code, metric, table, text
from slmbench.report.summary import Entry, Summary

BINS = 10
CONFIDENT = 0.9
"""The report says how often predictions at least this confident were right."""

Bin = tuple[float, float, int]
"""(mean confidence, observed frequency, examples) of one non-empty bin."""


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, bins: int = BINS) -> list[Bin]:
    """Equal-width bins over [0, 1] of ``confidence`` with the share of ``outcome`` (0/1) in each.

    Hand-written: scikit-learn's ``calibration_curve`` drops the bins' sizes, which ECE weighs by.
    """
    index = np.clip((confidence * bins).astype(int), 0, bins - 1)  # a stored 1.00001 or -0.0 stays in range
    return [
        (float(confidence[index == b].mean()), float(outcome[index == b].mean()), int(np.sum(index == b)))
        for b in range(bins)
        if np.any(index == b)
    ]


def expected_calibration_error(points: list[Bin]) -> float:
    """Mean gap between confidence and frequency over the bins, weighted by their sizes."""
    total = sum(count for _, _, count in points)
    return sum(count / total * abs(frequency - confidence) for confidence, frequency, count in points)


@dataclass
class Calibration:
    """A strategy's calibration, scores averaged over its seeds and bins pooled over them."""

    ece: float
    brier: float
    confidence: float
    """Mean confidence of the predicted label."""
    accuracy: float
    confident_share: float
    """Share of predictions with confidence >= CONFIDENT."""
    confident_accuracy: float | None
    """Accuracy of those predictions (None when there are none)."""
    class_ece: dict[str, float]
    class_brier: dict[str, float]
    overall: list[Bin]
    per_class: dict[str, list[Bin]]


def _arrays(entry: Entry, n_labels: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """(gold, predicted, probabilities) per seed, or None when any seed gave no usable probabilities."""
    seeds = []
    for trial in entry.trials:
        predictions = trial.predictions
        if predictions is None or predictions.probabilities is None or not predictions.gold:
            return None
        probabilities = np.asarray(predictions.probabilities, dtype=float)
        if probabilities.ndim != 2 or probabilities.shape[1] != n_labels or not np.all(np.isfinite(probabilities)):
            return None
        seeds.append((np.asarray(predictions.gold), np.asarray(predictions.predicted), probabilities))
    return seeds


def calibration(entry: Entry, labels: list[str], bins: int = BINS) -> Calibration | None:
    """The entry's calibration, or None when it gives no probabilities."""
    seeds = _arrays(entry, len(labels))
    if not seeds:
        return None
    eces: list[float] = []
    briers: list[float] = []
    class_ece: dict[str, list[float]] = {label: [] for label in labels}
    class_brier: dict[str, list[float]] = {label: [] for label in labels}
    pooled: dict[str, list[np.ndarray]] = {"confidence": [], "right": []}
    pooled_class: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {label: ([], []) for label in labels}
    for gold, predicted, probabilities in seeds:
        confidence = probabilities[np.arange(len(gold)), predicted]
        right = (predicted == gold).astype(float)
        pooled["confidence"].append(confidence)
        pooled["right"].append(right)
        eces.append(expected_calibration_error(reliability_bins(confidence, right, bins)))
        briers.append(float(np.mean(np.sum((probabilities - np.eye(len(labels))[gold]) ** 2, axis=1))))
        for k, label in enumerate(labels):
            is_class = (gold == k).astype(float)
            class_ece[label].append(expected_calibration_error(reliability_bins(probabilities[:, k], is_class, bins)))
            class_brier[label].append(float(np.mean((probabilities[:, k] - is_class) ** 2)))
            pooled_class[label][0].append(probabilities[:, k])
            pooled_class[label][1].append(is_class)
    confidence, right = np.concatenate(pooled["confidence"]), np.concatenate(pooled["right"])
    confident = confidence >= CONFIDENT
    return Calibration(
        ece=float(np.mean(eces)),
        brier=float(np.mean(briers)),
        confidence=float(confidence.mean()),
        accuracy=float(right.mean()),
        confident_share=float(confident.mean()),
        confident_accuracy=float(right[confident].mean()) if confident.any() else None,
        class_ece={label: float(np.mean(values)) for label, values in class_ece.items()},
        class_brier={label: float(np.mean(values)) for label, values in class_brier.items()},
        overall=reliability_bins(confidence, right, bins),
        per_class={
            label: reliability_bins(np.concatenate(probability), np.concatenate(outcome), bins)
            for label, (probability, outcome) in pooled_class.items()
        },
    )


def _confident_cell(result: Calibration) -> str:
    """Accuracy of the predictions at least CONFIDENT sure, and their share."""
    if result.confident_accuracy is None:
        return f"no prediction ≥ {CONFIDENT:g}"
    return f"{metric(result.confident_accuracy)} ({result.confident_share:.0%} of predictions)"


def calibration_section(summary: Summary) -> str:
    """ECE, Brier score and reliability diagrams of every strategy with probabilities; empty without any."""
    from slmbench.report.plots import reliability_plot

    labels = summary.labels
    results = {entry.name: result for entry in summary.entries if (result := calibration(entry, labels)) is not None}
    without = [entry.name for entry in summary.entries if entry.name not in results]
    if not results:
        return ""
    reliability_plot(
        {name: result.overall for name, result in results.items()},
        {name: result.per_class for name, result in results.items()},
        {name: result.ece for name, result in results.items()},
        BINS,
        summary.directory / "reliability.png",
    )
    rows = [
        [
            text(name),
            metric(result.ece),
            metric(result.brier),
            metric(result.confidence),
            metric(result.accuracy),
            _confident_cell(result),
        ]
        for name, result in results.items()
    ]
    class_rows = [
        [text(name), *(f"{metric(r.class_ece[label])} / {metric(r.class_brier[label])}" for label in labels)] for name, r in results.items()
    ]
    best = min(results, key=lambda name: results[name].ece)
    parts = [
        "## Calibration",
        f"Can you act on a strategy's confidence, for example send only answers above {CONFIDENT:g} without review? "
        f"A calibrated strategy is right on about 90% of the examples it gives 0.9. Expected calibration error (ECE) is "
        f"the gap between confidence and accuracy averaged over {BINS} equal-width confidence bins, weighted by the "
        "examples in each (0 is perfect); the Brier score is the mean squared error of the probabilities over all classes "
        f"(0 is perfect, 2 the worst). The lowest ECE here is {code(best)}'s ({metric(results[best].ece)}); ECEs a few "
        "hundredths apart are within the noise of a test set this size. "
        "A mean confidence above the accuracy means the strategy is overconfident.",
        table(
            ["strategy", f"ECE ({BINS} bins)", "Brier", "mean confidence", "accuracy", f"accuracy when confidence ≥ {CONFIDENT:g}"],
            rows,
        ),
        "Per class (one-vs-rest: the probability of the class against whether the example is of that class), ECE / Brier:",
        table(["strategy", *(text(label) for label in labels)], class_rows),
        f"![Reliability diagrams, {BINS} bins](reliability.png)",
    ]
    if without:
        parts.append(f"No probabilities, so no calibration: {', '.join(code(name) for name in without)}.")
    if len(summary.seeds) > 1:
        parts.append("Scores are means over the seeds; the diagrams pool the seeds' predictions.")
    return "\n\n".join(parts)
