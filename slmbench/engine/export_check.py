"""The export check: a trial exported to a temporary folder, every form reloaded from the export alone
and scored on the test split: its agreement with the trial's own predictions, accuracy, size on disk
and single-request latency (``export_check.json``, the report's deployment section).

Unquantized, every form is expected to agree exactly; anything less is what the report shows.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from slmbench.common.text import first_line
from slmbench.engine.exporting import SLMBENCH_FORM, export_trial, open_export
from slmbench.engine.model_cache import ModelCache
from slmbench.engine.predictions import check_predictions
from slmbench.engine.reuse import SavedTrial, check_trial, find_trial, finished_trials, load_trial
from slmbench.engine.serving import single_request_latency, uncached
from slmbench.lm.exported import form_bytes
from slmbench.records import ExportChecks, ExportForm, ExportParity, FormParity, TrialRecord, read_test_texts, write_json
from slmbench.records.store import EXPORT_CHECKS
from slmbench.strategy.base import Strategy
from slmbench.tasks.examples import Predictions

Which = Literal["recommended", "all"]


def export_check(
    run_dir: Path,
    strategies: Callable[[str], type[Strategy]],
    which: Which = "recommended",
    constraints: Any = None,
    requests: int = 20,
    say: Callable[[str], None] = lambda line: None,
) -> ExportChecks:
    """Check the exports of the recommended trial (or of every reusable one) and write ``export_check.json``."""
    texts = read_test_texts(run_dir) or []
    checks = ExportChecks(checked=which)
    for saved in _trials(run_dir, strategies, which, constraints):
        say(f"export check: {saved.record.name} seed {saved.record.seed} exported, each form reloaded and scored on the test split")
        checks.trials.append(check_trial_export(saved, strategies, texts, requests))
        gc.collect()
    write_json(Path(run_dir) / EXPORT_CHECKS, checks.model_dump(mode="json"))
    return checks


def _trials(run_dir: Path, strategies: Callable[[str], type[Strategy]], which: Which, constraints: Any) -> list[SavedTrial]:
    """The recommended trial at its best seed on validation, or every finished whole-split trial whose strategy saves and loads."""
    from slmbench.engine.reuse import ReuseError
    from slmbench.report.summary import load_summary

    if which == "recommended":
        try:
            return [find_trial(run_dir, None, None, constraints)]
        except ReuseError:
            return []
    return finished_trials(load_summary(run_dir), strategies, lambda strategy: strategy.reusable())


def check_trial_export(saved: SavedTrial, strategies: Callable[[str], type[Strategy]], texts: Sequence[str], requests: int) -> ExportParity:
    """Export ``saved`` to a temporary folder and score each form reloaded from it alone."""
    record = saved.record
    parity = ExportParity(trial=saved.key, name=record.name, seed=record.seed)
    if record.predictions is None or len(texts) != len(record.predictions.gold):
        parity.error = "the run's test texts (test_texts.json) do not match the trial's predictions"
        return parity
    with tempfile.TemporaryDirectory(prefix="slmbench-export-check-") as scratch:
        directory = Path(scratch) / "export"
        try:
            export_trial(check_trial(saved, strategies), strategies, directory, ModelCache(None))
            return score_export(directory, strategies, texts, requests)
        except Exception as error:  # noqa: BLE001 - a trial that cannot be exported or read back is reported, never fatal to the run
            parity.error = f"{type(error).__name__}: {first_line(error)}"
            return parity


def score_export(directory: Path, strategies: Callable[[str], type[Strategy]], texts: Sequence[str], requests: int) -> ExportParity:
    """Every form of the export in ``directory``, read back from it alone (manifest, trial, forms) and
    scored on ``texts``, the test texts of the trial it holds."""
    manifest, exported = open_export(directory)
    record = exported.record
    parity = ExportParity(trial=exported.key, name=record.name, seed=record.seed)
    strategy = load_trial(check_trial(exported, strategies), strategies, ModelCache(None))
    for form in manifest.forms:
        parity.forms.append(_score_form(form, directory, strategy, record, list(texts), requests))
        gc.collect()
    return parity


def _score_form(form: ExportForm, directory: Path, strategy: Strategy, record: TrialRecord, texts: list[str], requests: int) -> FormParity:
    """``form`` reloaded from ``directory``: its predictions on the test texts against the trial's."""
    from slmbench.common.files import folder_bytes

    assert record.predictions is not None  # check_trial_export made sure
    parity = FormParity(kind=form.kind, path=form.path, quantization=form.quantization)
    try:
        parity.size_bytes = folder_bytes(directory / SLMBENCH_FORM) if form.kind == "slmbench" else form_bytes(directory, form)
        predict = (
            uncached(strategy.predict, strategy.context.models) if form.kind == "slmbench" else strategy.form_predictor(form, directory)
        )
        predictions: Predictions = predict(texts)
        check_predictions(predictions, len(texts), len(record.labels))
        predicted = [int(label) for label in predictions.labels]
        parity.agreement = round(sum(a == b for a, b in zip(predicted, record.predictions.predicted)) / len(texts), 5)
        parity.accuracy = round(sum(a == b for a, b in zip(predicted, record.predictions.gold)) / len(texts), 5)
        parity.single_request = single_request_latency(predict, texts, requests, record.seed)
    except Exception as error:  # noqa: BLE001 - a form that fails to load or predict is reported, not fatal
        parity.error = f"{type(error).__name__}: {first_line(error)}"
    return parity
