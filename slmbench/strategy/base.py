"""The strategy API: what a plugin implements and what it receives.

A strategy is fitted once on the train split (the validation split is there for early stopping or
model selection, never for the final score) and then predicts label indices for test texts.
Everything heavy it needs (the causal LM, the embedding model) comes from ``context.models``,
loaded once per run and shared by every strategy.

What it learnt it ``save``s to its artifact folder (the trial calls it right after ``fit``), and a
new instance ``load``s it in place of ``fit``: ``slmbench predict`` applies a trial to new texts
that way, without the train split.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from slmbench.common.options import Options
from slmbench.strategy.metadata import StrategyMetadata
from slmbench.tasks.examples import Examples, Member, Predictions

if TYPE_CHECKING:
    from slmbench.common.progress import ProgressReporter
    from slmbench.lm.memory_estimate import MemoryRequest
    from slmbench.lm.models import SharedModel, SharedModels
    from slmbench.records import Calibration, ExportForm, MemoryEstimate
    from slmbench.tasks.profiles import Budget
    from slmbench.tasks.spec import TaskSpec


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
    on_validation_loss: Callable[[int, float], None] = lambda step, loss: None
    """Call it with (step, validation loss) while training: the option search (``slmbench.engine.tuning``) may
    stop a setting that falls behind by raising from it. Outside a search it does nothing."""


_LEGACY_ATTRIBUTES = {
    "name": "name",
    "description": "description",
    "family": "family",
    "uses_models": "calls",
    "learns_from_train": "reads_labels",
}
"""Class attributes of slmbench 0.2 strategies, folded into ``metadata`` (with a DeprecationWarning)."""


class _FromMetadata:
    """``Strategy.name``, ``.description`` and ``.family``: read from the class's ``metadata``."""

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute

    def __get__(self, instance: object, owner: type) -> Any:
        return getattr(owner.metadata, self.attribute)  # type: ignore[attr-defined]  # every Strategy subclass has it


class Strategy(ABC):
    """Base of every strategy: set ``metadata`` (and ``Options`` if it has options), write ``fit`` and
    ``predict``, and ``save`` and ``load`` so that a trial can be reused (``slmbench predict``).

    What the trial records besides the predictions:

    - ``self.details``: a free-form dict copied into the trial JSON (loss curves, prompt plans...);
    - ``self.labelled_examples``: labelled examples the strategy needs, if fewer than train +
      validation (few-shot: its demonstrations; zero-shot: 0);
    - ``self.train_examples_seen``: distinct train examples it learnt from, if not all of them;
    - ``self.train_compute``: a weight-updating strategy's training compute, tokens times its model's parameters;
    - ``self.prompt_tokens_per_example``: for strategies that prompt a language model;
    - ``self.calibration``: the ``Calibration`` that corrected the language model's answer bias, if any.
    """

    metadata: ClassVar[StrategyMetadata]
    """What the strategy is: name, description, family, the shared models it calls and depends on."""
    Options: ClassVar[type[Options]] = Options
    """The options a user may set (``--set NAME.OPTION=VALUE``), with the ranges the search may try
    (``slmbench.strategy.search_space.Search``); subclass ``slmbench.Options``."""
    derived_from: ClassVar[tuple[SharedModel, ...] | None] = None
    """The shared models whose weights what it learnt builds on, for an export's
    model card (base models and their licences); None: ``metadata.depends_on``."""
    training_texts_kept: ClassVar[str | None] = None
    """What train text (or its embeddings) the saved artifacts contain, if any: the model card of an
    export warns of it."""
    name = _FromMetadata()
    description = _FromMetadata()
    family = _FromMetadata()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Fold the 0.2-style class attributes (``name = ...``, ``uses_models = ...``) into ``metadata``;
        an invalid value is kept as the error that registering the class raises. A base class that sets
        some of them (a family, the models) passes them on to its subclasses (``metadata_defaults``)."""
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("combines_others") and not issubclass(cls, CombiningStrategy):
            cls.metadata_error = (
                f"{cls.__name__}: combines_others is gone: subclass slmbench.CombiningStrategy (members arrive as self.members)"
            )
            return
        present = sorted(set(_LEGACY_ATTRIBUTES) & set(cls.__dict__))
        if not present:
            return
        legacy = {_LEGACY_ATTRIBUTES[attribute]: cls.__dict__[attribute] for attribute in present}
        for attribute in present:
            delattr(cls, attribute)
        inherited = getattr(cls, "metadata", None)
        values = {**cls.metadata_defaults, **(inherited.model_dump() if isinstance(inherited, StrategyMetadata) else {}), **legacy}
        if "calls" in legacy:  # uses_models meant both called and depended on; depends_on always includes calls
            values["depends_on"] = ()
        cls.metadata_error = None
        missing = [field for field in ("name", "description", "family") if not values.get(field)]
        if missing:  # a base class: its subclasses complete it
            cls.metadata_defaults = {**cls.metadata_defaults, **legacy}
            cls.metadata_error = f"strategy class {cls.__name__} does not set {missing[0]!r}"
            return
        warnings.warn(
            f"{cls.__name__}: the class attributes {', '.join(present)} are deprecated: declare metadata = StrategyMetadata(...)",
            DeprecationWarning,
            stacklevel=2,
        )
        try:
            cls.metadata = StrategyMetadata.model_validate(values)
        except ValidationError as error:
            written_as = {field: name for name, field in _LEGACY_ATTRIBUTES.items() if name in present}
            problems = (
                f"{written_as.get(str(e['loc'][0]), '.'.join(map(str, e['loc'])))}: {e['msg']} (got {e['input']!r})"
                for e in error.errors(include_url=False)
            )
            cls.metadata_error = f"strategy class {cls.__name__}: {'; '.join(problems)}"

    metadata_error: ClassVar[str | None] = None
    """Why the 0.2-style class attributes do not make a valid ``metadata`` (raised at registration)."""
    metadata_defaults: ClassVar[dict[str, Any]] = {}
    """Metadata fields a base class gives the 0.2-style subclasses that do not set them
    (``FineTunedCausalLM``: its family and the causal LM it depends on)."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.options = context.options if context.options is not None else type(self).Options()
        if not isinstance(self.options, type(self).Options):
            raise TypeError(f"{self.name} needs options of type {type(self).Options.__qualname__}, got {type(self.options).__qualname__}")
        self.details: dict[str, Any] = {}
        self.labelled_examples: int | None = None
        self.train_examples_seen: int | None = None
        self.train_compute: float | None = None
        self.prompt_tokens_per_example: float | None = None
        self.calibration: Calibration | None = None

    @classmethod
    def variant(cls, name: str, description: str, **defaults: Any) -> type[Strategy]:
        """This strategy under another name with other option defaults: configuration, not a subclass
        to read (``Lora.variant("dora", "...", use_dora=True)``)."""
        from slmbench.common.options import with_defaults

        options = with_defaults(cls.Options, defaults)
        options()  # a default out of range fails here, when the plugin registers it
        attributes = {
            "metadata": StrategyMetadata.model_validate({**cls.metadata.model_dump(), "name": name, "description": description}),
            "Options": options,
            "__module__": cls.__module__,
            "__doc__": f"{cls.name} with {', '.join(f'{k}={v!r}' for k, v in defaults.items())}.",
        }
        return type(f"{cls.__name__}Variant_{name}", (cls,), attributes)

    @abstractmethod
    def fit(self, train: Examples, validation: Examples) -> None:
        """Learn from the train split (the validation split only to choose); ``save`` then writes what was learnt."""

    @abstractmethod
    def predict(self, texts: Sequence[str]) -> Predictions:
        """Return one label index per text."""

    def save(self, directory: Path) -> None:
        """Write what ``fit`` learnt to ``directory`` (never the shared models), in safe formats:
        safetensors for tensors, JSON for settings and texts, FAISS for indexes, skops for
        scikit-learn objects; never a pickle. The trial calls it after ``fit``, before ``predict``.
        Default: the strategy cannot be reused (``slmbench predict`` says so)."""
        raise NotReusable(f"strategy {self.name} does not implement save and load: its trials cannot be reused")

    def load(self, directory: Path) -> None:
        """Become the fitted strategy that ``save`` wrote to ``directory``, in place of ``fit``: with
        the same context (task, shared models, options, seed), ``predict`` must then give exactly the
        predictions of the instance that was fitted."""
        raise NotReusable(f"strategy {self.name} does not implement save and load: its trials cannot be reused")

    def base_models(self) -> list[str]:
        """The names of the shared models its predictions build on (``derived_from``)."""
        kinds = self.derived_from if self.derived_from is not None else tuple(self.metadata.depends_on)
        models = self.context.models
        names = {"causal_lm": models.causal_lm_name, "embedder": models.embedding_model_name}
        return [names[kind.value] for kind in kinds]

    @classmethod
    def reusable(cls) -> bool:
        """Whether the strategy implements both ``save`` and ``load``."""
        return cls.save is not Strategy.save and cls.load is not Strategy.load

    def export(self, directory: Path, quantize: str | None) -> list[ExportForm]:
        """Write what the loaded (or fitted) strategy learnt, in forms other tools load, into ``directory``
        (``slmbench export``), and describe them; ``quantize`` (``int8``, ``nf4``, None) asks for its
        weights quantized where that can be saved safely (otherwise ``QuantizationNotExported``, or the
        ``UnsafeSerialization`` of ``slmbench.lm.exported.save_quantized``).
        ``slmbench export`` always adds the form slmbench reloads (the trial's own artifacts).
        Default: no other form."""
        if quantize is not None:
            raise QuantizationNotExported(f"{self.name} has no weights of its own to quantize")
        return []

    def form_predictor(self, form: ExportForm, directory: Path) -> Callable[[Sequence[str]], Predictions]:
        """Predictions from ``form`` of an export in ``directory``, loaded from its files alone (the
        export check). Default: the forms a plain library loads (``slmbench.lm.exported``)."""
        from slmbench.lm.exported import plain_library_predictor

        return plain_library_predictor(form, directory, len(self.context.task.labels), self.context.device)

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters of what this strategy uses at prediction time. Default: none
        trained, and the shared models it calls (``shared_parameters``)."""
        return 0, self.shared_parameters()

    def shared_parameters(self) -> int:
        """Parameters of the shared models the strategy calls (``metadata.calls``)."""
        return sum(self.context.models.param_count(kind) for kind in self.metadata.calls)

    @classmethod
    def estimate_memory(cls, request: MemoryRequest) -> MemoryEstimate:
        """The memory a trial of this strategy needs where its models run, estimated from the models'
        configs before anything loads (``slmbench.lm.memory_estimate``): the trial fails at once if it
        cannot fit, and ``--dry-run`` prints it. Default: running the shared models in ``metadata.calls``
        (none: about nothing). Override it if the strategy loads or trains models of its own."""
        from slmbench.lm.memory_estimate import estimate_inference

        return estimate_inference(request, cls.metadata.calls)

    def deployment_variants(self) -> Iterable[Any]:
        """Quantized copies of the trained model, for the report's deployment check (called after the run's trials,
        on the strategy reloaded from its artifacts with ``load``: a strategy without ``save`` and ``load`` is not checked).

        Each item has a ``quantization`` name and is a context manager giving an object with
        ``predict(texts)`` and ``size_bytes`` (its size on disk), freed on exit. Default: none.
        """
        return ()


class QuantizationNotExported(ValueError):
    """``slmbench export --quantize``: the strategy has no weights to quantize, or its quantized form
    cannot be saved without pickle."""


class NotReusable(Exception):
    """A trial that cannot be applied to new texts: its strategy does not save and load, or its
    artifacts were not kept."""


class CombiningStrategy(Strategy):
    """Base of a strategy built on the run's other trials (an ensemble): it runs after them, receives
    their validation and test predictions as ``self.members``, and its costs include theirs (deploying
    it means running them all). Reloaded for ``slmbench predict``, its members are the reloaded
    member strategies, predicting as they go (``Member``)."""

    def __init__(self, context: RunContext, members: Sequence[Member]) -> None:
        super().__init__(context)
        self.members = list(members)

    def base_models(self) -> list[str]:
        """Those of the members it combines (reloaded members carry their strategy)."""
        names = [name for member in self.members if (strategy := getattr(member, "strategy", None)) for name in strategy.base_models()]
        return list(dict.fromkeys(names))
