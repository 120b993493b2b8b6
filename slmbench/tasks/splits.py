"""Task data split once for every strategy: train, validation and test, capped to the profile's budget.

The splits depend only on the task (its data and split protocol), never on a strategy: the
profile's caps are seeded, stratified subsamples taken after splitting, each split capped on its
own, so the test set never depends on the train or validation caps. Reading and checking the data
is ``slmbench.tasks.sources``'s.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.records import DataProvenance
from slmbench.tasks.examples import Examples
from slmbench.tasks.sources import LoadedData, load_rows
from slmbench.tasks.spec import TaskError, TaskSpec, load_task

if TYPE_CHECKING:
    from slmbench.records import Budget

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    """Train, validation and test examples shared by every strategy of a run."""

    train: Examples
    validation: Examples
    test: Examples
    label_names: tuple[str, ...]
    provenance: DataProvenance
    duplicates_removed: dict[str, int]
    """Exact duplicate texts dropped per split (test wins over validation, validation over train)."""
    full_sizes: dict[str, int]
    """Split sizes before the profile's caps."""

    def summary(self) -> dict[str, Any]:
        """Sizes, per-class counts and duplicates removed, for the run and trial JSON."""
        splits = {name: getattr(self, name) for name in SPLIT_NAMES}
        return {
            "sizes": {name: len(examples) for name, examples in splits.items()},
            "full_sizes": dict(self.full_sizes),
            "per_class": {name: class_counts(examples.labels, self.label_names) for name, examples in splits.items()},
            "duplicates_removed": dict(self.duplicates_removed),
        }


def class_counts(labels: list[int], label_names: tuple[str, ...] | list[str]) -> dict[str, int]:
    """Examples per label name, in the task's label order."""
    counts = Counter(labels)
    return {name: counts[i] for i, name in enumerate(label_names)}


def _subset(examples: Examples | LoadedData, indices: list[int]) -> Examples:
    return Examples([examples.texts[i] for i in indices], [examples.labels[i] for i in indices])


def make_splits(task: TaskSpec, data: LoadedData) -> Splits:
    """Seeded (stratified) test, then validation split; exact duplicate texts kept in one split only."""
    from sklearn.model_selection import train_test_split

    protocol = task.split
    indices = list(range(len(data)))
    try:
        rest, test = train_test_split(
            indices, test_size=protocol.test_size, random_state=protocol.seed, stratify=data.labels if protocol.stratify else None
        )
        rest_labels = [data.labels[i] for i in rest] if protocol.stratify else None
        train, validation = train_test_split(
            rest, test_size=protocol.validation_size / (1 - protocol.test_size), random_state=protocol.seed, stratify=rest_labels
        )
    except ValueError as error:
        raise TaskError(f"{task.path}: cannot split {len(data)} rows: {error}") from error
    parts = {"train": train, "validation": validation, "test": test}
    kept = _without_duplicates(parts, data.texts)
    examples = {name: _subset(data, kept[name]) for name in SPLIT_NAMES}
    _check_deduplicated(task, examples)
    return Splits(
        **examples,
        label_names=tuple(task.label_names),
        provenance=data.provenance,
        duplicates_removed={name: len(parts[name]) - len(kept[name]) for name in SPLIT_NAMES},
        full_sizes={name: len(examples[name]) for name in SPLIT_NAMES},
    )


def _without_duplicates(parts: dict[str, list[int]], texts: list[str]) -> dict[str, list[int]]:
    """Each split's indices less exact duplicate texts: a text is kept in the first split that holds
    it, test before validation before train."""
    seen: set[str] = set()
    kept: dict[str, list[int]] = {}
    for name in ("test", "validation", "train"):
        kept[name] = []
        for i in parts[name]:
            key = texts[i].strip()
            if key not in seen:
                seen.add(key)
                kept[name].append(i)
    return kept


def _check_deduplicated(task: TaskSpec, examples: dict[str, Examples]) -> None:
    """After duplicates are dropped, every split must still hold examples."""
    empty = [name for name in SPLIT_NAMES if not len(examples[name])]
    if empty:
        raise TaskError(
            f"{task.path}: the {' and '.join(empty)} split is empty once duplicate texts are removed "
            "(a text is kept in one split only); add distinct texts or remove duplicates from the data"
        )


def _quotas(counts: list[int], n: int) -> list[int]:
    """Per-class sample sizes summing to n: one per class first (when n allows), the rest proportional."""
    base = [1 if n >= len(counts) else 0 for _ in counts]
    spare = [count - b for count, b in zip(counts, base)]
    remaining = n - sum(base)
    shares = [remaining * s / sum(spare) for s in spare]
    quotas = [b + math.floor(share) for b, share in zip(base, shares)]
    by_remainder = sorted(range(len(counts)), key=lambda i: (math.floor(shares[i]) - shares[i], i))
    for i in by_remainder[: n - sum(quotas)]:
        quotas[i] += 1
    return quotas


def cap_examples(examples: Examples, n: int | None, seed: int) -> Examples:
    """At most n examples: a seeded stratified subsample keeping every class present where possible."""
    if n is None or len(examples) <= n:
        return examples
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.asarray(examples.labels)
    classes, counts = np.unique(labels, return_counts=True)
    chosen: list[int] = []
    for label, quota in zip(classes, _quotas(counts.tolist(), n)):
        chosen += rng.choice(np.flatnonzero(labels == label), size=quota, replace=False).tolist()
    return _subset(examples, sorted(chosen))


def nested_subset(examples: Examples, n: int, seed: int) -> Examples:
    """The first ``n`` of a seeded, stratified order of ``examples`` (for learning curves).

    Every class is shuffled and spread evenly along the order, so each prefix keeps the class
    proportions as closely as whole examples allow, and a smaller subset is part of every larger one.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.asarray(examples.labels)
    position = np.empty(len(labels))
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((rng.random(len(labels)), position))  # ties between classes broken at random
    return _subset(examples, sorted(order[:n].tolist()))


def load_splits(task: TaskSpec, data_dir: Path | None, budget: Budget, allow_outside: bool = False) -> Splits:
    """The task's splits with the profile's caps applied to each split on its own."""
    splits = make_splits(task, load_rows(task, data_dir, allow_outside))
    seed = task.split.seed
    return replace(
        splits,
        train=cap_examples(splits.train, budget.max_train_examples, seed),
        validation=cap_examples(splits.validation, budget.max_validation_examples, seed),
        test=cap_examples(splits.test, budget.max_test_examples, seed),
    )


def validate(task_path: str | Path, data_dir: Path | None, allow_outside: bool = False) -> str:
    """Check a task YAML and its data; a short human summary, or a TaskError."""
    task = load_task(task_path)
    data = load_rows(task, data_dir, allow_outside)
    splits = make_splits(task, data)
    provenance = data.provenance
    where = f"hub dataset {provenance.hub.path}" if provenance.hub is not None else provenance.file
    counts = class_counts(data.labels, task.label_names)
    protocol = task.split
    sizes = splits.summary()["sizes"]
    removed = splits.duplicates_removed
    lines = [
        f"task {task.name} ({task_path}): OK",
        f"data: {where}, {len(data)} rows",
        "labels: " + ", ".join(f"{name} {count}" for name, count in counts.items()),
        f"splits (seed {protocol.seed}, {'stratified' if protocol.stratify else 'not stratified'}): "
        + ", ".join(f"{name} {sizes[name]}" for name in SPLIT_NAMES),
        f"exact duplicate texts removed: {sum(removed.values())} (" + ", ".join(f"{name} {removed[name]}" for name in SPLIT_NAMES) + ")",
    ]
    if provenance.texts_with_conflicting_labels:
        lines.append(f"warning: {provenance.texts_with_conflicting_labels} texts appear with more than one label")
    return "\n".join(lines)
