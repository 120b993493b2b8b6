"""A run folder's trials grouped for comparison: one entry per variant, its seeds aggregated.

The report, the recommendation, the cross-run comparison, the CSV export and the CLI's summary all
read a run through ``summarize``, so they agree on what a row is: a variant (a strategy, with the
sweep's options that vary) trained on the whole train split, over every seed that finished ``ok``.
Learning-curve points (smaller train sizes) are kept apart, and failed or unreadable trials are
listed one by one.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from slmbench.records import (
    Floors,
    Metrics,
    RunFolder,
    RunRecord,
    TrialFile,
    TrialRecord,
    load_run_folder,
)


def ok_metrics(trial: TrialRecord) -> Metrics:
    """The metrics of a trial that finished ``ok`` (``TrialRecord.ok`` holds only when they are set)."""
    assert trial.metrics is not None, f"trial {trial.name} (seed {trial.seed}) has no metrics: it did not finish ok"
    return trial.metrics


@dataclass
class Entry:
    """A variant over its seeds: the trials that finished ``ok``, one per seed, in seed order.

    Only ``ok`` trials belong here (``summarize`` groups no other), so every trial has its metrics.
    """

    name: str
    trials: list[TrialRecord]

    @property
    def first(self) -> TrialRecord:
        return self.trials[0]

    @property
    def strategy(self) -> str:
        return self.first.strategy

    @property
    def family(self) -> str | None:
        return self.first.family

    @property
    def description(self) -> str | None:
        return self.first.description

    @property
    def seeds(self) -> list[int]:
        return [trial.seed for trial in self.trials]

    @property
    def accuracies(self) -> list[float]:
        return [ok_metrics(trial).accuracy for trial in self.trials]

    @property
    def accuracy(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def accuracy_sd(self) -> float | None:
        return statistics.stdev(self.accuracies) if len(self.trials) > 1 else None

    @property
    def macro_f1(self) -> float:
        return statistics.fmean(ok_metrics(trial).macro_f1 for trial in self.trials)

    def f1(self, label: str) -> float | None:
        per_class = [ok_metrics(trial).per_class for trial in self.trials]
        values = [classes[label].f1 for classes in per_class if label in classes]
        return statistics.fmean(values) if values else None

    def cost(self, key: str) -> float | None:
        """Mean of a cost over the seeds that recorded it (``single_request`` -> its p95 in ms)."""
        values = []
        for trial in self.trials:
            value = getattr(trial.cost, key, None)
            if key == "single_request" and value is not None:
                value = value.p95_ms
            if isinstance(value, (int, float)):
                values.append(value)
        return statistics.fmean(values) if values else None

    def mean_of(self, field_name: str) -> float | None:
        values = [getattr(trial, field_name) for trial in self.trials if getattr(trial, field_name) is not None]
        return statistics.fmean(values) if values else None

    @property
    def labelled_examples(self) -> int | None:
        value = self.mean_of("labelled_examples")
        return None if value is None else round(value)

    @property
    def gold(self) -> list[int]:
        return self.first.predictions.gold if self.first.predictions else []

    def predicted_by_seed(self, seeds: list[int] | None = None) -> list[list[int]]:
        """Predicted labels, one row per seed (of ``seeds`` when given, in that order)."""
        by_seed = {trial.seed: trial.predictions.predicted for trial in self.trials if trial.predictions}
        return [by_seed[seed] for seed in (seeds if seeds is not None else sorted(by_seed))]


@dataclass
class CurvePoint:
    """A variant at one train size: its accuracy over seeds (mean, min, max)."""

    size: int
    accuracies: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)


@dataclass
class Summary:
    """A run folder read back and grouped: what every view of a run starts from."""

    folder: RunFolder
    trials: list[TrialRecord]
    """Every readable trial of the run, one per (variant, seed, train size), failed ones included."""
    entries: list[Entry]
    """Variants on the whole train split with at least one ``ok`` seed, most accurate first."""
    failures: list[TrialFile]
    """Trials that produced no predictions (any train size), and files that could not be read."""
    curves: dict[str, dict[int, CurvePoint]] = field(default_factory=dict)
    """Learning curves: variant -> train examples -> point (whole split included when there are points)."""
    flat: dict[str, float] = field(default_factory=dict)
    """Variants that learn from no train example (zero-shot): their accuracy, a flat line on the curves."""

    @property
    def directory(self) -> Path:
        return self.folder.directory

    @property
    def run(self) -> RunRecord | None:
        return self.folder.run

    @property
    def labels(self) -> list[str]:
        if self.run and self.run.labels:
            return self.run.labels
        return next((trial.labels for trial in self.folder.records if trial.labels), [])

    @property
    def task(self) -> str:
        return (self.run.task if self.run else None) or self.directory.parent.name

    @property
    def name(self) -> str:
        return f"{self.task}/{self.run.run_id if self.run else self.directory.name}"

    @property
    def seeds(self) -> list[int]:
        return sorted({seed for entry in self.entries for seed in entry.seeds})

    @property
    def floors(self) -> Floors | None:
        return self.run.floors if self.run else None

    @property
    def floor_accuracy(self) -> float | None:
        """The accuracy of always answering the majority label, where the run measured it."""
        return self.floors.accuracy if self.floors else None

    @property
    def test_texts(self) -> list[str] | None:
        return self.folder.test_texts

    def entry(self, name: str) -> Entry | None:
        return next((entry for entry in self.entries if entry.name == name), None)


def _latest(trials: list[TrialRecord]) -> list[TrialRecord]:
    """One record per (variant, seed, train size): an older file naming the same trial is superseded."""
    kept: dict[tuple, TrialRecord] = {}
    for trial in sorted(trials, key=lambda t: t.finished_at or ""):
        kept[(trial.name, trial.seed, trial.train_size)] = trial
    return list(kept.values())


def _rank_key(entry: Entry) -> tuple:
    return (-entry.accuracy, -entry.macro_f1, entry.name)


def summarize(folder: RunFolder) -> Summary:
    """Group a run folder's trials into leaderboard entries, learning curves and failures."""
    trials = _latest(folder.records)
    sizes = folder.run.splits.sizes if folder.run else {}
    if "train" in sizes:  # records of slmbench 0.1 may not say: they needed train + validation
        for trial in trials:
            if trial.labelled_examples is None:
                trial.labelled_examples = sizes["train"] + sizes.get("validation", 0)
    whole: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        if trial.ok and trial.train_size is None:
            whole.setdefault(trial.name, []).append(trial)
    entries = sorted((Entry(name, sorted(group, key=lambda t: t.seed)) for name, group in whole.items()), key=_rank_key)
    current = {id(trial) for trial in trials}
    failures = [file for file in folder.trials if file.record is None or (id(file.record) in current and not file.record.ok)]

    grouped: dict[str, dict[int, list[float]]] = {}
    for trial in trials:  # learning-curve points
        if trial.ok and trial.train_size is not None and trial.train_examples:
            grouped.setdefault(trial.name, {}).setdefault(trial.train_examples, []).append(ok_metrics(trial).accuracy)
    flat: dict[str, float] = {}
    for entry in entries:
        if not entry.first.learns_from_train:
            flat[entry.name] = entry.accuracy
        elif entry.name in grouped and entry.first.train_examples:
            grouped[entry.name][entry.first.train_examples] = entry.accuracies
    curves = {name: {size: CurvePoint(size, values) for size, values in points.items()} for name, points in grouped.items()}
    return Summary(folder, trials, entries, failures, curves, flat)


def load_summary(run_dir: Path) -> Summary:
    """Read and group a run folder (RecordError if it is not one or its run.json is damaged)."""
    return summarize(load_run_folder(run_dir))
