"""Fitting a trial's strategy: once with its options, or once per setting of the option search
(``slmbench.engine.tuning``), each fit checked and scored on validation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmbench.common.options import Options, build_options
from slmbench.engine.predictions import check_predictions
from slmbench.engine.tuning import searched
from slmbench.lm.memory import PeakMemory
from slmbench.lm.models import SharedModels
from slmbench.records import TrialConfig, TrialRecord, Tuning
from slmbench.strategy.base import CombiningStrategy, RunContext, Strategy
from slmbench.strategy.search_space import search_space
from slmbench.tasks.examples import Examples, Member, Predictions
from slmbench.tasks.profiles import Budget
from slmbench.tasks.spec import TaskSpec


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (on every device) for a reproducible trial."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Fit:
    """A fitted strategy, its validation predictions and what fitting it cost."""

    strategy: Strategy
    validation: Predictions
    seconds: float
    """Training time: the fit, or for an option search all of it (fits and validation passes: the cost of choosing)."""
    peak_bytes: int
    """Peak memory added where the models run while fitting and predicting validation (for a search: the
    largest of one setting); ``PeakMemory.peak_added_bytes``."""
    host_peak_bytes: int = 0
    """The same, of host memory (equal to ``peak_bytes`` on the CPU)."""


@dataclass
class TrialSetup:
    """What every fit of a trial shares: its task, splits (subsets at a learning-curve point), models,
    budget, the strategy's options and the predictions of the members it combines."""

    config: TrialConfig
    strategy_cls: type[Strategy]
    task: TaskSpec
    models: SharedModels
    budget: Budget
    train: Examples
    validation: Examples
    test: Examples
    defaults: Options
    """The strategy's options: its defaults with the trial's values set."""
    artifact_dir: Path
    progress: Any
    member_predictions: list[Member] = field(default_factory=list)
    """For a strategy that combines others: the predictions of the trials it combines."""

    @property
    def n_labels(self) -> int:
        return len(self.task.labels)

    def fit(self, values: dict[str, Any], directory: Path, report: Callable[[int, float], None] | None = None) -> Fit:
        """The strategy fitted with option ``values`` in ``directory``, its validation predictions checked;
        ``report`` is the option search's ``on_validation_loss``."""
        seed_everything(self.config.seed)
        directory.mkdir(parents=True, exist_ok=True)
        context = RunContext(
            task=self.task,
            models=self.models,
            device=self.models.device,
            dtype=self.models.dtype,
            seed=self.config.seed,
            budget=self.budget,
            artifact_dir=directory,
            progress=self.progress,
            options=build_options(self.config.strategy, self.strategy_cls.Options, values),
            **({"on_validation_loss": report} if report else {}),
        )
        with PeakMemory(self.models.device) as memory:
            strategy = (
                self.strategy_cls(context, self.member_predictions)
                if issubclass(self.strategy_cls, CombiningStrategy)
                else self.strategy_cls(context)
            )
            start = time.perf_counter()
            strategy.fit(self.train, self.validation)
            seconds = time.perf_counter() - start
            if strategy.reusable():  # before any prediction: what predict reloads is what was fitted
                strategy.save(directory)
            predictions = strategy.predict(self.validation.texts)
        check_predictions(predictions, len(self.validation), self.n_labels)
        return Fit(strategy, predictions, seconds, memory.peak_added_bytes, memory.host_added_bytes)


def fit_strategy(setup: TrialSetup, record: TrialRecord) -> Fit:
    """The trial's strategy fitted with its options, or the best setting of the option search when the
    strategy has options to search and the budget allows more than one setting."""
    space = searched(search_space(setup.strategy_cls), setup.config.options)
    if space and setup.budget.tuning_trials > 1:
        return _searched_fit(setup, space, record)
    return setup.fit(setup.defaults.model_dump(), setup.artifact_dir)


def _searched_fit(setup: TrialSetup, space: dict, record: TrialRecord) -> Fit:
    """The option search: each setting fitted in its own folder, the best one's kept (its artifacts
    become the trial's); ``record`` takes the chosen options and the search's account."""
    import shutil

    from slmbench.engine.tuning import METHOD, Candidate, search

    artifact_dir, validation_labels = setup.artifact_dir, setup.validation.labels
    trials = setup.budget.tuning_trials
    peaks: list[int] = []
    host_peaks: list[int] = []
    folders: list[Path] = []

    def fit(values: dict[str, Any], report: Any) -> Candidate:
        folders.append(artifact_dir / f".try-{len(folders)}")
        fitted = setup.fit(values, folders[-1], report)
        peaks.append(fitted.peak_bytes)
        host_peaks.append(fitted.host_peak_bytes)
        correct = sum(int(p) == g for p, g in zip(fitted.validation.labels, validation_labels))
        return Candidate(fitted.strategy, fitted.validation, correct / max(len(validation_labels), 1))

    start = time.perf_counter()
    result = search(space, setup.defaults.model_dump(), trials, setup.config.seed, fit, device=setup.models.device)
    seconds = time.perf_counter() - start
    best = result.best.strategy
    for item in best.context.artifact_dir.iterdir():  # the chosen setting's artifacts become the trial's
        shutil.move(str(item), artifact_dir / item.name)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    best.context.artifact_dir = artifact_dir
    record.options = best.options.model_dump(mode="json")
    record.tuning = Tuning(method=METHOD, budget=trials, chosen={name: result.options[name] for name in space}, tried=result.tried)
    return Fit(best, result.best.validation, seconds, max(peaks), max(host_peaks))
