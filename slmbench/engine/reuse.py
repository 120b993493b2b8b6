"""Reusing a finished trial: which one (``find_trial``) and its strategy rebuilt from the run folder
(``load_trial``), ready to predict new texts without the train split.

A trial's artifact folder (``artifacts/<key>/``) holds what its strategy ``save``d and a copy of the
task file (``TASK_COPY``); its record (``trials/<key>.json``) holds the options, the seed, the
profile and the shared models. Nothing else is read: the data files and the train split are not needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.common.options import build_options
from slmbench.common.progress import ProgressReporter
from slmbench.common.text import first_line
from slmbench.engine.fitting import seed_everything
from slmbench.engine.predictions import rounded
from slmbench.records import TASK_COPY, ModelsConfig, RecordError, TrialConfig, TrialRecord, read_trial, trial_file
from slmbench.strategy.base import CombiningStrategy, NotReusable, RunContext, Strategy
from slmbench.tasks.examples import probability_rows

if TYPE_CHECKING:
    from slmbench.engine.model_cache import ModelCache
    from slmbench.report.recommend import Constraints
    from slmbench.tasks.spec import TaskSpec


class ReuseError(ValueError):
    """A run folder without the trial asked for, or a trial that cannot be reused (one line: exit 2)."""


@dataclass(frozen=True)
class SavedTrial:
    """A finished trial of a run folder: its record and where its artifacts are."""

    run_dir: Path
    key: str
    record: TrialRecord

    @property
    def artifact_dir(self) -> Path:
        return self.run_dir / "artifacts" / self.key


def find_trial(run_dir: Path, strategy: str | None = None, seed: int | None = None, constraints: Constraints | None = None) -> SavedTrial:
    """The trial of ``strategy`` (a variant or strategy name; default: the report's recommendation under
    ``constraints``) and ``seed`` (default: the seed with the best *validation* accuracy, never test)."""
    from slmbench.report.recommend import Constraints, recommend
    from slmbench.report.summary import load_summary

    summary = load_summary(run_dir)
    if strategy is None:
        choice = recommend(summary, constraints or Constraints()).choice
        if choice is None:
            raise ReuseError(f"{run_dir}: no trial finished ok, so there is no recommendation to use: name one with --strategy")
        strategy = choice.name
    whole = [trial for trial in summary.trials if trial.train_size is None]
    trials = [trial for trial in whole if trial.name == strategy] or [trial for trial in whole if trial.strategy == strategy]
    if not trials:
        names = sorted({trial.name for trial in whole})
        raise ReuseError(f"{run_dir}: no trial of {strategy!r} in this run folder (it has {', '.join(names) or 'none'})")
    if len({trial.name for trial in trials}) > 1:
        variants = ", ".join(sorted({trial.name for trial in trials}))
        raise ReuseError(f"--strategy {strategy}: the run has several variants of it ({variants}): name one")
    if seed is not None:
        trials = [trial for trial in trials if trial.seed == seed]
        if not trials:
            raise ReuseError(f"{run_dir}: {strategy} has no trial with seed {seed}")
    finished = [trial for trial in trials if trial.ok]
    if not finished:
        trial = trials[0]
        why = f": {trial.error.type}: {trial.error.message}" if trial.error else ""
        raise ReuseError(f"{run_dir}: the trial of {strategy} (seed {trial.seed}) ended {trial.status}{why}; it has nothing to reuse")
    best = max(finished, key=lambda trial: (validation_accuracy(trial), -trial.seed))
    return SavedTrial(Path(run_dir), _key(summary, best), best)


def validation_accuracy(trial: TrialRecord) -> float:
    """The trial's accuracy on the validation split (-1 where it recorded no validation predictions)."""
    predictions = trial.validation_predictions
    if predictions is None or not predictions.gold:
        return -1.0
    return sum(p == g for p, g in zip(predictions.predicted, predictions.gold)) / len(predictions.gold)


def _key(summary: Any, trial: TrialRecord) -> str:
    """The trial's key, from the file it was read from (``trials/<key>.json``)."""
    return next(file.key for file in summary.folder.trials if file.record is trial)


def finished_trials(summary: Any, strategies: Callable[[str], type[Strategy]], keep: Callable[[type[Strategy]], bool]) -> list[SavedTrial]:
    """The trials of a run (``summary``, ``load_summary``'s) that finished ``ok`` on the whole train split with a
    config, whose strategy is still installed and passes ``keep`` (the export and deployment checks choose from these)."""
    chosen = []
    for file in summary.folder.trials:
        record = file.record
        if record is None or not record.ok or record.train_size is not None or record.config is None:
            continue
        try:
            strategy = strategies(record.config.strategy)
        except Exception:  # noqa: BLE001 - a strategy no longer installed: nothing to rebuild
            continue
        if keep(strategy):
            chosen.append(SavedTrial(summary.directory, file.key, record))
    return chosen


@dataclass(frozen=True)
class CheckedTrial:
    """A finished trial that can be rebuilt, checked before any model loads."""

    saved: SavedTrial
    config: TrialConfig
    strategy: type[Strategy]
    task: TaskSpec
    """The task as the trial ran it: the copy in its artifact folder (``TASK_COPY``)."""

    @property
    def models(self) -> ModelsConfig:
        """The shared models as the trial resolved them (device, dtype), or as configured in older records."""
        return self.saved.record.models or self.config.models


def check_trial(saved: SavedTrial, strategies: Callable[[str], type[Strategy]]) -> CheckedTrial:
    """``saved`` with its config, strategy class and task; ReuseError or NotReusable, in one line, when it
    cannot be rebuilt (failed, its strategy saves nothing, its artifacts were not kept).
    ``strategies``: the class of a strategy name (``Registry.strategy``)."""
    from slmbench.tasks.spec import load_task

    record = saved.record
    if not record.ok:
        raise ReuseError(f"{saved.run_dir}: trial {saved.key} ended {record.status}; it has nothing to reuse")
    if record.config is None:
        raise ReuseError(f"{saved.run_dir}: trial {saved.key} was recorded without its config (an early slmbench): rerun it")
    strategy_cls = strategies(record.config.strategy)
    if not strategy_cls.reusable():
        raise NotReusable(f"strategy {strategy_cls.name} does not implement save and load: its trial {saved.key} cannot be reused")
    if not (saved.artifact_dir / TASK_COPY).is_file():
        raise NotReusable(
            f"{saved.artifact_dir}: the artifacts of trial {saved.key} were not kept (--keep-artifacts none) or were deleted: "
            "rerun the trial to reuse it"
        )
    return CheckedTrial(saved, record.config, strategy_cls, load_task(saved.artifact_dir / TASK_COPY))


def prediction_device(recorded: str, requested: str | None) -> str:
    """Where a reloaded trial predicts: ``requested`` (``--device``, ``auto`` allowed), else where it ran;
    ReuseError when this machine has no such device."""
    import torch

    from slmbench.lm.models import choose_device, not_a_device

    device = choose_device(requested) if requested is not None else recorded
    if problem := not_a_device(device):
        raise ReuseError(problem)
    flag = f"--device {requested}" if requested is not None else f"the trial ran on {recorded}, and"
    kind = torch.device(device).type
    if (kind == "cuda" and not torch.cuda.is_available()) or (kind == "mps" and not torch.backends.mps.is_available()):
        raise ReuseError(f"{flag} this machine has no {kind} device: pass --device cpu (or auto)")
    return device


def load_trial(
    checked: CheckedTrial, strategies: Callable[[str], type[Strategy]], cache: ModelCache, device: str | None = None
) -> Strategy:
    """The checked trial's strategy rebuilt from its artifacts (``Strategy.load``), its shared models
    (from ``cache``, shared with its members) on ``device`` (default: where it ran); a combining
    strategy's members rebuilt likewise, those it combined."""
    saved, config, strategy_cls = checked.saved, checked.config, checked.strategy
    models_config = checked.models.model_copy(update={"device": prediction_device(checked.models.device, device)})
    models = cache.models(config.model_copy(update={"models": models_config}))
    try:
        for kind in strategy_cls.metadata.calls:
            models.load(kind)
    except (OSError, RuntimeError, ValueError) as error:
        raise ReuseError(f"the shared models of trial {saved.key} cannot be loaded on {models.device}: {first_line(error)}") from None
    seed_everything(config.seed)  # building a model to load weights into draws random initial values
    context = RunContext(
        task=checked.task,
        models=models,
        device=models.device,
        dtype=models.dtype,
        seed=config.seed,
        budget=config.profile,
        artifact_dir=saved.artifact_dir,
        progress=cache.progress or ProgressReporter(enabled=False),
        options=build_options(config.strategy, strategy_cls.Options, saved.record.options),
    )
    if issubclass(strategy_cls, CombiningStrategy):
        members = [
            LiveMember(member.record.name, load_trial(check_trial(member, strategies), strategies, cache, device))
            for member in combined_members(saved)
        ]
        strategy: Strategy = strategy_cls(context, members)
    else:
        strategy = strategy_cls(context)
    try:
        strategy.load(saved.artifact_dir)
    except Exception as error:  # noqa: BLE001 - a plugin's load, on a folder that may be damaged: one line, naming the trial
        raise ReuseError(f"{saved.artifact_dir}: the artifacts of trial {saved.key} cannot be loaded: {first_line(error)}") from None
    return strategy


def combined_members(saved: SavedTrial) -> list[SavedTrial]:
    """The trials a combining strategy's trial combined: of those its config names, the ones that had
    finished ``ok`` with the config it names (as ``slmbench.engine.runner.finished_record`` chose them)."""
    assert saved.record.config is not None  # check_trial made sure
    members = []
    for key, config_hash in saved.record.config.inputs.items():
        try:
            record = read_trial(trial_file(saved.run_dir, key))
        except RecordError:
            continue
        if record.ok and record.config_hash == config_hash:
            members.append(SavedTrial(saved.run_dir, key, record))
    return members


@dataclass
class LiveMember:
    """A reloaded member of a combining strategy: its probabilities for any text, rounded as its trial
    recorded them (what the combining strategy was fitted on)."""

    name: str
    strategy: Strategy

    def rows(self, texts: Sequence[str]) -> Any:
        import numpy as np

        predictions = self.strategy.predict(texts)
        rows = probability_rows(predictions.labels, predictions.probabilities, len(self.strategy.context.task.labels))
        return np.asarray(rounded(rows), dtype=float)
