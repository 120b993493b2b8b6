"""The strategy API: what a plugin implements and what it receives.

A strategy is fitted once on the train split (the validation split is there for early stopping or
model selection, never for the final score) and then predicts label indices for test texts.
Everything heavy it needs (the causal LM, the embedding model) comes from ``context.models``,
loaded once per run and shared by every strategy.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from slmbench.common.options import Options
from slmbench.tasks.examples import Examples, MemberPredictions, Predictions

if TYPE_CHECKING:
    from slmbench.common.progress import ProgressReporter
    from slmbench.lm.models import SharedModels
    from slmbench.tasks.profiles import Budget
    from slmbench.tasks.spec import TaskSpec


class Family(str, enum.Enum):
    """How a strategy adapts the model; the report groups and compares by family."""

    PROMPTING = "prompting"
    RETRIEVAL = "retrieval"
    FEATURE = "feature"
    PARAMETER_EFFICIENT = "parameter-efficient"
    FULL = "full"
    ENSEMBLE = "ensemble"


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
    options: Options | None = None
    """The strategy's options (an instance of its ``Options``); None means all defaults."""
    members: list[MemberPredictions] = field(default_factory=list)
    """For a strategy that combines others: their predictions (empty for every other strategy)."""
    on_validation_loss: Callable[[int, float], None] = lambda step, loss: None
    """Call it with (step, validation loss) while training: the option search (``slmbench.engine.tuning``) may
    stop a setting that falls behind by raising from it. Outside a search it does nothing."""


class Strategy(ABC):
    """Base class of every strategy. Subclasses set the three class attributes and two methods.

    What the trial records besides the predictions:

    - ``self.details``: a free-form dict copied into the trial JSON (loss curves, prompt plans...);
    - ``self.labelled_examples``: labelled examples the strategy needs, if fewer than train +
      validation (few-shot: its demonstrations; zero-shot: 0);
    - ``self.train_examples_seen``: distinct train examples it learnt from, if not all of them;
    - ``self.prompt_tokens_per_example``: for strategies that prompt a language model.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    family: ClassVar[Family]
    uses_models: ClassVar[tuple[str, ...]] = ()
    """Shared models the strategy needs ("causal_lm", "embedder"): loaded before its timer starts."""
    learns_from_train: ClassVar[bool] = True
    """False for a strategy that ignores the train split (zero-shot): learning curves run it once."""
    combines_others: ClassVar[bool] = False
    """True for a strategy built on the run's other trials (ensemble): it runs after them, receives
    their predictions in ``context.members``, and its costs include theirs (deploying it runs them all)."""
    Options: ClassVar[type[Options]] = Options
    """The options a user may set (``--set NAME.OPTION=VALUE``); subclass ``slmbench.Options``."""
    tune: ClassVar[dict[str, tuple]] = {}
    """Options the equal-tuning search may vary, chosen on validation (``slmbench.engine.tuning``):
    ``{"learning_rate": ("log", 1e-4, 3e-3), "k": ("int", 1, 32), "kind": ("choice", ["a", "b"])}``."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.options = context.options if context.options is not None else type(self).Options()
        if not isinstance(self.options, type(self).Options):
            raise TypeError(f"{self.name} needs options of type {type(self).Options.__qualname__}, got {type(self.options).__qualname__}")
        self.details: dict[str, Any] = {}
        self.labelled_examples: int | None = None
        self.train_examples_seen: int | None = None
        self.prompt_tokens_per_example: float | None = None

    @classmethod
    def variant(cls, name: str, description: str, **defaults: Any) -> type[Strategy]:
        """This strategy under another name with other option defaults: configuration, not a subclass
        to read (``Lora.variant("dora", "...", use_dora=True)``)."""
        from slmbench.common.options import with_defaults

        options = with_defaults(cls.Options, defaults)
        options()  # a default out of range fails here, when the plugin registers it
        attributes = {
            "name": name,
            "description": description,
            "Options": options,
            "__module__": cls.__module__,
            "__doc__": f"{cls.name} with {', '.join(f'{k}={v!r}' for k, v in defaults.items())}.",
        }
        return type(f"{cls.__name__}Variant_{name}", (cls,), attributes)

    @abstractmethod
    def fit(self, train: Examples, validation: Examples) -> None:
        """Learn from the train split; save any trained artifact under ``context.artifact_dir``."""

    @abstractmethod
    def predict(self, texts: Sequence[str]) -> Predictions:
        """Return one label index per text."""

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters of what this strategy uses at prediction time."""
        return 0, 0

    def deployment_variants(self) -> Iterable[Any]:
        """Quantized copies of the trained model, for the report's deployment check (called after ``predict``).

        Each item has a ``quantization`` name and is a context manager giving an object with
        ``predict(texts)`` and ``size_bytes`` (its size on disk), freed on exit. Default: none.
        """
        return ()
