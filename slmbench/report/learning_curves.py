"""The learning-curves section: test accuracy against the number of labelled train examples, and
where the most accurate strategy changes."""

from __future__ import annotations

from slmbench.report.labels_needed import fitted_points, labels_needed_part
from slmbench.report.markdown import code, metric, table, text
from slmbench.report.summary import Summary


def leader_changes(curves: dict[str, dict[int, float]], flat: dict[str, float]) -> list[tuple[int, str, float]]:
    """(size, most accurate variant, its accuracy) at the smallest size and wherever the leader changes.

    At each size the leader is picked among the variants measured at that size and the flat ones.
    """
    changes: list[tuple[int, str, float]] = []
    for size in sorted({size for points in curves.values() for size in points}):
        scores = {**flat, **{name: points[size] for name, points in curves.items() if size in points}}
        leader = max(sorted(scores), key=lambda name: scores[name])
        if not changes or changes[-1][1] != leader:
            changes.append((size, leader, scores[leader]))
    return changes


def _crossover_sentences(changes: list[tuple[int, str, float]], sizes: list[int]) -> str:
    """Where the most accurate variant changes, as sentences; the size before each change bounds it."""
    (size, first, accuracy), *later = changes
    sentences = f"With {size} labelled train examples the most accurate strategy is {code(first)} ({metric(accuracy)})."
    previous = first
    for size, leader, accuracy in later:
        before = sizes[sizes.index(size) - 1]
        sentences += f" {code(leader)} overtakes {code(previous)} between {before} and {size} examples ({metric(accuracy)} at {size})."
        previous = leader
    if not later:
        sentences += " It stays the most accurate at every size measured."
    return sentences


LABELS_NEEDED_LATER = "### Labels needed\n\nFitted when the run ends (the fits' bootstrap takes a while): this report is rendered mid-run."


def learning_curves_section(summary: Summary, target: float | None = None, fit: bool = True) -> str:
    """The learning-curve figure and table, where the leader changes, and the labels needed to reach
    ``target`` (default: the best accuracy measured; fitted only if ``fit``); empty without curves."""
    from slmbench.report.plots import learning_curve_plot

    curves, flat = summary.curves, summary.flat
    if not curves:
        return ""
    needed, fits, goal = labels_needed_part(summary, target) if fit else (LABELS_NEEDED_LATER, [], 0.0)
    means = {name: {size: point.mean for size, point in points.items()} for name, points in curves.items()}
    bands = {name: {size: (min(p.accuracies), max(p.accuracies)) for size, p in points.items()} for name, points in curves.items()}
    learning_curve_plot(
        means,
        bands,
        flat,
        f"{summary.task}: test accuracy against labelled train examples",
        summary.directory / "learning_curves.png",
        floor=summary.floor_accuracy,
        fits={fit.name: fitted_points(fit) for fit in fits if fit.parameters is not None and fit.problem is None},
        target=goal if fits else None,
    )
    sizes = sorted({size for points in means.values() for size in points})
    n_train = max(sizes)
    rows = [[text(name), *(metric(points.get(size)) for size in sizes)] for name, points in sorted(means.items())]
    rows += [[f"{text(name)} (learns from no example)", *(metric(flat[name]) for _ in sizes)] for name in sorted(flat)]
    headers = ["strategy", *(f"{size} examples" + (" (whole split)" if size == n_train else "") for size in sizes)]
    seeds = " With several seeds each point is their mean and the band their range." if len(summary.seeds) > 1 else ""
    return "\n\n".join(
        [
            "## Learning curves",
            "Each strategy was also given nested, stratified subsets of the train split (a smaller subset is part "
            "of every larger one), with the validation split cut in the same proportion, and scored on the same "
            "test examples. " + _crossover_sentences(leader_changes(means, flat), sizes) + " A difference of a "
            "few points can be noise at this test size: see the confidence intervals in the leaderboard." + seeds,
            "![Test accuracy against labelled train examples](learning_curves.png)",
            table(headers, rows),
            needed,
        ]
    ).rstrip()
