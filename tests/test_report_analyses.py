"""The report's answers to the next questions: multiple comparisons, what the test set can see,
calibration, labels needed and cost per prediction (statistics checked against independent
calculations; sections rendered from run folders built here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_harness import run_cli

from slmbench import records
from slmbench.engine.metrics import classification_metrics
from slmbench.report import stats
from slmbench.report.calibration import expected_calibration_error, reliability_bins
from slmbench.report.cost import break_even
from slmbench.report.labels_needed import examples_to_reach, fit_power_law, labels_needed, power_law
from slmbench.report.options import ReportOptions
from slmbench.report.render import render_report
from slmbench.report.summary import load_summary

LABELS = ["negative", "neutral", "positive"]
PROFILE = records.Budget(
    name="toy",
    max_train_examples=None,
    max_validation_examples=None,
    max_test_examples=None,
    max_input_tokens=64,
    max_train_steps=None,
    batch_size=8,
)
N_TEST = 300
GOLD = [i % 3 for i in range(N_TEST)]


# --- Holm --------------------------------------------------------------------------------------------


def test_holm_matches_the_step_down_procedure_worked_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert stats.holm([0.04, None, 0.01, 0.03]) == pytest.approx([0.06, None, 0.03, 0.06])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]
    assert stats.holm([]) == []


# --- what the test set can see ------------------------------------------------------------------------


def _mcnemar_power_by_simulation(n: int, psi: float, difference: float, exact: bool = False, draws: int = 20000) -> float:
    """Share of simulated paired test sets on which McNemar's test rejects at 0.05: the asymptotic
    (uncorrected) test Connor's formula is for, or the exact binomial test the report runs."""
    from scipy.stats import binom

    rng = np.random.default_rng(0)
    only_a, only_b, _ = rng.multinomial(n, [(psi + difference) / 2, (psi - difference) / 2, 1 - psi], size=draws).T
    discordant = only_a + only_b
    if exact:
        tail = np.minimum(binom.cdf(only_a, discordant, 0.5), binom.sf(only_a - 1, discordant, 0.5))
        return float(np.mean(np.minimum(1.0, 2 * tail) < 0.05))
    return float(np.mean(np.abs(only_a - only_b) / np.sqrt(np.maximum(discordant, 1)) > 1.959964))


@pytest.mark.parametrize(("n", "psi"), [(200, 0.127), (200, 0.3), (1000, 0.08)])
def test_detectable_accuracy_difference_has_80_percent_power_in_simulation(n: int, psi: float) -> None:
    """Connor's formula, inverted, agrees with simulated McNemar tests: power at the detectable difference ~0.80
    (0.83 where only ~25 examples are discordant), a little less for the more conservative exact test, and the
    examples it says a difference needs give that power back."""
    difference = stats.mcnemar_detectable_difference(n, psi)
    assert difference is not None and 0 < difference < psi
    assert _mcnemar_power_by_simulation(n, psi, difference) == pytest.approx(0.80, abs=0.04)
    assert 0.72 <= _mcnemar_power_by_simulation(n, psi, difference, exact=True) <= 0.80
    assert stats.mcnemar_examples_needed(psi, difference) == pytest.approx(n, rel=0.01)
    assert _mcnemar_power_by_simulation(n, psi, difference / 2) < 0.4  # half the difference is mostly missed


def test_detectable_difference_is_undefined_without_disagreement() -> None:
    assert stats.mcnemar_detectable_difference(200, 0.0) is None
    assert stats.mcnemar_detectable_difference(200, 0.035) is None  # 7 discordant examples: even 7-0 is not 80% power
    assert stats.mcnemar_examples_needed(0.1, 0.0) is None
    assert stats.mcnemar_examples_needed(0.1, 0.2) is None  # a difference larger than the disagreement


def test_the_bootstrap_route_used_for_macro_f1_agrees_with_connor_on_accuracy() -> None:
    """Macro-F1 has no closed form; its route (z x paired bootstrap standard error), applied to accuracy,
    must agree with the closed form for accuracy."""
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, 400)
    a = np.where(rng.random(400) < 0.8, gold, (gold + 1) % 3)
    b = np.where(rng.random(400) < 0.15, (a + 1) % 3, a)  # B differs from A on ~15% of examples
    psi, _ = stats.discordance(gold, [a], [b])
    se = stats.paired_difference_se(gold, [a], [b], stats.accuracy, n_resamples=4000)
    closed_form = stats.mcnemar_detectable_difference(400, psi)
    assert closed_form is not None
    assert stats.detectable_by_se(se) == pytest.approx(closed_form, rel=0.1)


# --- calibration --------------------------------------------------------------------------------------


def test_ece_of_a_calibrated_and_an_overconfident_predictor() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.0, 1.0, 20000)
    calibrated = (rng.random(20000) < confidence).astype(float)
    assert expected_calibration_error(reliability_bins(confidence, calibrated)) < 0.02
    overconfident = (rng.random(20000) < confidence * 0.7).astype(float)
    assert expected_calibration_error(reliability_bins(confidence, overconfident)) == pytest.approx(0.15, abs=0.02)


def test_reliability_bins_worked_by_hand() -> None:
    confidence = np.array([0.05, 0.15, 0.95, 0.95, 1.0])
    outcome = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    bins = reliability_bins(confidence, outcome)
    assert bins == [(0.05, 0.0, 1), (0.15, 1.0, 1), (pytest.approx(0.9666667), pytest.approx(2 / 3), 3)]
    # |0 - .05| / 5 + |1 - .15| / 5 + 3 |2/3 - .9667| / 5
    assert expected_calibration_error(bins) == pytest.approx((0.05 + 0.85 + 3 * 0.3) / 5)


# --- labels needed ------------------------------------------------------------------------------------


def test_power_law_fit_recovers_a_known_curve_and_the_labels_it_needs() -> None:
    sizes = np.array([50.0, 100, 200, 400, 800, 1600])
    parameters = fit_power_law(sizes, power_law(sizes, 0.85, 2.0, 0.5))
    assert parameters == pytest.approx((0.85, 2.0, 0.5), rel=1e-3)
    # 0.85 - 2 / sqrt(n) = 0.8  ->  n = (2 / 0.05)^2 = 1600
    assert examples_to_reach((0.85, 2.0, 0.5), 0.8) == pytest.approx(1600)
    assert examples_to_reach((0.85, 2.0, 0.5), 0.9) == float("inf")
    assert examples_to_reach((0.9, 0.2, 0.01), 0.8999) == float("inf")  # (0.2 / 1e-4)^100 overflows a float power


# --- sections, from run folders ------------------------------------------------------------------------


def _predictions(rng: np.random.Generator, accuracy: float, sharp: float | None) -> records.PredictionRecord:
    """Predictions right on ``accuracy`` of GOLD (rounded), at random examples; probabilities of confidence
    ``sharp`` (None: none)."""
    right = np.zeros(N_TEST, dtype=bool)
    right[rng.permutation(N_TEST)[: round(accuracy * N_TEST)]] = True
    predicted = [g if ok else (g + 1) % 3 for g, ok in zip(GOLD, right)]
    probabilities = None
    if sharp is not None:
        probabilities = [[sharp if k == p else (1 - sharp) / 2 for k in range(3)] for p in predicted]
    return records.PredictionRecord(gold=GOLD, predicted=predicted, probabilities=probabilities)


def _trial(
    name: str, family: str, seed: int, accuracy: float, sharp: float | None, train_size: int | None, train: int, **cost
) -> records.TrialRecord:
    rng = np.random.default_rng(hash((name, seed, train_size)) % 2**32)
    predictions = _predictions(rng, accuracy, sharp)
    config = records.TrialConfig(
        strategy=name, task="toy", task_path="toy.yaml", profile=PROFILE, seed=seed, train_size=train_size,
        models=records.ModelsConfig(causal_lm="lm", embedding_model="embedder"),
    )  # fmt: skip
    return records.TrialRecord(
        strategy=name,
        family=family,
        status="ok",
        labels=LABELS,
        config=config,
        metrics=classification_metrics(GOLD, predictions.predicted, LABELS),
        cost=records.Cost(**{"train_seconds": 10.0, "predict_seconds": 1.0, "latency_ms_per_example": 5.0, **cost}),
        predictions=predictions,
        train_examples=train_size or train,
        learns_from_train=family != "prompting",
        models=records.ModelsConfig(causal_lm="lm", embedding_model="embedder", device="cpu"),
    )


def _true_curve(n: int) -> float:
    """The fine-tune's true learning curve: 0.77 at 50 train examples, 0.89 at 1000, heading for 0.9."""
    return float(power_law(np.array(float(n)), 0.9, 3.0, 0.8))


def _run(
    directory: Path,
    seeds: tuple[int, ...] = (0, 1, 2),
    sizes: tuple[int, ...] = (50, 100, 200, 400),
    curve: Callable[[int], float] = _true_curve,
) -> Path:
    """A 3-class run: a fine-tune that trains for long and predicts fast, a prompting strategy that builds in
    no time and predicts slowly (no probabilities for one of them), and learning curves for the fine-tune."""
    train = 1000
    splits = records.SplitSummary(
        sizes={"train": train, "validation": 200, "test": N_TEST},
        per_class={"test": {"negative": 100, "neutral": 100, "positive": 100}},
    )
    records.write_run(directory, records.RunRecord(task="toy", run_id="r", labels=LABELS, seeds=list(seeds), splits=splits))
    trials = []
    for seed in seeds:
        whole = curve(train)
        trials.append(_trial("finetune", "full", seed, whole, 0.95, None, train, train_seconds=300.0, latency_ms_per_example=2.0))
        trials.append(_trial("zero-shot", "prompting", seed, 0.6, 0.6, None, train, train_seconds=5.0, latency_ms_per_example=50.0))
        trials.append(_trial("knn", "retrieval", seed, 0.8, None, None, train, train_seconds=20.0, latency_ms_per_example=3.0))
        for size in sizes:
            accuracy = curve(size)
            trials.append(_trial("finetune", "full", seed, accuracy, 0.95, size, train, train_seconds=300.0, latency_ms_per_example=2.0))
    for trial in trials:
        records.write_trial(records.trial_file(directory, records.trial_key(trial.name, trial.seed, trial.train_size)), trial, directory)
    return directory


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].strip()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("analyses") / "r")


@pytest.fixture(scope="module")
def report(run_dir: Path) -> str:
    """The run's report with the default options, rendered once for the tests that only read it."""
    return render_report(run_dir).read_text()


def test_leaderboard_p_values_are_holm_adjusted_and_say_so(report: str) -> None:
    leaderboard = _section(report, "Leaderboard")
    assert "p vs #1 (Holm)" in leaderboard and "Holm's step-down method" in leaderboard and "2 comparisons" in leaderboard


def test_the_test_set_section_gives_the_detectable_differences(report: str) -> None:
    section = _section(report, "What this test set can see")
    assert f"The {N_TEST} test examples" in section and "`finetune` and `knn`" in section
    assert "an accuracy difference of at least **0." in section and "a macro-F1 difference of at least **0." in section
    assert "smallest class" in section


def test_calibration_for_every_strategy_with_probabilities_and_a_note_for_the_others(report: str, run_dir: Path) -> None:
    section = _section(report, "Calibration")
    rows = [line.split(" | ")[0].strip("| ") for line in section.splitlines() if line.startswith("| ") and "strategy" not in line]
    assert rows[:2] == ["finetune", "zero-shot"] and "knn" not in rows
    assert "No probabilities, so no calibration: `knn`." in section
    assert "![Reliability diagrams, 10 bins](reliability.png)" in section and (run_dir / "reliability.png").stat().st_size > 0
    # finetune is 0.95 confident and right on 89%: overconfident by 0.06
    finetune = next(line for line in section.splitlines() if line.startswith("| finetune |")).split(" | ")
    assert float(finetune[1]) == pytest.approx(0.95 - 0.89, abs=0.01)


def test_labels_needed_from_the_learning_curve(run_dir: Path) -> None:
    fit = labels_needed(load_summary(run_dir), "finetune", 0.86)
    assert fit is not None and fit.parameters is not None and fit.problem is None
    assert fit.sizes == [50, 100, 200, 400, 1000]
    assert fit.parameters[0] == pytest.approx(0.9, abs=0.02)
    assert fit.asymptote_interval is not None and fit.asymptote_interval[0] < fit.parameters[0] < fit.asymptote_interval[1]
    assert fit.needed is not None and fit.needed_interval is not None and fit.needed_interval[0] <= fit.needed <= fit.needed_interval[1]
    assert fit.needed == pytest.approx(75**1.25, rel=0.2)  # 0.9 - 3 n^-0.8 = 0.86 at n = 75^1.25 = 220
    assert fit.holdout is not None and fit.holdout[0] == 1000 and abs(fit.holdout[1] - fit.holdout[2]) < 0.05
    text = render_report(run_dir, options=ReportOptions(target_accuracy=0.86)).read_text()
    section = _section(text, "Learning curves")
    assert "### Labels needed" in section and "Target: **0.860** (`--target-accuracy`)" in section
    assert "| finetune |" in section.split("### Labels needed")[1]
    default = _section(render_report(run_dir).read_text(), "Learning curves")  # target: the best measured, finetune's own
    assert "| reached (measured at 1,000) |" in default


def test_a_fit_on_too_few_sizes_is_called_too_uncertain(tmp_path: Path) -> None:
    run_dir = _run(tmp_path / "r", seeds=(0,), sizes=(100,))
    fit = labels_needed(load_summary(run_dir), "finetune", 0.85)
    assert fit is not None and fit.problem == "2 train sizes measured; a fit needs at least 4"
    assert "Too uncertain to use: `finetune`" in render_report(run_dir).read_text()


def test_a_curve_that_does_not_flatten_is_no_basis_for_labels_needed(tmp_path: Path) -> None:
    """Accuracy still rising by the same step per doubling: the fit heads for 1 and says it is a guess."""
    run_dir = _run(tmp_path / "r", seeds=(0,), curve=lambda n: 0.35 + 0.05 * float(np.log2(n)))
    fit = labels_needed(load_summary(run_dir), "finetune", 0.9)
    assert fit is not None and fit.problem == "the curve shows no sign of flattening yet (the fit heads for accuracy 1)"


def test_a_curve_that_falls_and_rises_is_no_saturating_curve(tmp_path: Path) -> None:
    """few-shot on financial_sentiment went 0.62, 0.26, 0.28, 0.40 from 16 to 1,000 examples: a flat 'fit' is no model."""
    points = {50: 0.62, 100: 0.26, 200: 0.28, 400: 0.33, 1000: 0.40}
    run_dir = _run(tmp_path / "r", seeds=(0,), curve=lambda n: points[n])
    fit = labels_needed(load_summary(run_dir), "finetune", 0.9)
    assert fit is not None and fit.problem is not None and fit.problem.startswith("the points do not follow a saturating curve (R² = ")


def test_too_few_disagreements_are_said_plainly(tmp_path: Path) -> None:
    run_dir = _run(tmp_path / "r", seeds=(0,), sizes=())
    finetune = records.read_trial(records.trial_file(run_dir, "finetune.seed0"))
    twin = finetune.model_copy(update={"strategy": "twin", "config": finetune.config.model_copy(update={"strategy": "twin"})})
    predicted = list(finetune.predictions.predicted)
    for i in range(0, 12, 3):  # the twin is wrong where finetune is right on 4 examples (of 300)
        if predicted[i] == GOLD[i]:
            predicted[i] = (GOLD[i] + 1) % 3
    twin.predictions = finetune.predictions.model_copy(update={"predicted": predicted})
    records.write_trial(records.trial_file(run_dir, "twin.seed0"), twin, run_dir)
    section = _section(render_report(run_dir).read_text(), "What this test set can see")
    assert "too few disagreements" in section and "less than 80% power" in section


def test_cost_section_in_device_seconds_without_prices_and_in_money_with_them(report: str, run_dir: Path) -> None:
    plain = _section(report, "Cost per prediction")
    assert "| strategy | device | build (s) | per 1,000 batched (s) |" in plain and "(price)" not in plain
    # finetune: 300 s to build, 2 ms per prediction; zero-shot 5 s and 50 ms: equal at 295 / 0.048 = 6,146 predictions
    assert "| finetune | from 6,146 |" in plain
    assert (run_dir / "cost_per_volume.png").stat().st_size > 0
    priced = _section(render_report(run_dir, options=ReportOptions(price_per_hour=(("cpu", 3.6),))).read_text(), "Cost per prediction")
    assert "build (price)" in priced and "| finetune | cpu | 300 | 2 |" in priced and "| 0.3 | 0.002 |" in priced
    unpriced = _section(render_report(run_dir, options=ReportOptions(price_per_hour=(("cuda", 2.5),))).read_text(), "Cost per prediction")
    assert "no price was given for `cpu`" in unpriced and "(price)" not in unpriced


def test_strategies_on_different_unpriced_devices_are_not_compared(tmp_path: Path) -> None:
    run_dir = _run(tmp_path / "r", seeds=(0,), sizes=())
    zero_shot = records.read_trial(records.trial_file(run_dir, "zero-shot.seed0"))
    assert zero_shot.models is not None
    zero_shot.models = zero_shot.models.model_copy(update={"device": "cuda:0"})
    records.write_trial(records.trial_file(run_dir, "zero-shot.seed0"), zero_shot, run_dir)
    section = _section(render_report(run_dir).read_text(), "Cost per prediction")
    assert "ran on different devices (`cpu`, `cuda`)" in section and "Break-even" not in section
    assert not (run_dir / "cost_per_volume.png").exists()
    priced = render_report(run_dir, options=ReportOptions(price_per_hour=(("cpu", 0.1), ("cuda", 2.5)))).read_text()
    assert "Break-even" in _section(priced, "Cost per prediction")


def test_break_even_cells() -> None:
    assert break_even(300, 0.002, 5, 0.05) == "from 6,146"
    assert break_even(1, 0.001, 5, 0.05) == "always"
    assert break_even(10, 0.06, 5, 0.05) == "never"
    assert break_even(1, 0.06, 5, 0.05) == "up to 400"


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--price-per-hour", "cpu"], "expected DEVICE=PRICE"),
        (["--price-per-hour", "cpu=cheap"], "is not a number"),
        (["--price-per-hour", "cpu=-1"], "0 or more"),
        (["--price-per-hour", "cuda:0=2.5"], "priced by kind"),
        (["--target-accuracy", "1.5"], "between 0 and 1"),
    ],
)
def test_bad_report_flags_are_named_errors(run_dir: Path, flag: list[str], message: str) -> None:
    result = run_cli(["report", str(run_dir), *flag], cwd=run_dir.parent, kind="cli argument", invalid=True)
    assert result.code == 2 and flag[0] in result.stderr and message in result.stderr, result
    assert result.outcome == "clean error" and not result.outside
