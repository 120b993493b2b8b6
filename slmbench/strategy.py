"""The strategy API: what a plugin implements and what it receives.

A strategy is fitted once on the train split (the validation split is there for early stopping or
model selection, never for the final score) and then predicts label indices for test texts.
Everything heavy it needs (the causal LM, the embedding model) comes from ``context.models``,
loaded once per run and shared by every strategy.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

if TYPE_CHECKING:
    import numpy as np

    from slmbench.models import SharedModels
    from slmbench.profiles import Budget
    from slmbench.progress import ProgressReporter
    from slmbench.tasks import TaskSpec


class Family(str, enum.Enum):
    """How a strategy adapts the model; the report groups and compares by family."""

    PROMPTING = "prompting"
    RETRIEVAL = "retrieval"
    FEATURE = "feature"
    PARAMETER_EFFICIENT = "parameter-efficient"
    FULL = "full"


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
class RunContext:
    """What the runner hands every strategy of a run."""

    task: TaskSpec
    models: SharedModels
    device: str
    dtype: str
    seed: int
    budget: Budget
    artifact_dir: Path
    progress: ProgressReporter
    params: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """Base class of every strategy. Subclasses set the three class attributes and two methods.

    ``self.details`` is a free-form dict copied into the trial JSON (prompt tokens, loss curves...).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    family: ClassVar[Family]
    uses_models: ClassVar[tuple[str, ...]] = ()
    """Shared models the strategy needs ("causal_lm", "embedder"): loaded before its timer starts."""
    learns_from_train: ClassVar[bool] = True
    """False for a strategy that ignores the train split (zero-shot): learning curves run it once."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.details: dict[str, Any] = {}

    @abstractmethod
    def fit(self, train: Examples, validation: Examples) -> None:
        """Learn from the train split; save any trained artifact under ``context.artifact_dir``."""

    @abstractmethod
    def predict(self, texts: Sequence[str]) -> Predictions:
        """Return one label index per text."""

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters of what this strategy uses at prediction time."""
        return 0, 0
