"""What a strategy is, in one validated object: ``Strategy.metadata``.

The engine plans and runs from it (which shared models to load before the timers, which models a
sweep varies, whether learning curves rerun it), the report groups by its family, ``slmbench show``
prints it and the strategy guide's tables are checked against it (``tests/test_strategy_guide.py``).
It is a pydantic model, so a misspelt field or shared model fails where the strategy is defined,
naming the field and the value. (In the spirit of mteb's ``TaskMetadata``.)

The options a user may set, and the ranges the equal-tuning search may try, are declared on the
strategy's ``Options`` fields (``slmbench.strategy.search_space.Search``), not here.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slmbench.lm.models import SharedModel

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""What a strategy may be called: it names files and appears on command lines."""


class Family(str, enum.Enum):
    """How a strategy adapts the model; the report groups and compares by family."""

    PROMPTING = "prompting"
    RETRIEVAL = "retrieval"
    FEATURE = "feature"
    PARAMETER_EFFICIENT = "parameter-efficient"
    FULL = "full"
    ENSEMBLE = "ensemble"


FAMILY_MEANINGS = {
    Family.PROMPTING: "instructions and/or demonstrations in the prompt, no training",
    Family.RETRIEVAL: "retrieved train examples decide or go into the prompt",
    Family.FEATURE: "a frozen model's features (or none) and a small trained classifier",
    Family.PARAMETER_EFFICIENT: "a small part of the LM trained (adapters, LoRA, soft prompt)",
    Family.FULL: "every weight of a model trained",
    Family.ENSEMBLE: "combines the run's other strategies (a ``CombiningStrategy``)",
}
"""One line per family, as the strategy guide states it (``tests/test_strategy_guide.py`` checks)."""


class StrategyMetadata(BaseModel):
    """Name, description, family and the shared models of a strategy, validated when it is defined."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="what users type (``--strategies``) and what names its files")
    description: str = Field(min_length=1, description="one line for listings and the report")
    family: Family = Field(description="how it adapts the model; the report groups by it")
    calls: tuple[SharedModel, ...] = Field(
        (), description="shared models it calls through ``context.models``: loaded before its timers, their parameters counted"
    )
    depends_on: tuple[SharedModel, ...] = Field(
        (),
        description="shared models whose choice changes its results (a sweep over ``--model`` varies it); "
        "includes ``calls``; a fine-tuner that trains its own copy depends on the LM without calling it",
    )
    reads_labels: bool = Field(True, description="False: it never reads a train label (zero-shot), so learning curves run it once")
    uses_gpu: bool | None = Field(
        None,
        description="whether its trials use a GPU when there is one (a cluster gives them a GPU share); "
        "None: it does when it depends on a shared model (a strategy loading a model of its own says True)",
    )

    @field_validator("calls", "depends_on")
    @classmethod
    def _distinct(cls, models: tuple[SharedModel, ...]) -> tuple[SharedModel, ...]:
        return tuple(dict.fromkeys(models))

    @model_validator(mode="after")
    def _depends_on_what_it_calls(self) -> StrategyMetadata:
        object.__setattr__(self, "depends_on", tuple(dict.fromkeys((*self.depends_on, *self.calls))))
        return self

    @property
    def needs_gpu(self) -> bool:
        """``uses_gpu``, or when unsaid whether it depends on a shared model (the only models slmbench knows it runs)."""
        return bool(self.depends_on) if self.uses_gpu is None else self.uses_gpu
