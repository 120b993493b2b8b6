"""Labelled examples of a task and a strategy's predictions over its labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Examples:
    """Texts with their label indices (positions in ``task.label_names``)."""

    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Predictions:
    """Label index per text and, where the strategy can, a (n_texts, n_labels) probability array."""

    labels: list[int]
    probabilities: np.ndarray | None = None


@dataclass
class MemberPredictions:
    """Another trial's probabilities for each validation and test text, for a strategy that combines
    others (a ``CombiningStrategy``): the run's trials of the same seed and train size."""

    name: str
    probabilities: dict[str, list[float]]
    """text -> probability per label (one-hot of the predicted label where the member gave none)."""

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), labels) probabilities; KeyError for a text the member never predicted."""
        import numpy as np

        return np.asarray([self.probabilities[text] for text in texts], dtype=float)
