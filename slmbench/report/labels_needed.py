"""Labels needed: from a learning curve, the accuracy a strategy is heading for and how many labelled
train examples it needs to reach a target.

Each strategy's mean test accuracy at each train size is fitted with an inverse power law,
accuracy(n) = a - b * n^(-c) (a saturating curve, the usual model of learning curves), by scipy's
``curve_fit``. Uncertainty comes from a bootstrap that redraws the test examples (the same draw at
every size, as the sizes share the test split) and, at each size, the seeds, then refits. A fit is
too uncertain to use when it does not follow the points (R² below ``MIN_R_SQUARED``), heads for
accuracy 1 (no saturation in the points), rests on fewer than
``MIN_SIZES`` sizes, fails on many resamples, or the interval of the accuracy it heads for is wider
than ``MAX_ASYMPTOTE_WIDTH``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slmbench.report.markdown import MISSING, code, interval, metric, number, table, text
from slmbench.report.summary import Summary

RESAMPLES = 300
MIN_SIZES = 4
MAX_ASYMPTOTE_WIDTH = 0.15
MIN_FITTED_SHARE = 0.8
MIN_R_SQUARED = 0.5
MIN_RISE = 0.02
"""A curve that moves by this much must be followed by its fit (R² at least MIN_R_SQUARED), else the fit is no model of it."""
ASYMPTOTE_BOUND = 0.999
"""A fit heading for accuracy 1 (the bound) has found no saturation in the points: its labels-needed is a guess."""
EXTRAPOLATE = 20
"""Fitted curves are drawn and searched for crossings up to this many times the largest size measured."""


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """accuracy(n) = a - b * n^(-c): rises with n towards ``a``."""
    return a - b * np.power(n, -c)


def fit_power_law(sizes: np.ndarray, accuracies: np.ndarray) -> tuple[float, float, float] | None:
    """(a, b, c) of the least-squares inverse power law, a in [0, 1], b >= 0, c in [0.01, 3]; None if it fails."""
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    c0 = 0.5
    b0 = max(float(accuracies[-1] - accuracies[0]), 0.01) * float(sizes[0]) ** c0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (a, b, c), _ = curve_fit(
                power_law,
                sizes.astype(float),
                accuracies,
                p0=(min(float(accuracies.max()) + 0.02, 1.0), b0, c0),
                bounds=([0.0, 0.0, 0.01], [1.0, np.inf, 3.0]),
                maxfev=5000,
            )
    except (RuntimeError, ValueError):
        return None
    return float(a), float(b), float(c)


def examples_to_reach(parameters: tuple[float, float, float], target: float) -> float:
    """Train examples where the fitted curve reaches ``target`` (inf when it heads below it)."""
    a, b, c = parameters
    if a <= target:
        return math.inf
    if b == 0:
        return 0.0
    exponent = (math.log(b) - math.log(a - target)) / c  # in logs: a small c overflows a float power
    return math.inf if exponent > 700 else math.exp(exponent)


@dataclass
class LabelsNeeded:
    """A strategy's fitted learning curve and what it says."""

    name: str
    sizes: list[int]
    measured: list[float]
    parameters: tuple[float, float, float] | None
    asymptote_interval: tuple[float, float] | None
    needed: float | None
    needed_interval: tuple[float, float] | None
    holdout: tuple[int, float, float] | None
    """(largest size, accuracy predicted there by a fit on the smaller sizes, accuracy measured)."""
    problem: str | None
    """Why the fit is too uncertain to use (None when usable)."""
    meaningless: bool = False
    """The fitted numbers say nothing (no fit, or one that misses or never flattens): shown as empty cells.
    A fit that is merely wide (its interval spans much) keeps its numbers: the interval says how wide."""

    def predict(self, n: np.ndarray) -> np.ndarray:
        assert self.parameters is not None
        return power_law(n, *self.parameters)


def _correct_by_size(summary: Summary, name: str) -> tuple[int, dict[int, np.ndarray]]:
    """Test examples, and per train size a (seeds, examples) array of whether each prediction was right."""
    rows: dict[int, list[np.ndarray]] = {}
    n_test = 0
    for trial in summary.trials:
        if trial.name != name or not trial.ok or trial.predictions is None or not trial.train_examples:
            continue
        gold, predicted = np.asarray(trial.predictions.gold), np.asarray(trial.predictions.predicted)
        if n_test and len(gold) != n_test:
            continue
        n_test = len(gold)
        rows.setdefault(trial.train_examples, []).append(gold == predicted)
    return n_test, {size: np.asarray(rows[size]) for size in sorted(rows)}


def _bootstrap(correct: dict[int, np.ndarray], n_test: int, target: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Asymptotes and examples-to-target of the fits to ``RESAMPLES`` resampled curves (failed fits left out)."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(list(correct), dtype=float)
    asymptotes, needed = [], []
    for _ in range(RESAMPLES):
        examples = rng.integers(0, n_test, n_test)
        accuracies = np.asarray(
            [rows[rng.integers(0, len(rows), len(rows))][:, examples].mean() for rows in correct.values()],
        )
        parameters = fit_power_law(sizes, accuracies)
        if parameters is not None:
            asymptotes.append(parameters[0])
            needed.append(examples_to_reach(parameters, target))
    return np.asarray(asymptotes), np.asarray(needed)


def labels_needed(summary: Summary, name: str, target: float) -> LabelsNeeded | None:
    """The fitted curve of ``name`` and the labels it needs for ``target``; None without two sizes."""
    n_test, correct = _correct_by_size(summary, name)
    if len(correct) < 2:
        return None
    sizes = list(correct)
    measured = [float(rows.mean()) for rows in correct.values()]
    size_array, accuracy_array = np.asarray(sizes, dtype=float), np.asarray(measured)
    parameters = fit_power_law(size_array, accuracy_array)
    holdout = None
    if len(sizes) >= MIN_SIZES and (smaller := fit_power_law(size_array[:-1], accuracy_array[:-1])) is not None:
        holdout = (sizes[-1], float(power_law(size_array[-1], *smaller)), measured[-1])
    result = LabelsNeeded(name, sizes, measured, parameters, None, None, None, holdout, None)
    if parameters is None:
        result.problem, result.meaningless = "the curve could not be fitted", True
        return result
    result.needed = examples_to_reach(parameters, target)
    asymptotes, needed = _bootstrap(correct, n_test, target)
    if len(asymptotes) >= 2:
        result.asymptote_interval = (float(np.quantile(asymptotes, 0.025)), float(np.quantile(asymptotes, 0.975)))
        # no interpolation between quantiles: a resample whose curve never reaches the target counts as inf
        low, high = (float(np.quantile(needed, q, method="inverted_cdf")) for q in (0.025, 0.975))
        result.needed_interval = (low, high)
    fitted = power_law(size_array, *parameters)
    spread = float(np.sum((accuracy_array - accuracy_array.mean()) ** 2))
    r_squared = 1 - float(np.sum((accuracy_array - fitted) ** 2)) / spread if spread > 0 else 1.0
    if np.ptp(accuracy_array) >= MIN_RISE and r_squared < MIN_R_SQUARED:
        result.problem = f"the points do not follow a saturating curve (R² = {max(r_squared, 0.0):.2f})"
        result.meaningless = True
    elif parameters[0] >= ASYMPTOTE_BOUND:
        result.problem = "the curve shows no sign of flattening yet (the fit heads for accuracy 1)"
        result.meaningless = True
    elif len(sizes) < MIN_SIZES:
        result.problem = f"{len(sizes)} train sizes measured; a fit needs at least {MIN_SIZES}"
        result.meaningless = True
    elif len(asymptotes) < MIN_FITTED_SHARE * RESAMPLES:
        result.problem = f"the fit failed on {RESAMPLES - len(asymptotes)} of {RESAMPLES} resamples"
    elif result.asymptote_interval and result.asymptote_interval[1] - result.asymptote_interval[0] > MAX_ASYMPTOTE_WIDTH:
        low, high = result.asymptote_interval
        result.problem = f"the accuracy it heads for is anywhere in {low:.2f}–{high:.2f}"
    return result


def crossings(fits: list[LabelsNeeded], beyond: int) -> list[tuple[str, str, float]]:
    """(overtaker, overtaken, train examples) where usable fitted curves are predicted to cross past ``beyond``
    (up to ``EXTRAPOLATE`` times it)."""
    grid = np.geomspace(beyond, beyond * EXTRAPOLATE, 400)
    found = []
    usable = [fit for fit in fits if fit.problem is None and fit.parameters is not None]
    for i, first in enumerate(usable):
        for second in usable[i + 1 :]:
            first_ahead = first.predict(grid) > second.predict(grid)
            change = np.nonzero(first_ahead[1:] != first_ahead[:-1])[0]
            if change.size:
                at = int(change[0]) + 1
                ahead, behind = (first, second) if first_ahead[at] else (second, first)
                found.append((ahead.name, behind.name, float(grid[at])))
    return found


def _count(value: float | None) -> str:
    """A number of examples, "not reached" for infinity."""
    if value is None:
        return MISSING
    return "not reached" if math.isinf(value) else number(round(value))


def _needed_cell(fit: LabelsNeeded, target: float) -> str:
    """Train examples to reach ``target`` with their interval; measured where a point already reaches it."""
    reached = [size for size, accuracy in zip(fit.sizes, fit.measured) if accuracy >= target - 1e-9]
    if reached:
        return f"reached (measured at {reached[0]:,})"
    if fit.needed is None or fit.meaningless:
        return MISSING
    if fit.needed_interval is None or all(math.isinf(value) for value in (fit.needed, *fit.needed_interval)):
        return _count(fit.needed)
    low, high = fit.needed_interval
    return f"{_count(fit.needed)} ({_count(low)}–{_count(high)})"


def _holdout_cell(fit: LabelsNeeded) -> str:
    """The fit on the smaller sizes against the largest size measured."""
    if fit.holdout is None:
        return MISSING
    size, predicted, measured = fit.holdout
    return f"{metric(predicted)} vs {metric(measured)} at {size} ({predicted - measured:+.3f})"


def fitted_points(fit: LabelsNeeded) -> list[tuple[float, float]]:
    """The fitted curve from the smallest size to ``EXTRAPOLATE`` times the largest, for the figure."""
    grid = np.geomspace(fit.sizes[0], fit.sizes[-1] * EXTRAPOLATE, 60)
    return list(zip(grid.tolist(), fit.predict(grid).tolist()))


def labels_needed_part(summary: Summary, target: float | None) -> tuple[str, list[LabelsNeeded], float]:
    """The "Labels needed" subsection, the fits and the target used; an empty text without curves."""
    best = summary.entries[0].accuracy if summary.entries else 0.0
    goal = best if target is None else target
    fits = [fit for name in sorted(summary.curves) if (fit := labels_needed(summary, name, goal)) is not None]
    if not fits:
        return "", [], goal
    largest = max(size for fit in fits for size in fit.sizes)
    sizes = summary.run.splits.sizes if summary.run else {}
    validation = sizes.get("validation", 0) / sizes["train"] if sizes.get("train") else 0.0
    whose = "the best accuracy measured in this run" if target is None else "`--target-accuracy`"
    rows = [
        [
            text(fit.name),
            MISSING if fit.parameters is None or fit.meaningless else interval(fit.parameters[0], fit.asymptote_interval),
            _needed_cell(fit, goal),
            _holdout_cell(fit),
            "yes" if fit.problem is None else f"no: {fit.problem}",
        ]
        for fit in fits
    ]
    parts = [
        "### Labels needed",
        f"Should you label more data? Each curve above is fitted with an inverse power law, accuracy(n) = a − b·n^(−c) "
        f"(scipy's `curve_fit`; n is labelled train examples); the usable fits are drawn dashed in the figure, up to "
        f"{EXTRAPOLATE}× the largest size measured. a is the accuracy the strategy heads for with unlimited labels. "
        f"Target: **{metric(goal)}** ({whose}). "
        f"95% intervals come from {RESAMPLES} bootstrap resamples of the test examples and seeds, each refitted. "
        "Cells of a fit that says nothing (it misses the points or never flattens) are left empty. "
        "The last column checks the method: the curve fitted without "
        "the largest size, predicting it."
        + (f" Validation adds {validation:.0%} to the train examples counted here." if validation else ""),
        table(
            [
                "strategy",
                "heads for (95% CI)",
                f"train examples to reach {metric(goal)} (95% CI)",
                "fit without the largest size: predicted vs measured",
                "fit usable",
            ],
            rows,
        ),
    ]
    sentences = [
        f"{code(ahead)} is predicted to overtake {code(behind)} at about {number(round(at))} train examples."
        for ahead, behind, at in crossings(fits, largest)
    ]
    uncertain = [fit.name for fit in fits if fit.problem is not None]
    if uncertain:
        sentences.append(
            f"Too uncertain to use: {', '.join(code(name) for name in uncertain)} (see the last column); measure more train sizes "
            "or seeds before trusting their numbers."
        )
    if not sentences:
        sentences.append(f"No two usable curves are predicted to cross below {number(largest * EXTRAPOLATE)} train examples.")
    parts.append(" ".join(sentences))
    return "\n\n".join(parts), fits, goal
