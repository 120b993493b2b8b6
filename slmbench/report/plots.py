"""PNG figures of the decision report, drawn with matplotlib's object API (no pyplot global state).

Text from data or users (strategy, label and unit names, titles) goes through ``literal``: control
characters are removed and every ``$`` is escaped, so it is drawn as it is while matplotlib still
renders its own math (the ``10^2`` tick labels of a log axis). Each figure is drawn and saved inside
``rc_context`` with TeX off and math parsing on, whatever the user's matplotlibrc says; the global
rcParams are never changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from slmbench.common.files import NEW_FILE_MODE
from slmbench.report.markdown import metric, one_line

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import PathCollection
    from matplotlib.figure import Figure
    from matplotlib.text import Text

T = TypeVar("T")
_LINESTYLES = ("-", "--", "-.", ":")
LABEL_ITERATIONS = 500
"""adjustText's iteration limit: a fixed count (not its default time limit) keeps the figures reproducible."""
COLUMN_STEP = 9.5
"""Points between the labels of a column (7-point text)."""


def literal(value: Any) -> str:
    """``value`` on one line, drawn literally by matplotlib: control characters removed, ``$`` escaped."""
    return one_line(value).replace("$", r"\$")


def _literal_keys(values: dict[str, T]) -> dict[str, T]:
    return {literal(name): value for name, value in values.items()}


def _figure(width: float, height: float) -> Figure:
    """A figure with its own Agg canvas (what adjustText and the tests measure text with)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(path: Path, draw: Callable[[], Figure]) -> Path:
    """Draws the figure and writes it to ``path`` with TeX off (user text is no TeX source) and math text on (for
    matplotlib's own labels), whatever the user's matplotlibrc says; for this figure only. The PNG is written
    beside ``path`` and renamed over it, so a reader (a report opened mid-run) never sees half of one."""
    import os
    import tempfile

    import matplotlib

    with matplotlib.rc_context({"text.usetex": False, "text.parse_math": True}):
        figure = draw()
        handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                figure.savefig(file, format="png")
            os.chmod(scratch, NEW_FILE_MODE)
            os.replace(scratch, path)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise
    return path


def _floor_line(axes: Axes, floor: float | None) -> None:
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
    ``floor`` (the majority-class accuracy) is drawn as a grey line. No label overlaps another: adjustText
    moves them apart (a grey line joins a moved label to its point), or, where a cluster is too dense for
    that, all labels stand in a column right of the axes, each joined to its point.
    """
    return _save(path, lambda: _draw_tradeoff(names, costs, scores, front, cost_label, title, floor))


def _draw_tradeoff(
    names: Sequence[str],
    costs: Sequence[float],
    scores: Sequence[float],
    front: Sequence[int],
    cost_label: str,
    title: str,
    floor: float | None,
) -> Figure:
    figure = _figure(6.4, 4.6)
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
    points = axes.scatter(costs, scores, c=colours, zorder=3)
    if min(costs) > 0:
        axes.set_xscale("log")
    else:
        axes.set_xscale("symlog", linthresh=1)
    axes.set_xlabel(literal(cost_label))
    axes.set_ylabel("test accuracy")
    axes.margins(x=0.15, y=0.12)
    axes.grid(alpha=0.3)
    axes.set_title(literal(title), loc="left")  # over the axes and any label column: a long title is never cut
    figure.legend(loc="outside lower center", ncols=2, fontsize=8)
    _label_points(figure, axes, points, [literal(name) for name in names], costs, scores)
    return figure


def _label_points(figure: Figure, axes: Axes, points: PathCollection, names: list[str], xs: Sequence[float], ys: Sequence[float]) -> None:
    """Labels every point by name: beside it where adjustText keeps all labels apart, else in a column."""
    texts, lines = _placed_labels(axes, points, names, xs, ys)
    if _overlapping(texts):
        for artist in [*texts, *lines]:
            artist.remove()
        _label_column(figure, axes, names, xs, ys)


def _label_column(figure: Figure, axes: Axes, names: list[str], xs: Sequence[float], ys: Sequence[float]) -> None:
    """The names one under the other right of the axes, highest point first, each joined to its point by a line;
    the figure grows taller where the column needs it."""
    from matplotlib.patches import ConnectionPatch
    from matplotlib.transforms import offset_copy

    figure.set_figheight(max(figure.get_figheight(), 1.8 + len(names) * COLUMN_STEP / 72))
    for row, i in enumerate(sorted(range(len(names)), key=lambda i: -ys[i])):
        place = offset_copy(axes.transAxes, fig=figure, x=12, y=-row * COLUMN_STEP, units="points")
        axes.text(1, 1, names[i], transform=place, va="center", fontsize=7)
        line = ConnectionPatch(
            (xs[i], ys[i]), (1, 1), axes.transData, place, arrowstyle="-", color="dimgrey", linewidth=0.6, shrinkA=3, shrinkB=1
        )
        axes.add_artist(line)
        line.set(clip_on=False, in_layout=False)


def _placed_labels(
    axes: Axes, points: PathCollection, labels: list[str], xs: Sequence[float], ys: Sequence[float]
) -> tuple[list[Text], list[Any]]:
    """The labels at their points, moved by adjustText off each other and the markers, inside the axes; the lines
    joining moved labels to their points."""
    from adjustText import adjust_text

    texts = [axes.text(x, y, label, fontsize=8, in_layout=False) for label, x, y in zip(labels, xs, ys)]
    _, lines = adjust_text(
        texts,
        objects=points,
        ax=axes,
        expand=(1.15, 1.3),
        force_text=(0.3, 0.5),
        time_lim=None,
        iter_lim=LABEL_ITERATIONS,
        min_arrow_len=2,
        arrowprops=dict(arrowstyle="-", color="dimgrey", linewidth=0.7, shrinkA=1, shrinkB=3),
    )
    return texts, lines


def _overlapping(texts: list[Text]) -> bool:
    boxes = [text.get_window_extent() for text in texts]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def f1_heatmap(strategies: Sequence[str], labels: Sequence[str], f1: Sequence[Sequence[float]], path: Path) -> Path:
    """Heatmap of per-class F1 (``f1[label][strategy]``, NaN when missing), values written in."""
    return _save(path, lambda: _draw_f1_heatmap(strategies, labels, f1))


def _draw_f1_heatmap(strategies: Sequence[str], labels: Sequence[str], f1: Sequence[Sequence[float]]) -> Figure:
    strategies, labels = [_broken(literal(name)) for name in strategies], [literal(label) for label in labels]
    # Room below the axes for the rotated names: about half of the longest line's width, at 30 degrees.
    below = 0.04 * max((len(line) for name in strategies for line in name.split("\n")), default=0)
    figure = _figure(1.6 + 1.1 * len(strategies), 1.2 + 0.35 * len(labels) + below)
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
    return figure


def learning_curve_plot(
    curves: dict[str, dict[int, float]],
    bands: dict[str, dict[int, tuple[float, float]]],
    flat: dict[str, float],
    title: str,
    path: Path,
    floor: float | None = None,
    fits: dict[str, list[tuple[float, float]]] | None = None,
    target: float | None = None,
) -> Path:
    """Accuracy against train examples (log axis), one line per strategy with its (min, max) band over
    seeds where it has one; ``flat`` ones as dashed levels; ``floor`` (majority class) as a grey line;
    ``fits`` (points of a fitted curve per strategy, beyond the measured sizes too) dashed in the
    strategy's colour; ``target`` accuracy as a dotted line."""
    return _save(path, lambda: _draw_learning_curves(curves, bands, flat, title, floor, fits or {}, target))


def _draw_learning_curves(
    curves: dict[str, dict[int, float]],
    bands: dict[str, dict[int, tuple[float, float]]],
    flat: dict[str, float],
    title: str,
    floor: float | None,
    fits: dict[str, list[tuple[float, float]]],
    target: float | None,
) -> Figure:
    curves, bands, flat, fits = _literal_keys(curves), _literal_keys(bands), _literal_keys(flat), _literal_keys(fits)
    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    _floor_line(axes, floor)
    colours = {}
    for name, points in sorted(curves.items()):
        sizes = sorted(points)
        (line,) = axes.plot(sizes, [points[size] for size in sizes], marker="o", label=name)
        colours[name] = line.get_color()
        low, high = zip(*(bands.get(name, {}).get(size, (points[size], points[size])) for size in sizes))
        if low != high:
            axes.fill_between(sizes, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    for name, fitted in sorted(fits.items()):
        axes.plot(*zip(*sorted(fitted)), linestyle="--", linewidth=1.2, color=colours.get(name), label=f"{name} (fitted)")
    for name, accuracy in sorted(flat.items()):
        axes.axhline(accuracy, linestyle="--", color="grey", linewidth=1)
        axes.annotate(
            name, (0.01, accuracy), xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", fontsize=8, color="grey"
        )
    if target is not None:
        axes.axhline(target, linestyle=":", color="black", linewidth=1.2, label="target accuracy")
    axes.set_xscale("log")
    axes.set_xlabel("labelled train examples")
    axes.set_ylabel("test accuracy")
    axes.grid(alpha=0.3)
    axes.set_title(literal(title))
    axes.legend(loc="lower right", fontsize=8)
    return figure


def reliability_plot(
    overall: dict[str, list[tuple[float, float, int]]],
    per_class: dict[str, dict[str, list[tuple[float, float, int]]]],
    ece: dict[str, float],
    bins: int,
    path: Path,
) -> Path:
    """Reliability diagrams: one small panel per strategy (names in the order of `overall`), each with the
    diagonal (perfect calibration), the top-label curve (mean confidence, accuracy, examples in the bin) as
    markers sized by the bin's count joined by a line, and each class's one-vs-rest curve
    (mean predicted probability, observed frequency, count) as thin lines (legend with class names once);
    panel title: strategy name and its ECE (e.g. "lora — ECE 0.083", "—" where ``ece`` has none). Axes 0..1,
    equal aspect. Figure title mentions `bins` equal-width bins. Empty bins are left out."""
    return _save(path, lambda: _draw_reliability(overall, per_class, ece, bins))


def _draw_reliability(
    overall: dict[str, list[tuple[float, float, int]]],
    per_class: dict[str, dict[str, list[tuple[float, float, int]]]],
    ece: dict[str, float],
    bins: int,
) -> Figure:
    classes = list(dict.fromkeys(label for curves in per_class.values() for label in curves))
    most = max((count for points in overall.values() for _, _, count in points), default=1) or 1
    columns = min(len(overall), 4) or 1
    rows = math.ceil(len(overall) / columns) or 1
    figure = _figure(2.2 + 2.5 * columns, max(1.1 + 2.45 * rows, 0.8 + 0.19 * len(classes)))
    panels = list(figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).flat)
    for axes, (name, points) in zip(panels, overall.items()):
        _reliability_panel(axes, points, per_class.get(name, {}), classes, most)
        axes.set_title(_panel_title(literal(name), metric(ece.get(name))), fontsize=9 if len(name) <= PANEL_NAME_CHARACTERS else 8)
    for axes, above in zip(panels[len(overall) :], panels[len(overall) - columns :]):
        axes.set_visible(False)
        above.tick_params(labelbottom=True)  # the x axis of a panel with none below it
    figure.supxlabel("confidence (top label) or predicted probability (class)", fontsize=9)
    figure.supylabel("accuracy or observed frequency", fontsize=9)
    figure.suptitle(f"Reliability diagrams ({bins} equal-width confidence bins)", fontsize=10)
    figure.legend(*panels[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    return figure


PANEL_NAME_CHARACTERS = 28
"""Longer than this, a sweep variant's name (``encoder-finetune[embedding_model=all-mpnet-base-v2]``)
breaks before its bracket and its ECE goes on a line of its own, so neighbouring panels' titles do
not run into each other."""


def _broken(name: str) -> str:
    """``name``, broken before its bracket when longer than ``PANEL_NAME_CHARACTERS`` (a sweep variant's)."""
    return name.replace("[", "\n[", 1) if len(name) > PANEL_NAME_CHARACTERS else name


def _panel_title(name: str, ece: str) -> str:
    return f"{name} — ECE {ece}" if len(name) <= PANEL_NAME_CHARACTERS else f"{_broken(name)}\nECE {ece}"


def _reliability_panel(
    axes: Axes, points: list[tuple[float, float, int]], per_class: dict[str, list[tuple[float, float, int]]], classes: list[str], most: int
) -> None:
    """One strategy's diagram; every class gets a line (empty where it has none) so all panels share one legend."""
    confidence, accuracy, counts = _occupied(points)
    axes.plot(confidence, accuracy, color="black", linewidth=1.2, zorder=3, label="top label (marker area: examples)")
    axes.scatter(confidence, accuracy, s=[6 + 60 * count / most for count in counts], color="black", zorder=4)
    axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--", label="perfect calibration")
    for label, (colour, linestyle) in zip(classes, _styles(len(classes))):
        probability, frequency, _ = _occupied(per_class.get(label, []))
        axes.plot(probability, frequency, color=colour, linestyle=linestyle, linewidth=0.8, alpha=0.8, label=literal(label))
    ticks, minor = [0, 0.5, 1], [0.25, 0.75]
    axes.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", xticks=ticks, yticks=ticks)
    axes.set_xticklabels(["0", "0.5", "1"])  # short, so neighbouring panels' "1" and "0" never touch
    axes.set_xticks(minor, minor=True)
    axes.set_yticks(minor, minor=True)
    axes.grid(alpha=0.3, which="both")


def _occupied(points: list[tuple[float, float, int]]) -> tuple[list[float], list[float], list[int]]:
    """The (x, y, count) columns of the bins that hold examples, in order of x."""
    kept = sorted(point for point in points if point[2] > 0 and math.isfinite(point[0]) and math.isfinite(point[1]))
    return [x for x, _, _ in kept], [y for _, y, _ in kept], [count for _, _, count in kept]


def _styles(count: int) -> list[tuple[Any, str]]:
    """``count`` distinguishable (colour, linestyle) pairs: up to ten, the tab10 colours; up to twenty, tab20's (dark
    and light of each hue); beyond, those again dashed, and so on. Solid for as long as colours last, so a line style
    never suggests a grouping the data does not have."""
    from matplotlib import colormaps

    palette, colours = (colormaps["tab10"], 10) if count <= 10 else (colormaps["tab20"], 20)
    return [(palette(i % colours), _LINESTYLES[i // colours % len(_LINESTYLES)]) for i in range(count)]


def cost_plot(
    build: dict[str, float],
    per_prediction: dict[str, float],
    unit: str,
    title: Sequence[str],
    path: Path,
    volumes: tuple[float, float] = (1.0, 1e7),
) -> Path:
    """Total cost (``build`` + ``per_prediction`` * predictions, in ``unit``) against the number of predictions
    over ``volumes``, log-log, one line per strategy (tab10 colours, then again dashed...), legend on the right.
    A strategy that costs nothing is drawn a decade below the cheapest cost and says so in the legend. ``title``
    is drawn one line per item, over the axes only: a single long line would run into the legend."""
    return _save(path, lambda: _draw_cost(build, per_prediction, unit, title, volumes))


def _draw_cost(
    build: dict[str, float], per_prediction: dict[str, float], unit: str, title: Sequence[str], volumes: tuple[float, float]
) -> Figure:
    import numpy as np

    grid = np.geomspace(*volumes, 200)
    totals = {name: build.get(name, 0.0) + per_prediction.get(name, 0.0) * grid for name in dict.fromkeys([*build, *per_prediction])}
    positive = [total[total > 0].min() for total in totals.values() if (total > 0).any()]
    floor = min(positive, default=1.0) / 10  # where a strategy that costs nothing is drawn (a log axis has no zero)
    labels = [_broken(literal(name)) for name in totals]
    broken = sum("\n" in label for label in labels)  # legend entries on two lines
    figure = _figure(7.4, max(4.2, 1.2 + 0.19 * len(totals) + 0.13 * broken))
    axes = figure.add_subplot()
    for total, label, (colour, linestyle) in zip(totals.values(), labels, _styles(len(totals))):
        free = " (costs nothing)" if not (total > 0).any() else ""
        axes.plot(grid, np.maximum(total, floor), color=colour, linestyle=linestyle, linewidth=1.5, label=label + free)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("predictions")
    axes.set_ylabel(f"total cost ({literal(unit)})")
    axes.grid(alpha=0.3)
    axes.set_title("\n".join(literal(line) for line in title), fontsize=10)
    figure.legend(loc="outside right upper", fontsize=8)
    return figure
