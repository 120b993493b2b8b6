"""The decision report: ``report.md`` and its PNG figures, from a run folder's JSON files alone.

A run folder holds ``run.json``, ``trials/<strategy>.json`` and optionally ``test_texts.json``;
nothing else (no model, no data) is needed, so a copied run folder renders the same report.
Trial files are read leniently: optional fields may be missing and unknown ones are ignored.

Cost order, used to prefer a cheaper strategy that is statistically tied with the best one:
strategy A is *cheaper* than B when it needs no more training time and peak memory than B (give
or take ``COST_NOISE``) and at most half of B's on at least one of the two, by more than that
noise. Among several cheaper tied strategies, the one that trains fastest wins (then the one with
less peak memory).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from slmbench import stats

SIGNIFICANCE = 0.05
COST_NOISE = {"train_seconds": 1.0, "peak_memory_mb": 50.0}
"""Cost differences this small are measurement noise, never a reason to prefer a strategy."""
CHEAPER_RATIO = 0.5
BOOTSTRAP_RESAMPLES = 1000
MAX_MATRIX_LABELS = 12
"""Above this many classes the confusion matrix is summarised as its most frequent confusions."""
MAX_WRONG_EXAMPLES = 5
MAX_TEXT_CHARS = 160
MISSING = "—"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Trial:
    """One trial file, normalised; ``ok`` trials have an accuracy, the others an error."""

    strategy: str
    file: str
    """Path of the trial JSON relative to the run folder."""
    status: str
    family: str | None = None
    description: str | None = None
    labels: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] = field(default_factory=dict)
    gold: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    probabilities: list[list[float]] | None = None
    labelled_examples: int | None = None
    """Labelled examples the strategy learnt from: ``details.labelled_examples``, else train + validation."""
    train_examples: int | None = None
    """Size of the train split (or learning-curve subset) the trial was given."""
    train_size: int | None = None
    """The learning-curve subset size asked for (``None``: the whole train split)."""
    learns_from_train: bool = True

    @property
    def ok(self) -> bool:
        return self.status == "ok" and isinstance(self.metrics.get("accuracy"), (int, float))

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    @property
    def macro_f1(self) -> float | None:
        return self.metrics.get("macro_f1")

    def f1(self, label: str) -> float | None:
        return (self.metrics.get("per_class") or {}).get(label, {}).get("f1")


@dataclass(frozen=True)
class Run:
    """A run folder: ``run.json`` (``info``), its trials, ok ones first by accuracy, and test texts."""

    directory: Path
    info: dict[str, Any]
    trials: list[Trial]
    test_texts: list[str] | None
    curve_trials: list[Trial] = field(default_factory=list)
    """Learning-curve points (``trials/train-<n>/``): the same strategies on smaller train subsets."""

    @property
    def ranked(self) -> list[Trial]:
        return [trial for trial in self.trials if trial.ok]

    @property
    def failed(self) -> list[Trial]:
        return [trial for trial in self.trials if not trial.ok]

    @property
    def labels(self) -> list[str]:
        return self.info.get("labels") or next((trial.labels for trial in self.trials if trial.labels), [])

    @property
    def task(self) -> str:
        return self.info.get("task") or self.directory.parent.name

    @property
    def name(self) -> str:
        return f"{self.task}/{self.info.get('run_id') or self.directory.name}"


# --- Formatting ---------------------------------------------------------------------------------


def _metric(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}"


def _number(value: float | None) -> str:
    """Three significant digits without exponent or trailing zeros: 412.7 -> '413', 5.0 -> '5'."""
    if value is None:
        return MISSING
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


def _scaled(value: float | None, base: int, units: Sequence[str]) -> str:
    """``value`` in the largest unit that keeps it at least 1: 134515008 -> '134.5M'."""
    if value is None:
        return MISSING
    step = 0
    while abs(value) >= base and step < len(units) - 1:
        value, step = value / base, step + 1
    return f"{value:.0f}{units[0]}" if step == 0 else f"{value:.1f}{units[step]}"


def _count(value: int | None) -> str:
    return _scaled(value, 1000, ("", "K", "M", "B", "T"))


def _bytes(value: int | None) -> str:
    return _scaled(value, 1024, (" B", " KiB", " MiB", " GiB", " TiB"))


def _p_value(p: float | None) -> str:
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _interval(point: float | None, interval: tuple[float, float] | None) -> str:
    if interval is None:
        return _metric(point)
    return f"{_metric(point)} ({interval[0]:.3f}–{interval[1]:.3f})"


def _code(text: str) -> str:
    """An inline code span (literal on GitHub, so ``<`` or ``*`` in errors stay visible)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _cell(value: Any) -> str:
    """Text for one markdown table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _plain(text: str) -> str:
    """Arbitrary text (a test example) shown literally: markdown and HTML characters escaped."""
    return re.sub(r"([\\`*_\[\]<>~])", r"\\\1", text)


def _shorten(text: str | None, limit: int) -> str:
    return textwrap.shorten(text or "", limit, placeholder=" …")


def _first_line(text: str | None, limit: int = 200) -> str:
    lines = (text or "").strip().splitlines()
    return _shorten(lines[0] if lines else "", limit)


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


# --- Reading a run folder -----------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_trial(path: Path, run_dir: Path, default_labelled: int | None, default_train: int | None) -> Trial:
    file = path.relative_to(run_dir).as_posix()
    try:
        record = _read_json(path)
    except (OSError, ValueError) as error:
        return Trial(path.stem, file, "unreadable", error={"type": type(error).__name__, "message": str(error)})
    metrics = record.get("metrics") or {}
    predictions = record.get("predictions") or {}
    details = record.get("details") or {}
    return Trial(
        strategy=record.get("strategy") or path.stem,
        file=file,
        status=record.get("status", "unknown"),
        family=record.get("family"),
        description=record.get("description"),
        labels=record.get("labels") or list(metrics.get("per_class") or {}),
        metrics=metrics,
        cost=record.get("cost") or {},
        details=details,
        error=record.get("error") or {},
        gold=predictions.get("gold") or [],
        predicted=predictions.get("predicted") or [],
        probabilities=predictions.get("probabilities"),
        labelled_examples=details.get("labelled_examples", default_labelled),
        train_examples=record.get("train_examples", default_train),
        train_size=(record.get("config") or {}).get("train_size"),
        learns_from_train=record.get("learns_from_train", details.get("labelled_examples") != 0),
    )


def _rank_key(trial: Trial) -> tuple:
    return (not trial.ok, -trial.accuracy if trial.ok else 0, -(trial.macro_f1 or 0), trial.strategy)


def load_run(run_dir: Path) -> Run:
    """Read a run folder; a missing ``run.json`` or ``test_texts.json`` leaves those parts empty."""
    run_dir = Path(run_dir)
    info = _read_json(run_dir / "run.json") if (run_dir / "run.json").exists() else {}
    sizes = (info.get("splits") or {}).get("sizes") or {}
    n_train = sizes.get("train")
    default_labelled = None if n_train is None else n_train + sizes.get("validation", 0)
    trials = [_read_trial(path, run_dir, default_labelled, n_train) for path in sorted(run_dir.glob("trials/*.json"))]
    curve = [_read_trial(path, run_dir, None, None) for path in sorted(run_dir.glob("trials/train-*/*.json"))]
    texts_path = run_dir / "test_texts.json"
    return Run(
        directory=run_dir,
        info=info,
        trials=sorted(trials, key=_rank_key),
        test_texts=_read_json(texts_path) if texts_path.exists() else None,
        curve_trials=curve,
    )


# --- Recommendation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Constraints:
    """Limits the recommended strategy must respect; ``None`` means no limit."""

    max_train_minutes: float | None = None
    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    max_labelled_examples: int | None = None

    def violations(self, trial: Trial) -> list[str]:
        """Why ``trial`` breaks these constraints (an unrecorded measurement counts as a breach)."""
        reasons = []
        for limit, measure in self._active():
            value = measure.of(trial)
            if value is None:
                reasons.append(f"{measure.what} not recorded")
            elif value > limit:
                reasons.append(f"{measure.what} {_number(value)}{measure.unit} > {limit:g}{measure.unit}")
        return reasons

    def describe(self) -> str:
        return ", ".join(f"{measure.what} ≤ {limit:g}{measure.unit}" for limit, measure in self._active())

    def _active(self) -> list[tuple[float, _Measure]]:
        return [(getattr(self, f.name), _MEASURES[f.name]) for f in fields(self) if getattr(self, f.name) is not None]


class _Measure(NamedTuple):
    """What a constraint limits, in which unit, and how to read it from a trial."""

    what: str
    unit: str
    of: Callable[[Trial], float | None]


def _train_minutes(trial: Trial) -> float | None:
    seconds = trial.cost.get("train_seconds")
    return None if seconds is None else seconds / 60


_MEASURES = {
    "max_train_minutes": _Measure("training time", " min", _train_minutes),
    "max_latency_ms": _Measure("latency", " ms/example", lambda trial: trial.cost.get("latency_ms_per_example")),
    "max_memory_mb": _Measure("peak memory", " MiB", lambda trial: trial.cost.get("peak_memory_mb")),
    "max_labelled_examples": _Measure("labelled examples", "", lambda trial: trial.labelled_examples),
}


@dataclass(frozen=True)
class Recommendation:
    """What the numbers say to use, and why."""

    best: Trial | None
    """Most accurate strategy, constraints aside."""
    best_allowed: Trial | None
    """Most accurate strategy within the constraints."""
    choice: Trial | None
    """``best_allowed``, or a cheaper strategy statistically tied with it."""
    tie_p_value: float | None
    """McNemar p-value of ``choice`` against ``best_allowed`` when they differ."""
    excluded: dict[str, list[str]]
    """Strategy -> the constraints it breaks."""


def mcnemar_p(a: Trial, b: Trial) -> float | None:
    """McNemar exact p-value of two trials, or None unless both predicted the same test examples."""
    if not a.gold or a.gold != b.gold or len(a.predicted) != len(a.gold) or len(b.predicted) != len(b.gold):
        return None
    return stats.mcnemar_exact(a.gold, a.predicted, b.predicted)


def _cheaper(a: Trial, b: Trial) -> bool:
    """The module's cost order (see the module docstring); unrecorded costs are never cheaper."""
    costs = [(a.cost.get(key), b.cost.get(key), noise) for key, noise in COST_NOISE.items()]
    if any(x is None or y is None for x, y, _ in costs):
        return False
    no_more = all(x <= y + noise for x, y, noise in costs)
    materially_less = any(x <= CHEAPER_RATIO * y and y - x > noise for x, y, noise in costs)
    return no_more and materially_less


def recommend(run: Run, constraints: Constraints = Constraints()) -> Recommendation:
    """Best overall, best within ``constraints``, and the cheapest strategy statistically tied with it."""
    ranked = run.ranked
    excluded = {trial.strategy: reasons for trial in ranked if (reasons := constraints.violations(trial))}
    allowed = [trial for trial in ranked if trial.strategy not in excluded]
    best_allowed = allowed[0] if allowed else None
    tied = [
        (trial, p)
        for trial in allowed[1:]
        if _cheaper(trial, best_allowed) and (p := mcnemar_p(trial, best_allowed)) is not None and p >= SIGNIFICANCE
    ]
    choice, p = min(tied, key=lambda pair: [pair[0].cost[key] for key in COST_NOISE], default=(best_allowed, None))
    return Recommendation(ranked[0] if ranked else None, best_allowed, choice, p, excluded)


# --- Sections -----------------------------------------------------------------------------------


def _title(run: Run) -> str:
    date = (run.info.get("started_at") or "")[:10]
    return f"# Decision report: {run.task}" + (f" ({date})" if date else "")


def _introduction(run: Run) -> str:
    labels = run.labels
    n_test = ((run.info.get("splits") or {}).get("sizes") or {}).get("test") or len(next((t.gold for t in run.ranked), []))
    text = (
        f"slmbench tried {_plural(len(run.trials), 'way')} of adapting a small language model to classify "
        f"{_code(run.task)} texts into {len(labels)} classes ({', '.join(labels)}), all on the same data split "
        f"and budget, and measured their quality on {n_test} held-out test examples and what each one costs."
    )
    if run.info.get("run_id"):
        text += f" Run {_code(run.info['run_id'])}, started {run.info.get('started_at', 'at an unrecorded time')}."
    commands = run.info.get("commands") or ([run.info["command"]] if run.info.get("command") else [])
    if not commands:
        return text
    intro = "Reproduce with:" if len(commands) == 1 else "Reproduce with these commands, in order (each adds to the run folder):"
    return text + f"\n\n{intro}\n\n```sh\n" + "\n".join(commands) + "\n```"


def _cost_summary(trial: Trial) -> str:
    cost = trial.cost
    return (
        f"trains in {_number(cost.get('train_seconds'))} s, "
        f"predicts in {_number(cost.get('latency_ms_per_example'))} ms per example "
        f"and peaks at {_number(cost.get('peak_memory_mb'))} MiB of memory"
    )


def _quality_summary(trial: Trial) -> str:
    return f"accuracy {_metric(trial.accuracy)}, macro-F1 {_metric(trial.macro_f1)}"


def _verdict(advice: Recommendation, constraints: Constraints) -> str:
    """The opening sentence: what to use, or that nothing fits the constraints."""
    if advice.choice is None:
        return (
            f"**No strategy meets your constraints** ({constraints.describe()}). Without them, the most accurate is "
            f"{_code(advice.best.strategy)}: {_quality_summary(advice.best)}; it {_cost_summary(advice.best)}."
        )
    choice = advice.choice
    family = f" ({choice.family} family)" if choice.family else ""
    what = f": {choice.description.rstrip('.')}" if choice.description else ""
    verdict = (
        f"**Use {_code(choice.strategy)}**{family}{what}. "
        f"It has {_quality_summary(choice)}; it {_cost_summary(choice)}."
    )
    if choice is advice.best:
        verdict += " It is the most accurate strategy, and no cheaper one is statistically tied with it."
    elif choice is advice.best_allowed:
        verdict += " It is the most accurate strategy that meets your constraints."
    return verdict


def _tie(advice: Recommendation) -> str:
    """Why a cheaper strategy is preferred to a more accurate one."""
    choice, rival = advice.choice, advice.best_allowed
    return (
        f"{_code(rival.strategy)} is more accurate ({_quality_summary(rival)}), but not significantly so on these "
        f"{len(rival.gold)} test examples (McNemar exact test, p = {_p_value(advice.tie_p_value)}), and "
        f"{_code(choice.strategy)} is cheaper: {_number(choice.cost['train_seconds'])} s instead of "
        f"{_number(rival.cost['train_seconds'])} s of training, {_number(choice.cost['peak_memory_mb'])} instead of "
        f"{_number(rival.cost['peak_memory_mb'])} MiB of peak memory. A small test set only detects large "
        "differences: the confidence intervals in the leaderboard show how large."
    )


def _recommendation(run: Run, advice: Recommendation, constraints: Constraints) -> str:
    if advice.best is None:
        return "## Recommendation\n\nNo strategy produced predictions, so there is nothing to recommend: see Failures."
    paragraphs = ["## Recommendation", _verdict(advice, constraints)]
    if advice.tie_p_value is not None:
        paragraphs.append(_tie(advice))
    if advice.excluded:
        excluded = "; ".join(f"{_code(name)} ({', '.join(reasons)})" for name, reasons in advice.excluded.items())
        paragraphs.append(f"Your constraints ({constraints.describe()}) rule out {excluded}.")
        if advice.best_allowed is not None and advice.best is not advice.best_allowed:
            best = advice.best
            paragraphs[-1] += f" Constraints aside, the most accurate is {_code(best.strategy)}"
            paragraphs[-1] += f" ({_quality_summary(best)})."
    if run.failed:
        failed = _plural(len(run.failed), "strategy", "strategies")
        paragraphs.append(f"{failed} produced no predictions (failed, timed out or cancelled): see Failures.")
    return "\n\n".join(paragraphs)


def _bootstrap(trial: Trial, metric: stats.Metric, seed: int) -> tuple[float, float] | None:
    if len(trial.gold) != len(trial.predicted):
        return None
    return stats.bootstrap_ci(trial.gold, trial.predicted, metric, BOOTSTRAP_RESAMPLES, seed=seed)


def _cost_cells(cost: dict[str, Any]) -> list[str]:
    return [
        _number(cost.get("train_seconds")), _number(cost.get("predict_seconds")),
        _number(cost.get("latency_ms_per_example")), _number(cost.get("throughput_examples_per_second")),
        _number(cost.get("peak_memory_mb")), _count(cost.get("trainable_params")),
        _count(cost.get("total_params")), _bytes(cost.get("artifact_bytes")),
    ]


def _leaderboard(run: Run) -> str:
    ranked = run.ranked
    if not ranked:
        return ""
    seed = run.info.get("seed", 0)
    f1_metric = stats.macro_f1(len(run.labels))
    with_tokens = any("prompt_tokens_per_example" in trial.details for trial in ranked)
    headers = [
        "#", "strategy", "family", "accuracy (95% CI)", "macro-F1 (95% CI)", "McNemar p vs #1", "train (s)",
        "predict (s)", "latency (ms/example)", "throughput (examples/s)", "peak memory (MiB)",
        "trainable params", "total params", "artifact size",
    ] + (["prompt tokens/example"] if with_tokens else [])
    rows = [
        [
            rank, trial.strategy, trial.family or MISSING,
            _interval(trial.accuracy, _bootstrap(trial, stats.accuracy, seed)),
            _interval(trial.macro_f1, _bootstrap(trial, f1_metric, seed)),
            MISSING if rank == 1 else _p_value(mcnemar_p(ranked[0], trial)),
            *_cost_cells(trial.cost),
            *([_number(trial.details.get("prompt_tokens_per_example"))] if with_tokens else []),
        ]
        for rank, trial in enumerate(ranked, 1)
    ]
    note = (
        f"Sorted by test accuracy. 95% confidence intervals: percentile bootstrap over the test examples "
        f"({BOOTSTRAP_RESAMPLES:,} resamples, seed {seed}). McNemar p: exact two-sided test on the test examples "
        f"where exactly one of the strategy and {_code(ranked[0].strategy)} (#1) is right; p < {SIGNIFICANCE} means "
        "the accuracy difference is unlikely to be chance (no correction for multiple comparisons). "
        "Latency is the prediction time per test example in a batch run; peak memory includes the shared models."
    )
    return "\n\n".join(["## Leaderboard", _table(headers, rows), note])


def _tradeoffs(run: Run) -> str:
    from slmbench.plots import tradeoff_plot

    parts = []
    for key, axis_label, file, what in (
        ("train_seconds", "training time (s)", "tradeoff_training.png", "training time"),
        ("latency_ms_per_example", "prediction latency (ms per example)", "tradeoff_latency.png", "latency"),
    ):
        trials = [trial for trial in run.ranked if isinstance(trial.cost.get(key), (int, float))]
        if not trials:
            continue
        costs, scores = [trial.cost[key] for trial in trials], [trial.accuracy for trial in trials]
        front = stats.pareto_front(costs, scores)
        names = [trial.strategy for trial in trials]
        title = f"{run.task}: test accuracy against {what}"
        tradeoff_plot(names, costs, scores, front, axis_label, title, run.directory / file)
        front_names = ", ".join(_code(names[i]) for i in sorted(front, key=lambda i: costs[i]))
        parts.append(f"![Test accuracy against {what}]({file})")
        parts.append(f"Pareto front for {what}, cheapest first: {front_names}.")
    if not parts:
        return ""
    intro = "On the Pareto front (dashed line), no other strategy is both cheaper and more accurate."
    return "\n\n".join(["## Trade-offs", intro, *parts])


def learning_curves(run: Run) -> tuple[dict[str, dict[int, float]], dict[str, float]]:
    """Test accuracy per strategy per train size, and the flat lines of strategies that learn from no example.

    A strategy is on the curve when it ran at a smaller size as well as on the whole train split.
    """
    curves: dict[str, dict[int, float]] = {}
    for trial in run.curve_trials:
        if trial.ok and trial.train_examples:
            curves.setdefault(trial.strategy, {})[trial.train_examples] = trial.accuracy
    flat = {}
    for trial in run.ranked:
        if not trial.learns_from_train:
            flat[trial.strategy] = trial.accuracy
        elif trial.strategy in curves and trial.train_examples:
            curves[trial.strategy][trial.train_examples] = trial.accuracy
    return curves, flat


def leader_changes(curves: dict[str, dict[int, float]], flat: dict[str, float]) -> list[tuple[int, str, float]]:
    """(size, most accurate strategy, its accuracy) at the smallest size and wherever the leader changes.

    At each size the leader is picked among the strategies measured at that size and the flat ones.
    """
    changes: list[tuple[int, str, float]] = []
    for size in sorted({size for points in curves.values() for size in points}):
        scores = {**flat, **{name: points[size] for name, points in curves.items() if size in points}}
        leader = max(sorted(scores), key=lambda name: scores[name])
        if not changes or changes[-1][1] != leader:
            changes.append((size, leader, scores[leader]))
    return changes


def _crossover_sentences(changes: list[tuple[int, str, float]], sizes: list[int]) -> str:
    """Where the most accurate strategy changes, as sentences; the size before each change bounds it."""
    (size, first, accuracy), *later = changes
    text = f"With {size} labelled train examples the most accurate strategy is {_code(first)} ({_metric(accuracy)})."
    previous = first
    for size, leader, accuracy in later:
        before = sizes[sizes.index(size) - 1]
        text += (
            f" {_code(leader)} overtakes {_code(previous)} between {before} and {size} examples "
            f"({_metric(accuracy)} at {size})."
        )
        previous = leader
    if not later:
        text += " It stays the most accurate at every size measured."
    return text


def _learning_curves(run: Run) -> str:
    from slmbench.plots import learning_curve_plot

    curves, flat = learning_curves(run)
    if not curves:
        return ""
    learning_curve_plot(curves, flat, f"{run.task}: test accuracy against labelled train examples",
                        run.directory / "learning_curves.png")
    sizes = sorted({size for points in curves.values() for size in points})
    n_train = max(sizes)
    rows = [[name, *(_metric(points.get(size)) for size in sizes)] for name, points in sorted(curves.items())]
    rows += [[f"{name} (learns from no example)", *(_metric(flat[name]) for _ in sizes)] for name in sorted(flat)]
    headers = ["strategy", *(f"{size} examples" + (" (whole split)" if size == n_train else "") for size in sizes)]
    return "\n\n".join(
        [
            "## Learning curves",
            "Each strategy was also given nested, stratified subsets of the train split (a smaller subset is part "
            "of every larger one), with the validation split cut in the same proportion, and scored on the same "
            "test examples. " + _crossover_sentences(leader_changes(curves, flat), sizes) + " A difference of a "
            "few points can be noise at this test size: see the confidence intervals in the leaderboard.",
            "![Test accuracy against labelled train examples](learning_curves.png)",
            _table(headers, rows),
        ]
    )


def _per_class(run: Run) -> str:
    from slmbench.plots import f1_heatmap

    ranked, labels = run.ranked, run.labels
    if not ranked or not labels:
        return ""
    per_class = ranked[0].metrics.get("per_class") or {}
    rows = [
        [label, per_class.get(label, {}).get("support", MISSING), *(_metric(trial.f1(label)) for trial in ranked)]
        for label in labels
    ]
    values = [[math.nan if t.f1(label) is None else t.f1(label) for t in ranked] for label in labels]
    f1_heatmap([trial.strategy for trial in ranked], labels, values, run.directory / "per_class_f1.png")
    parts = [
        "## Per-class results",
        "F1 on each class (rows) for each strategy (columns, in leaderboard order); "
        "support is the number of test examples of the class.",
        _table(["class", "support", *(trial.strategy for trial in ranked)], rows),
        "![F1 per class and strategy](per_class_f1.png)",
        _confusion(ranked[0], labels),
        _wrong_examples(run, ranked[0]),
    ]
    return "\n\n".join(part for part in parts if part)


def _confusion(best: Trial, labels: list[str]) -> str:
    matrix = best.metrics.get("confusion_matrix")
    if not matrix or len(matrix) != len(labels):
        return ""
    title = f"### Confusion matrix of {_code(best.strategy)}"
    if len(labels) > MAX_MATRIX_LABELS:
        return f"{title}\n\n{_top_confusions(matrix, labels)}"
    rows = [
        [f"**{gold}**", *(f"**{count}**" if g == p else count for p, count in enumerate(row))]
        for g, (gold, row) in enumerate(zip(labels, matrix))
    ]
    explanation = "Rows are the true classes, columns the predicted ones; the diagonal (bold) is correct."
    return f"{title}\n\n{explanation}\n\n{_table(['gold ↓ / predicted →', *labels], rows)}"


def _top_confusions(matrix: list[list[int]], labels: list[str], top: int = 10) -> str:
    """The most frequent (gold, predicted) mistakes: a full matrix would not fit on a page."""
    mistakes = [
        (count, labels[g], labels[p]) for g, row in enumerate(matrix) for p, count in enumerate(row) if g != p and count
    ]
    rows = [[gold, predicted, count] for count, gold, predicted in sorted(mistakes, key=lambda m: -m[0])[:top]]
    return (
        f"Its {len(rows)} most frequent confusions ({len(labels)} classes are too many for a full matrix):\n\n"
        + _table(["gold", "predicted", "test examples"], rows)
    )


def _wrong_examples(run: Run, best: Trial) -> str:
    texts, labels = run.test_texts, run.labels
    if not texts or len(texts) != len(best.gold) or len(best.predicted) != len(best.gold):
        return ""
    wrong = [i for i, (g, p) in enumerate(zip(best.gold, best.predicted)) if g != p]
    if not wrong:
        return ""
    probabilities = best.probabilities if best.probabilities and len(best.probabilities) == len(texts) else None
    if probabilities:
        wrong.sort(key=lambda i: -probabilities[i][best.predicted[i]])
    rows = [
        [
            _plain(_shorten(texts[i], MAX_TEXT_CHARS)), labels[best.gold[i]], labels[best.predicted[i]],
            *([_metric(probabilities[i][best.predicted[i]])] if probabilities else []),
        ]
        for i in wrong[:MAX_WRONG_EXAMPLES]
    ]
    headers = ["test text", "gold", "predicted"] + (["confidence"] if probabilities else [])
    order = "most confident mistakes first" if probabilities else "in test order"
    return (
        f"### Test examples {_code(best.strategy)} gets wrong\n\n"
        f"{len(rows)} of its {len(wrong)} mistakes, {order}:\n\n{_table(headers, rows)}"
    )


def _failure_line(trial: Trial) -> str:
    error = trial.error
    if error:
        summary = f"{error.get('type', 'Error')}: {_first_line(error.get('message'))}"
    else:
        summary = f"status {trial.status!r}, no error recorded"
    link = f"[{trial.file}]({trial.file})"
    where = f"full traceback in {link} under `error.traceback`" if error.get("traceback") else f"see {link}"
    status = "" if trial.status == "failed" else f" ({trial.status})"
    size = "" if trial.train_size is None else f" at {trial.train_size} train examples"
    return f"- {_code(trial.strategy)}{size}{status}: {_code(summary)} — {where}."


def _failures(run: Run) -> str:
    failed = run.failed + [trial for trial in run.curve_trials if not trial.ok]
    if not failed:
        return ""
    return (
        "## Failures\n\nThese trials produced no predictions and are left out of every comparison above "
        "(status in brackets when the trial did not simply fail).\n\n"
        + "\n".join(_failure_line(trial) for trial in failed)
    )


def _split_tables(run: Run) -> list[str]:
    """Examples per split (used, available, duplicates removed), then per class and split."""
    splits = run.info.get("splits") or {}
    sizes = splits.get("sizes") or {}
    tables = []
    names = [name for name in SPLITS if name in sizes]
    if names:
        full, duplicates = splits.get("full_sizes") or {}, splits.get("duplicates_removed") or {}
        rows = [[name, sizes[name], full.get(name, MISSING), duplicates.get(name, MISSING)] for name in names]
        tables.append(_table(["split", "examples used", "available before caps", "duplicates removed"], rows))
    per_class = splits.get("per_class") or {}
    if per_class:
        columns = [name for name in SPLITS if name in per_class]
        rows = [[label, *(per_class[split].get(label, 0) for split in columns)] for label in run.labels]
        tables.append(_table(["class", *columns], rows))
    return tables


def _data_protocol(run: Run) -> str:
    info = run.info
    data, profile = info.get("data") or {}, info.get("profile") or {}
    parts = [
        "## Data and protocol",
        "Every strategy learns from the same train split (validation is for model selection only) "
        "and is scored once on the same test split, under the same budget.",
    ]
    if data:
        parts.append(
            f"Data file {_code(str(data.get('file', MISSING)))}: {data.get('rows', MISSING)} rows, "
            f"SHA-256 {_code(str(data.get('sha256', MISSING)))}. Seed: {info.get('seed', MISSING)}."
        )
    parts += _split_tables(run)
    if profile:
        rows = [[key, "no cap" if value is None else value] for key, value in profile.items() if key != "name"]
        parts.append(f"Budget profile {_code(str(profile.get('name', MISSING)))}, shared by every strategy:")
        parts.append(_table(["cap", "value"], rows))
    return "\n\n".join(parts)


def _references(run: Run) -> str:
    references = run.info.get("references") or []
    if not references:
        return ""
    columns = ("system", "metric", "value", "source")
    rows = [[reference.get(column, MISSING) for column in columns] for reference in references]
    return "\n\n".join(
        [
            "## Published reference points",
            "> **Reported elsewhere, not measured here.** These come from other papers or leaderboards, with other "
            "data splits, models and budgets: a rough scale for the numbers above, not a like-for-like comparison.",
            _table(columns, rows),
        ]
    )


def _environment(run: Run) -> str:
    models, environment = run.info.get("models") or {}, run.info.get("environment") or {}
    cores = environment.get("cpu_count")
    items = [
        ("causal language model", models.get("causal_lm")),
        ("embedding model", models.get("embedding_model")),
        ("device", models.get("device")),
        ("dtype", models.get("dtype")),
        ("Python", environment.get("python")),
        ("platform", environment.get("platform")),
        ("CPU", environment.get("cpu") and f"{environment['cpu']}" + (f" ({cores} cores)" if cores else "")),
    ]
    rows = [[name, value] for name, value in items if value]
    packages = environment.get("packages") or {}
    parts = ["## Environment"]
    if rows:
        parts.append(_table(["", "value"], rows))
    if packages:
        parts.append(_table(["package", "version"], sorted(packages.items())))
    return "\n\n".join(parts) if len(parts) > 1 else ""


def render_report(run_dir: Path, constraints: Constraints = Constraints()) -> Path:
    """Write ``report.md`` (and its PNG figures) into ``run_dir`` from its JSON files; return its path."""
    run = load_run(run_dir)
    advice = recommend(run, constraints)
    sections = [
        _title(run), _introduction(run), _recommendation(run, advice, constraints), _leaderboard(run),
        _tradeoffs(run), _learning_curves(run), _per_class(run), _failures(run), _data_protocol(run), _references(run), _environment(run),
    ]
    path = run.directory / "report.md"
    path.write_text("\n\n".join(section for section in sections if section) + "\n", encoding="utf-8")
    return path


def _best_of_run(run: Run) -> list[Any]:
    best = run.ranked[0] if run.ranked else None
    if best is None:
        return [run.name, MISSING, "none succeeded", MISSING, MISSING, 0, len(run.failed)]
    return [
        run.name, len(best.gold) or MISSING, best.strategy, _metric(best.accuracy), _metric(best.macro_f1),
        len(run.ranked), len(run.failed),
    ]


def _accuracy_cell(run: Run, strategy: str) -> str:
    trial = next((trial for trial in run.trials if trial.strategy == strategy), None)
    if trial is None:
        return MISSING
    if not trial.ok:
        return "failed"
    return f"**{_metric(trial.accuracy)}**" if trial is run.ranked[0] else _metric(trial.accuracy)


def render_comparison(run_dirs: Sequence[Path], output: Path) -> Path:
    """Write one markdown file comparing runs: the best strategy of each, then every strategy's accuracy."""
    runs = [load_run(run_dir) for run_dir in run_dirs]
    strategies = sorted({trial.strategy for run in runs for trial in run.trials})
    accuracy = [[name, *(_accuracy_cell(run, name) for run in runs)] for name in strategies]
    summary_headers = ["run", "test examples", "best strategy", "accuracy", "macro-F1", "strategies ok", "failed"]
    text = "\n\n".join(
        [
            f"# Comparison of {len(runs)} runs",
            "## Best strategy per run",
            _table(summary_headers, [_best_of_run(run) for run in runs]),
            "## Test accuracy of each strategy",
            "Bold: the best of each run. Accuracies on different tasks or test sets are not comparable.",
            _table(["strategy", *(run.name for run in runs)], accuracy),
        ]
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n", encoding="utf-8")
    return output
