"""The kit's checks: each runs a strategy through the real trial on the toy task and raises
``StrategyCheckError`` naming what is wrong."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmbench.lm.models import SharedModel
from slmbench.strategy.base import CombiningStrategy, Strategy
from slmbench.testing.toys import TOY_MEMBERS, many_labels_task_files, tiny_models, toy_task_files

HEAVY_MODULES = ("torch", "transformers", "sklearn", "scipy", "matplotlib", "sentence_transformers", "peft", "faiss", "pandas")


class StrategyCheckError(AssertionError):
    """A strategy broke the protocol; the message says which check and what was wrong."""


def _fail(check: str, strategy: type[Strategy], problem: str) -> None:
    raise StrategyCheckError(f"{check} failed for {getattr(strategy, '__name__', strategy)}: {problem}")


def check_registration(strategy: type[Strategy]) -> None:
    """The class is what ``register`` accepts: a Strategy with name, description, family, valid options."""
    from slmbench.strategy.registry import _check_strategy

    try:
        _check_strategy(strategy)
    except Exception as error:  # noqa: BLE001 - reported as the check's failure
        _fail("check_registration", strategy, str(error))


def check_light_import(strategy: type[Strategy]) -> None:
    """Importing the strategy's module in a fresh interpreter loads none of ``HEAVY_MODULES``.

    The interpreter gets this one's ``sys.path``, so a module pytest or a test put on the path is found.
    """
    if strategy.__module__ == "__main__":
        _fail("check_light_import", strategy, "the class is defined in __main__: define it in an importable module")
    code = (
        f"import sys, importlib; importlib.import_module({strategy.__module__!r}); print(sorted(set({HEAVY_MODULES!r}) & set(sys.modules)))"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environment)
    if result.returncode != 0:
        _fail("check_light_import", strategy, f"importing {strategy.__module__} failed: {result.stderr.strip()[-500:]}")
    loaded = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "[]"
    if loaded != "[]":
        _fail("check_light_import", strategy, f"importing {strategy.__module__} loads {loaded}: import them inside fit/predict")


@dataclass(frozen=True)
class TrialOutcome:
    """A real trial of a strategy on a toy task, and what the check needs from around it."""

    record: Any
    """Its ``TrialRecord``."""
    pickled: list[str]
    """Artifacts saved as pickles (relative paths)."""
    called: frozenset[SharedModel]
    """The shared models the strategy called (``SharedModels.called``)."""


def run_toy_trial(
    strategy: type[Strategy],
    seed: int = 0,
    task_files: Callable[[Path], Path] = toy_task_files,
    run_dir: Path | None = None,
) -> TrialOutcome:
    """A real trial of ``strategy`` (``slmbench.engine.trial.run_trial``) on a toy task written by
    ``task_files``, with the tiny models; a ``CombiningStrategy`` first gets trials of ``TOY_MEMBERS``.
    Its records and artifacts are laid out as in a run folder, in ``run_dir`` if given (kept: the
    caller's), else in a temporary folder removed on return."""
    if run_dir is None:
        with tempfile.TemporaryDirectory(prefix="slmbench-check-") as folder:
            return run_toy_trial(strategy, seed, task_files, Path(folder))
    from slmbench import records
    from slmbench.common.progress import ProgressReporter
    from slmbench.engine.model_cache import ModelCache
    from slmbench.engine.trial import run_trial
    from slmbench.tasks.profiles import get_profile

    causal_lm, embedder = tiny_models()
    task_path = task_files(run_dir / "task")
    config = records.TrialConfig(
        strategy=strategy.name,
        task_path=str(task_path),
        data_dir=str(task_path.parent),
        profile=get_profile("smoke"),
        seed=seed,
        models=records.ModelsConfig(causal_lm=str(causal_lm), embedding_model=str(embedder)),
    )
    cache = ModelCache(ProgressReporter(enabled=False))
    members = []
    for member in TOY_MEMBERS if issubclass(strategy, CombiningStrategy) else ():
        key = records.trial_key(member.name, seed)
        member_config = config.model_copy(update={"strategy": member.name})
        members.append(run_trial(member_config, member, cache, run_dir / "artifacts" / key))
        records.write_trial(records.trial_file(run_dir, key), members[-1], run_dir)
    inputs = {records.trial_key(member.strategy, seed): member.config_hash for member in members}
    key = records.trial_key(strategy.name, seed)
    record = run_trial(config.model_copy(update={"inputs": inputs}), strategy, cache, run_dir / "artifacts" / key, members=members)
    records.write_trial(records.trial_file(run_dir, key), record, run_dir)
    artifacts = run_dir / "artifacts" / key
    pickled = pickled_files(artifacts) if artifacts.is_dir() else []
    return TrialOutcome(record, pickled, frozenset(cache.models(config).called))


_first_trials: dict[tuple[type[Strategy], str], tuple[TrialOutcome, Path]] = {}


def _first_trial(strategy: type[Strategy], task_files: Callable[[Path], Path] = toy_task_files) -> TrialOutcome:
    """The seed-0 trial on a toy task, run once per process: check_protocol, check_reproducible and
    check_reusable share it."""
    return _first_trial_and_folder(strategy, task_files)[0]


def _first_trial_and_folder(strategy: type[Strategy], task_files: Callable[[Path], Path] = toy_task_files) -> tuple[TrialOutcome, Path]:
    """``_first_trial`` and its run folder, kept until the process exits (check_reusable reloads from it)."""
    key = (strategy, task_files.__name__)
    if key not in _first_trials:
        folder = Path(tempfile.mkdtemp(prefix="slmbench-check-"))
        atexit.register(shutil.rmtree, folder, True)
        _first_trials[key] = (run_toy_trial(strategy, task_files=task_files, run_dir=folder), folder)
    return _first_trials[key]


def _ended_ok(check: str, strategy: type[Strategy], record: Any, where: str = "") -> None:
    if not record.ok:
        error = record.error
        ending = f"{error.type}: {error.message}" if error else record.status
        _fail(check, strategy, f"the trial{where} ended {record.status}: {ending}")


PICKLE_OPCODE = 0x80
"""The first byte of every pickle of protocol 2 or later (torch.save, joblib and pickle.dump files)."""


def pickled_files(folder: Path) -> list[str]:
    """Files under ``folder`` (relative paths) that are pickles or zip archives holding one (torch.save)."""
    import zipfile

    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            start = handle.read(9)
        safetensors = start[8:9] == b"{"  # an 8-byte header length, then the JSON header
        pickled = len(start) >= 2 and start[0] == PICKLE_OPCODE and 2 <= start[1] <= 5 and not safetensors
        if not pickled and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickled = any(name.endswith(".pkl") for name in archive.namelist())
        if pickled:
            found.append(path.relative_to(folder).as_posix())
    return found


def check_protocol(strategy: type[Strategy]) -> None:
    """A real trial on the toy task finishes ``ok`` (the trial checks labels, probabilities and details),
    with sensible parameter counts, no pickled artifact, and the shared models it calls declared in
    ``metadata.calls`` and no others."""
    outcome = _first_trial(strategy)
    record = outcome.record
    _ended_ok("check_protocol", strategy, record)
    trainable, total = record.cost.trainable_params, record.cost.total_params
    if not (0 <= trainable <= total or total == 0):
        _fail("check_protocol", strategy, f"parameter_counts() gave trainable {trainable} > total {total}")
    if outcome.pickled:
        _fail(
            "check_protocol",
            strategy,
            f"artifacts saved as pickles: {', '.join(outcome.pickled)}: loading a pickle runs code; "
            "save tensors as safetensors and settings as JSON",
        )
    declared = set(strategy.metadata.calls)
    for kind in sorted(declared - outcome.called):
        _fail(
            "check_protocol",
            strategy,
            f"metadata.calls names the shared {kind.value} but fit and predict never call it: the run loads it for nothing "
            f"(if the results depend on which {kind.value} is chosen without calling it, say depends_on=(SharedModel.{kind.name},))",
        )
    for kind in sorted(outcome.called - declared):
        _fail(
            "check_protocol",
            strategy,
            f"it calls the shared {kind.value} without naming it in metadata.calls: it would load inside the timers "
            f"and its parameters would not count (add calls=(SharedModel.{kind.name},))",
        )


def check_many_labels(strategy: type[Strategy]) -> None:
    """A trial on a task of 20 labels, with one validation example of some and none of others, finishes ``ok``:
    a strategy degrades to what the data allows (and says so in its details) instead of failing."""
    _ended_ok("check_many_labels", strategy, _first_trial(strategy, many_labels_task_files).record, " on the 20-label task")


def check_reproducible(strategy: type[Strategy]) -> None:
    """Two trials with the same seed predict the same labels with the same probabilities (to 1e-4)."""
    import numpy as np

    first, second = _first_trial(strategy).record, run_toy_trial(strategy).record
    if not (first.ok and second.ok):
        _fail("check_reproducible", strategy, "a trial did not finish ok (see check_protocol)")
    hint = "seed every random choice with context.seed, and keep no state between instances"
    if first.predictions.predicted != second.predictions.predicted:
        different = sum(a != b for a, b in zip(first.predictions.predicted, second.predictions.predicted))
        _fail(
            "check_reproducible", strategy, f"{different} of {len(first.predictions.predicted)} predictions differ at the same seed: {hint}"
        )
    if (first.predictions.probabilities is None) != (second.predictions.probabilities is None):
        _fail("check_reproducible", strategy, "one trial gave probabilities and the other none")
    if first.predictions.probabilities is not None:
        gap = float(np.abs(np.subtract(first.predictions.probabilities, second.predictions.probabilities)).max())
        if gap > 1e-4:
            _fail("check_reproducible", strategy, f"probabilities differ by up to {gap:.4g} at the same seed: {hint}")


def check_reusable(strategy: type[Strategy]) -> None:
    """A strategy that implements ``save`` and ``load`` (both or neither), reloaded from its trial's artifacts
    by a new instance (``slmbench.engine.reuse.load_trial``, as ``slmbench predict`` does), predicts the
    test split exactly as the trial did: the same labels, the same probabilities to the record's 5 places.
    A strategy with neither still runs; ``slmbench predict`` says it cannot be reused."""
    import numpy as np

    from slmbench.engine.model_cache import ModelCache
    from slmbench.engine.reuse import SavedTrial, check_trial, load_trial
    from slmbench.records import trial_key
    from slmbench.tasks.examples import probability_rows
    from slmbench.tasks.spec import load_task

    overridden = [method for method in ("save", "load") if getattr(strategy, method) is not getattr(Strategy, method)]
    if len(overridden) == 1:
        _fail(
            "check_reusable", strategy, f"it implements {overridden[0]} without its counterpart: implement both save and load, or neither"
        )
    if not strategy.reusable():
        return
    classes = {cls.name: cls for cls in (strategy, *TOY_MEMBERS)}
    outcome, folder = _first_trial_and_folder(strategy)
    record = outcome.record
    _ended_ok("check_reusable", strategy, record)
    saved = SavedTrial(folder, trial_key(strategy.name, 0), record)
    reloaded = load_trial(check_trial(saved, classes.__getitem__), classes.__getitem__, ModelCache(None))
    test = ModelCache(None).splits(load_task(record.config.task_path), record.config).test
    predictions = reloaded.predict(test.texts)
    recorded = record.predictions
    if list(map(int, predictions.labels)) != recorded.predicted:
        different = sum(int(a) != b for a, b in zip(predictions.labels, recorded.predicted))
        _fail("check_reusable", strategy, f"reloaded by load, it predicts {different} of {len(recorded.predicted)} test labels differently")
    if recorded.probabilities is not None:
        reloaded_rows = probability_rows(predictions.labels, predictions.probabilities, len(record.labels))
        gap = float(np.abs(reloaded_rows - np.asarray(recorded.probabilities)).max())
        if gap > 6e-6:
            _fail("check_reusable", strategy, f"reloaded by load, its probabilities differ from the trial's by up to {gap:.3g}")


CHECKS: tuple[Callable[[type[Strategy]], None], ...] = (
    check_registration,
    check_light_import,
    check_protocol,
    check_reproducible,
    check_many_labels,
    check_reusable,
)


def check_strategy(strategy: type[Strategy]) -> None:
    """Run every check; raise StrategyCheckError listing every failure."""
    problems = []
    for check in CHECKS:
        try:
            check(strategy)
        except StrategyCheckError as error:
            problems.append(str(error))
    if problems:
        raise StrategyCheckError("\n".join(problems))


def parametrize_with_checks(strategies: list[type[Strategy]]) -> Any:
    """A ``pytest.mark.parametrize`` over (strategy, check): one test per check and strategy."""
    import pytest

    cases = [pytest.param(strategy, check, id=f"{strategy.name}-{check.__name__}") for strategy in strategies for check in CHECKS]
    return pytest.mark.parametrize(("strategy", "check"), cases)
