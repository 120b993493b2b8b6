"""PNG figures of the decision report, drawn with matplotlib's object API (no pyplot global state).

Text from data or users (strategy and label names) is drawn literally: math (``$...$``) is off, and
control characters are removed (no font has a glyph for ESC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from slmbench.report.markdown import one_line


def _figure(width: float, height: float):
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams["text.parse_math"] = False
    matplotlib.rcParams["text.usetex"] = False
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _floor_line(axes, floor: float | None) -> None:
    if floor is not None:
        axes.axhline(floor, color="grey", linewidth=1, label="majority-class floor")


def tradeoff_plot(
    names: Sequence[str],
    costs: Sequence[float],
    scores: Sequence[float],
    front: Sequence[int],
    cost_label: str,
    title: str,
    path: Path,
    floor: float | None = None,
) -> Path:
    """Accuracy against a cost on a log axis, every point labelled and the Pareto ``front`` (indices) drawn.

    A zero cost (a strategy that trains nothing) switches the axis to symlog so the point stays visible;
    ``floor`` (the majority-class accuracy) is drawn as a grey line.
    """
    names, title = [one_line(name) for name in names], one_line(title)
    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    _floor_line(axes, floor)
    front = sorted(front, key=lambda i: costs[i])
    axes.step(
        [costs[i] for i in front],
        [scores[i] for i in front],
        where="post",
        color="tab:orange",
        linestyle="--",
        label="Pareto front (nothing is cheaper and better)",
    )
    colours = ["tab:orange" if i in front else "tab:blue" for i in range(len(names))]
    axes.scatter(costs, scores, c=colours, zorder=3)
    for name, cost, score in zip(names, costs, scores):
        axes.annotate(name, (cost, score), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if min(costs) > 0:
        axes.set_xscale("log")
    else:
        axes.set_xscale("symlog", linthresh=1)
    axes.set_xlabel(cost_label)
    axes.set_ylabel("test accuracy")
    axes.margins(x=0.15, y=0.12)
    axes.grid(alpha=0.3)
    axes.set_title(title)
    axes.legend(loc="best", fontsize=8)
    figure.savefig(path)
    return path


def f1_heatmap(strategies: Sequence[str], labels: Sequence[str], f1: Sequence[Sequence[float]], path: Path) -> Path:
    """Heatmap of per-class F1 (``f1[label][strategy]``, NaN when missing), values written in."""
    strategies, labels = [one_line(name) for name in strategies], [one_line(label) for label in labels]
    figure = _figure(1.6 + 1.1 * len(strategies), 1.2 + 0.35 * len(labels))
    axes = figure.add_subplot()
    image = axes.imshow(f1, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(len(strategies)), strategies, rotation=30, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    for j, row in enumerate(f1):
        for i, value in enumerate(row):
            if not math.isnan(value):
                colour = "white" if value < 0.6 else "black"
                axes.text(i, j, f"{value:.2f}", ha="center", va="center", fontsize=8, color=colour)
    axes.set_title("F1 per class")
    figure.colorbar(image, ax=axes, label="F1")
    figure.savefig(path)
    return path


def learning_curve_plot(
    curves: dict[str, dict[int, float]],
    bands: dict[str, dict[int, tuple[float, float]]],
    flat: dict[str, float],
    title: str,
    path: Path,
    floor: float | None = None,
) -> Path:
    """Accuracy against train examples (log axis), one line per strategy with its (min, max) band over
    seeds where it has one; ``flat`` ones as dashed levels; ``floor`` (majority class) as a grey line."""
    curves, bands = {one_line(name): points for name, points in curves.items()}, {one_line(name): b for name, b in bands.items()}
    flat, title = {one_line(name): accuracy for name, accuracy in flat.items()}, one_line(title)
    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    _floor_line(axes, floor)
    for name, points in sorted(curves.items()):
        sizes = sorted(points)
        (line,) = axes.plot(sizes, [points[size] for size in sizes], marker="o", label=name)
        low, high = zip(*(bands.get(name, {}).get(size, (points[size], points[size])) for size in sizes))
        if low != high:
            axes.fill_between(sizes, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    for name, accuracy in sorted(flat.items()):
        axes.axhline(accuracy, linestyle="--", color="grey", linewidth=1)
        axes.annotate(
            name, (0.01, accuracy), xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", fontsize=8, color="grey"
        )
    axes.set_xscale("log")
    axes.set_xlabel("labelled train examples")
    axes.set_ylabel("test accuracy")
    axes.grid(alpha=0.3)
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    figure.savefig(path)
    return path
