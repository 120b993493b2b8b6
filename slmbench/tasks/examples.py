"""Labelled examples of a task and a strategy's predictions over its labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

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


class Member(Protocol):
    """A trial that a ``CombiningStrategy`` combines: its name and its probabilities for texts."""

    name: str

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), labels) probabilities (one-hot of the predicted label where it gives none)."""
        ...


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


def probability_rows(labels: Sequence[int], probabilities: Any, n_labels: int) -> np.ndarray:
    """(texts, labels) probabilities (an array or lists, as a strategy or a record gives them); one-hot
    of the predicted ``labels`` where there are none."""
    import numpy as np

    if probabilities is not None:
        return np.asarray(probabilities, dtype=float)
    return np.eye(n_labels)[np.asarray(labels, dtype=int)]
