"""The report's figures (slmbench.report.plots), checked as they were drawn when saved: tick labels, literal
names, labels kept apart, the new figures' content, and the global rcParams left alone."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.text import Text

from slmbench.report import plots

HOSTILE_RC = {"text.usetex": True, "text.parse_math": False}
"""A user's matplotlibrc: TeX (not installed here, so it would fail) and no math (raw ``$10^{2}$`` ticks)."""
DOLLARS = "cost$5$per\x07"
"""A strategy name with dollars (no math) and a control character (removed)."""
SHOWN = "cost$5$per"
CLASSES = ["negative", "neutral", "positive", "mixed$feelings"]
LITERAL_DOLLARS = re.compile(r"cost\$5\$per|mixed\$feelings")
"""The names with dollars drawn (as they should be): the rest of a tick label shows no ``$``."""
NAMES = [
    "full-finetune",
    "qlora",
    "lora",
    "dora",
    "adapters",
    "prompt-tuning",
    "embedding-classifier",
    "zero-shot",
    "few-shot",
    "rag",
    "knn-vote",
    "encoder-finetune",
    "ensemble",
    DOLLARS,
]
TRAIN_SECONDS = [3100.0, 905.0, 920.0, 890.0, 880.0, 410.0, 12.0, 0.0, 0.0, 3.0, 2.5, 600.0, 5000.0, 40.0]
ACCURACY = [0.91, 0.884, 0.889, 0.893, 0.887, 0.71, 0.83, 0.42, 0.55, 0.68, 0.74, 0.9, 0.92, 0.61]
"""qlora, lora, dora and adapters within 3% of each other on both axes; zero-shot and few-shot train nothing (symlog)."""
BINS = 10


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures saved by the test, in order (saving draws them: what is checked is what the PNG shows)."""
    figures: list[Figure] = []
    save = Figure.savefig

    def savefig(figure: Figure, *args, **kwargs) -> None:
        figures.append(figure)
        save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def tradeoff(path: Path, names: list[str] = NAMES, costs: list[float] = TRAIN_SECONDS, scores: list[float] = ACCURACY) -> Path:
    front = [i for i, (c, s) in enumerate(zip(costs, scores)) if not any(c2 <= c and s2 > s for c2, s2 in zip(costs, scores))]
    return plots.tradeoff_plot(
        names, costs, scores, front, "training time (s)", "sst2: test accuracy against training time", path, floor=0.5
    )


def latency(path: Path) -> Path:
    """The latency trade-off: every cost positive, so a log axis."""
    return tradeoff(path, costs=[max(cost, 0.1) * 0.01 + 0.3 for cost in TRAIN_SECONDS])


def heatmap(path: Path) -> Path:
    f1 = [[0.1 * ((i + j) % 10) if (i + j) % 7 else float("nan") for i in range(len(NAMES[:6]))] for j in range(len(CLASSES))]
    return plots.f1_heatmap([*NAMES[:5], DOLLARS], CLASSES, f1, path)


def learning(path: Path, **extra) -> Path:
    curves = {"lora": {50: 0.6, 200: 0.74, 800: 0.82}, "knn-vote": {50: 0.55, 200: 0.6, 800: 0.66}, DOLLARS: {50: 0.5, 800: 0.58}}
    bands = {"lora": {50: (0.57, 0.63), 200: (0.72, 0.76), 800: (0.81, 0.83)}}
    return plots.learning_curve_plot(curves, bands, {"zero-shot": 0.52}, "sst2: learning curves", path, floor=0.4, **extra)


FITS = {"lora": [(size, 0.9 - 0.9 * size**-0.3) for size in (50, 100, 400, 1600, 6400, 25600)]}


def learning_with_fits(path: Path) -> Path:
    return learning(path, fits=FITS, target=0.85)


def calibration(bias: float, shift: int) -> list[tuple[float, float, int]]:
    """Top-label bins from 0.4 up: (mean confidence, accuracy, examples); one bin empty."""
    return [((b + 0.5) / BINS, (b + 0.5) / BINS - bias, 0 if b == 5 else 20 * (b - 3) + shift) for b in range(4, BINS)]


def one_vs_rest(shift: float) -> list[tuple[float, float, int]]:
    return [((b + 0.5) / BINS, min(1.0, max(0.0, (b + 0.5) / BINS + shift * (-1) ** b)), 30 + b) for b in range(BINS)]


RELIABILITY_NAMES = ["zero-shot", "few-shot", "lora", "qlora", "full-finetune", DOLLARS]


def reliability(path: Path) -> Path:
    overall = {name: calibration(0.03 * i, i) for i, name in enumerate(RELIABILITY_NAMES)}
    per_class = {name: {label: one_vs_rest(0.02 * j) for j, label in enumerate(CLASSES)} for name in RELIABILITY_NAMES}
    ece = {name: 0.083 if name == "lora" else 0.01 * i for i, name in enumerate(RELIABILITY_NAMES)}
    return plots.reliability_plot(overall, per_class, ece, BINS, path)


COST_NAMES = [f"strategy-{i}" for i in range(19)] + [DOLLARS]
BUILD = {name: 0.0 if i % 5 == 0 else 2.0**i for i, name in enumerate(COST_NAMES)}
PER_PREDICTION = {name: 1e-6 * (i + 1) for i, name in enumerate(COST_NAMES)}
PER_PREDICTION["strategy-0"] = 0.0  # nothing to build and nothing per prediction: free


def cost(path: Path) -> Path:
    return plots.cost_plot(BUILD, PER_PREDICTION, "USD", ("sst2", "total cost against predictions"), path)


PLOTS: dict[str, Callable[[Path], Path]] = {
    "tradeoff": tradeoff,
    "latency": latency,
    "f1_heatmap": heatmap,
    "learning_curve": learning,
    "learning_curve_fits": learning_with_fits,
    "reliability": reliability,
    "cost": cost,
}


def shown(text: Text) -> str:
    """What ``text`` shows: its string as drawn, less any math (mathtext renders it; its source never shows)."""
    string, math = text._preprocess_math(text.get_text())
    return re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", string) if math else string


def texts(figure: Figure) -> Iterator[Text]:
    return (text for text in figure.findobj(Text) if text.get_visible() and text.get_text())


def draw(plot: str, path: Path, saved: list[Figure]) -> Figure:
    assert PLOTS[plot](path) == path
    return saved[-1]


@pytest.mark.parametrize("rc", [{}, HOSTILE_RC], ids=["default-rc", "usetex-no-math-rc"])
@pytest.mark.parametrize("plot", PLOTS)
def test_tick_labels_show_numbers_not_math_source(plot: str, rc: dict, saved: list[Figure], tmp_path: Path) -> None:
    with matplotlib.rc_context(rc):
        figure = draw(plot, tmp_path / "figure.png", saved)
        for axes in (axes for axes in figure.axes if axes.get_visible()):
            for axis in (axes.xaxis, axes.yaxis):
                labels = axis.get_ticklabels()
                source = [shown(label) for label in labels if re.search(r"\$|mathdefault", LITERAL_DOLLARS.sub("", shown(label)))]
                assert not source, f"{plot}: tick labels show math source"
                if axis.get_scale() != "linear":
                    assert any(label.get_text() for label in labels), f"{plot}: a log axis without tick labels"


@pytest.mark.parametrize("plot", PLOTS)
def test_names_are_drawn_literally(plot: str, saved: list[Figure], tmp_path: Path) -> None:
    drawn = [shown(text) for text in texts(draw(plot, tmp_path / "figure.png", saved))]
    assert any(SHOWN in text for text in drawn), drawn
    assert not [text for text in drawn if re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)]


@pytest.mark.parametrize("plot", PLOTS)
def test_the_png_is_the_figure(plot: str, saved: list[Figure], tmp_path: Path) -> None:
    with matplotlib.rc_context(HOSTILE_RC):
        figure = draw(plot, tmp_path / "figure.png", saved)
    image = imread(tmp_path / "figure.png")
    width, height = figure.get_size_inches() * figure.dpi
    assert image.shape == (round(height), round(width), 4)
    assert image[..., :3].std() > 0.05


def test_global_rc_params_stay_as_they_were(tmp_path: Path) -> None:
    keys = ("text.parse_math", "text.usetex")
    for rc in ({}, HOSTILE_RC):
        with matplotlib.rc_context(rc):
            before = {key: matplotlib.rcParams[key] for key in keys}
            for name, plot in PLOTS.items():
                plot(tmp_path / f"{name}.png")
                assert {key: matplotlib.rcParams[key] for key in keys} == before, name


def label_boxes(figure: Figure, names: list[str]) -> list:
    """The window extents of the texts showing ``names`` (those strategy labels, none other)."""
    wanted = {name.replace("\x07", "") for name in names}
    labels = [text for text in texts(figure) if shown(text) in wanted]
    assert sorted(shown(text) for text in labels) == sorted(wanted)
    return [Text.get_window_extent(text) for text in labels]  # with the figure's renderer; an annotation's arrow left out


def assert_apart_and_inside(figure: Figure, names: list[str]) -> None:
    boxes = label_boxes(figure, names)
    overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    assert not overlapping
    assert all(
        figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1 and figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1 for box in boxes
    )


def test_crowded_tradeoff_labels_do_not_overlap(saved: list[Figure], tmp_path: Path) -> None:
    assert_apart_and_inside(draw("tradeoff", tmp_path / "figure.png", saved), NAMES)


def test_a_cluster_too_dense_to_label_in_place_is_labelled_in_a_column(saved: list[Figure], tmp_path: Path) -> None:
    names = [f"lora-rank-{rank}-alpha-{2 * rank}" for rank in range(1, 17)] + ["zero-shot"]
    costs = [900.0 + 3 * i for i in range(16)] + [0.5]
    scores = [0.88 + 0.0005 * i for i in range(16)] + [0.3]
    tradeoff(tmp_path / "figure.png", names, costs, scores)
    figure = saved[-1]
    assert_apart_and_inside(figure, names)
    right = figure.axes[0].get_window_extent().x1
    assert all(box.x0 > right for box in label_boxes(figure, names)), "the column is right of the axes"


def test_learning_curve_fits_extend_in_the_strategy_colour(saved: list[Figure], tmp_path: Path) -> None:
    axes = draw("learning_curve_fits", tmp_path / "figure.png", saved).axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    fitted, measured = lines["lora (fitted)"], lines["lora"]
    assert fitted.get_color() == measured.get_color() and fitted.get_linestyle() == "--"
    assert list(fitted.get_xdata()) == [size for size, _ in FITS["lora"]]
    assert max(fitted.get_xdata()) > max(measured.get_xdata()) and axes.get_xlim()[1] > 25600
    assert lines["target accuracy"].get_linestyle() == ":" and list(lines["target accuracy"].get_ydata()) == [0.85, 0.85]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert "target accuracy" in legend and "lora (fitted)" in legend


def test_learning_curve_without_fits_is_as_before(saved: list[Figure], tmp_path: Path) -> None:
    axes = draw("learning_curve", tmp_path / "figure.png", saved).axes[0]
    labels = {line.get_label() for line in axes.get_lines()}
    assert {"lora", "knn-vote", "majority-class floor"} <= labels
    assert not {label for label in labels if "fitted" in label or label == "target accuracy"}


def test_reliability_panels(saved: list[Figure], tmp_path: Path) -> None:
    figure = draw("reliability", tmp_path / "figure.png", saved)
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert [shown(axes.title) for axes in panels] == [
        f"{name.replace(chr(7), '')} — ECE " + ("0.083" if name == "lora" else f"{0.01 * i:.3f}")
        for i, name in enumerate(RELIABILITY_NAMES)
    ]
    assert f"{BINS} equal-width" in figure.get_suptitle()
    for axes in panels:
        assert axes.get_xlim() == (0, 1) and axes.get_ylim() == (0, 1) and axes.get_aspect() == 1.0
        (markers,) = axes.collections
        counts = [count for _, _, count in sorted(calibration(0, 0)) if count]
        sizes = list(markers.get_sizes())
        assert len(sizes) == len(counts) and sizes == sorted(sizes), "marker area grows with the bin's examples"
        assert len(axes.get_lines()) == 2 + len(CLASSES)
    (legend,) = figure.legends
    entries = [shown(text) for text in legend.get_texts()]
    assert sorted(entries) == sorted(["top label (marker area: examples)", "perfect calibration", *CLASSES])
    assert all(legend.get_window_extent().x0 >= axes.get_tightbbox().x1 - 1 for axes in panels), "legend beside the panels"


def test_cost_lines(saved: list[Figure], tmp_path: Path) -> None:
    import numpy as np

    figure = draw("cost", tmp_path / "figure.png", saved)
    axes = figure.axes[0]
    assert (axes.get_xscale(), axes.get_yscale()) == ("log", "log")
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("predictions", "total cost (USD)")
    lines = axes.get_lines()
    assert len(lines) == len(COST_NAMES) and len({(line.get_color(), line.get_linestyle()) for line in lines}) == len(COST_NAMES)
    for name, line in zip(COST_NAMES, lines):
        volume, total = line.get_xdata(), line.get_ydata()
        assert len(volume) == 200 and (volume[0], volume[-1]) == pytest.approx((1.0, 1e7))
        assert np.all(np.isfinite(total)) and np.all(total > 0)
        if name != "strategy-0":
            assert total == pytest.approx(BUILD[name] + PER_PREDICTION[name] * volume)
    (legend,) = figure.legends
    assert "strategy-0 (costs nothing)" in [text.get_text() for text in legend.get_texts()]
    assert legend.get_window_extent().x0 >= axes.get_window_extent().x1, "legend right of the axes"


def test_reliability_titles_of_sweep_variants_break_before_the_bracket_and_do_not_overlap(saved: list[Figure], tmp_path: Path) -> None:
    names = [f"{strategy}[embedding_model=all-mpnet-base-v2]" for strategy in ("encoder-finetune", "embedding-classifier", "knn-vote")]
    overall = {name: calibration(0.03 * i, i) for i, name in enumerate(names)}
    plots.reliability_plot(overall, {name: {} for name in names}, dict.fromkeys(names, 0.05), BINS, tmp_path / "figure.png")
    figure = saved[-1]
    figure.canvas.draw()
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert [shown(axes.title) for axes in panels] == [name.replace("[", "\n[") + "\nECE 0.050" for name in names]
    boxes = [axes.title.get_window_extent() for axes in panels]
    assert all(left.x1 <= right.x0 for left, right in zip(boxes, boxes[1:])), "neighbouring titles overlap"


def test_cost_title_and_sweep_variant_legend_stay_clear_of_each_other(saved: list[Figure], tmp_path: Path) -> None:
    names = [f"{strategy}[embedding_model=all-mpnet-base-v2]" for strategy in ("encoder-finetune", "embedding-classifier", "knn-vote")]
    title = ("financial_sentiment_with_a_long_task_name", "total cost against predictions (batched)")
    plots.cost_plot(dict.fromkeys(names, 100.0), dict.fromkeys(names, 0.01), "device-seconds", title, tmp_path / "figure.png")
    figure = saved[-1]
    figure.canvas.draw()
    (axes,), (legend,) = figure.axes, figure.legends
    assert shown(axes.title) == "\n".join(title)
    assert [text.get_text() for text in legend.get_texts()] == [name.replace("[", "\n[") for name in names]
    title_box, legend_box = axes.title.get_window_extent(), legend.get_window_extent()
    assert not title_box.overlaps(legend_box), "the title runs into the legend"
    assert figure.bbox.x0 <= title_box.x0 and title_box.x1 <= figure.bbox.x1, "the title is cut"


def test_files_written_whole_get_the_permissions_a_plain_open_gives(tmp_path: Path) -> None:
    """A figure and a record, each written to a temporary file and renamed, are not left readable by their owner only."""
    import os

    from slmbench import records

    (tmp_path / "plain.txt").write_text("x")
    written = [PLOTS["tradeoff"](tmp_path / "figure.png"), tmp_path / "run.json"]
    records.write_json(written[1], {"a": 1})
    expected = os.stat(tmp_path / "plain.txt").st_mode & 0o777
    assert [os.stat(path).st_mode & 0o777 for path in written] == [expected, expected]
