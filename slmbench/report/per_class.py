"""The per-class section: F1 per class and strategy (table and heatmap), then the best strategy's
confusion matrix and the test examples it gets wrong."""

from __future__ import annotations

import math
from typing import Any

from slmbench.report import markdown as md
from slmbench.report.markdown import MISSING, code, metric, table, text
from slmbench.report.summary import Summary, ok_metrics

MAX_MATRIX_LABELS = 12
"""Above this many classes the confusion matrix is summarised as its most frequent confusions."""
MAX_WRONG_EXAMPLES = 5
MAX_TEXT_CHARS = 160


def per_class_section(summary: Summary) -> str:
    """Per-class F1 of every strategy, then the best one's confusions and mistakes; empty without results."""
    from slmbench.report.plots import f1_heatmap

    ranked, labels = summary.entries, summary.labels
    if not ranked or not labels:
        return ""
    best = ranked[0].first
    best_metrics = ok_metrics(best)
    per_class = best_metrics.per_class
    rows = [
        [text(label), per_class[label].support if label in per_class else MISSING, *(metric(entry.f1(label)) for entry in ranked)]
        for label in labels
    ]
    values = [[_nan_if_missing(e.f1(label)) for e in ranked] for label in labels]
    f1_heatmap([entry.name for entry in ranked], labels, values, summary.directory / "per_class_f1.png")
    seed_note = f" (seed {best.seed})" if len(summary.seeds) > 1 else ""
    parts = [
        "## Per-class results",
        "F1 on each class (rows) for each strategy (columns, in leaderboard order); support is the number of test examples of the class.",
        table(["class", "support", *(text(entry.name) for entry in ranked)], rows),
        "![F1 per class and strategy](per_class_f1.png)",
        _confusion(ranked[0].name + seed_note, best_metrics.confusion_matrix, labels),
        _wrong_examples(summary, ranked[0].name + seed_note, best),
    ]
    return "\n\n".join(part for part in parts if part)


def _nan_if_missing(value: float | None) -> float:
    """An F1 for the heatmap, which draws NaN as an empty cell."""
    return math.nan if value is None else value


def _confusion(name: str, matrix: list[list[int]], labels: list[str]) -> str:
    if not matrix or len(matrix) != len(labels):
        return ""
    title = f"### Confusion matrix of {code(name)}"
    if len(labels) > MAX_MATRIX_LABELS:
        return f"{title}\n\n{_top_confusions(matrix, labels)}"
    rows = [
        [f"**{text(gold)}**", *(f"**{n}**" if g == p else n for p, n in enumerate(row))]
        for g, (gold, row) in enumerate(zip(labels, matrix))
    ]
    explanation = "Rows are the true classes, columns the predicted ones; the diagonal (bold) is correct."
    return f"{title}\n\n{explanation}\n\n{table(['gold ↓ / predicted →', *map(text, labels)], rows)}"


def _top_confusions(matrix: list[list[int]], labels: list[str], top: int = 10) -> str:
    """The most frequent (gold, predicted) mistakes: a full matrix would not fit on a page."""
    mistakes = [(n, labels[g], labels[p]) for g, row in enumerate(matrix) for p, n in enumerate(row) if g != p and n]
    rows = [[text(gold), text(predicted), n] for n, gold, predicted in sorted(mistakes, key=lambda m: -m[0])[:top]]
    return f"Its {len(rows)} most frequent confusions ({len(labels)} classes are too many for a full matrix):\n\n" + table(
        ["gold", "predicted", "test examples"], rows
    )


def _wrong_examples(summary: Summary, name: str, best: Any) -> str:
    texts, labels, predictions = summary.test_texts, summary.labels, best.predictions
    gold, predicted = predictions.gold, predictions.predicted
    if not texts or len(texts) != len(gold) or len(predicted) != len(gold):
        return ""
    wrong = [i for i, (g, p) in enumerate(zip(gold, predicted)) if g != p]
    if not wrong:
        return ""
    probabilities = predictions.probabilities if predictions.probabilities and len(predictions.probabilities) == len(texts) else None
    if probabilities:
        wrong.sort(key=lambda i: -probabilities[i][predicted[i]])
    rows = [
        [
            text(md.shorten(texts[i], MAX_TEXT_CHARS)),
            text(labels[gold[i]]),
            text(labels[predicted[i]]),
            *([metric(probabilities[i][predicted[i]])] if probabilities else []),
        ]
        for i in wrong[:MAX_WRONG_EXAMPLES]
    ]
    headers = ["test text", "gold", "predicted"] + (["confidence"] if probabilities else [])
    order = "most confident mistakes first" if probabilities else "in test order"
    return f"### Test examples {code(name)} gets wrong\n\n{len(rows)} of its {len(wrong)} mistakes, {order}:\n\n{table(headers, rows)}"
