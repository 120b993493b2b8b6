"""Where the equal-tuning search may move a strategy's options, declared on the option fields themselves::

    class KnnVoteOptions(Options):
        k: Annotated[int, Search.integer(1, 32)] = Field(4, ge=1, le=256, description="neighbours that vote")

``Search.log`` and ``Search.linear`` (floats), ``Search.integer`` (whole numbers), ``Search.choice`` (values).
``search_space`` collects them; ``check_space`` refuses, when the strategy registers, a range its options
would refuse (the search would waste tries on it). The class attribute ``tune = {"k": ("int", 1, 32)}``
of earlier versions is still read, with a DeprecationWarning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from slmbench.strategy.base import Strategy

Kind = Literal["log", "float", "int", "choice"]


@dataclass(frozen=True)
class Search:
    """A range (``low``..``high``) or a list of ``choices`` the search may try for one option."""

    kind: Kind
    low: float = 0
    high: float = 0
    choices: tuple[Any, ...] = ()

    @classmethod
    def log(cls, low: float, high: float) -> Search:
        """Floats spread evenly on a log scale (learning rates, regularisation)."""
        return cls("log", low, high)

    @classmethod
    def linear(cls, low: float, high: float) -> Search:
        """Floats spread evenly between ``low`` and ``high``."""
        return cls("float", low, high)

    @classmethod
    def integer(cls, low: int, high: int) -> Search:
        """Whole numbers from ``low`` to ``high``."""
        return cls("int", low, high)

    @classmethod
    def choice(cls, *choices: Any) -> Search:
        return cls("choice", choices=tuple(choices))

    def describe(self) -> str:
        """``log 0.01..100``, ``int 1..32`` or ``choice a, b``: for listings."""
        if self.kind == "choice":
            return "choice " + ", ".join(map(str, self.choices))
        return f"{self.kind} {self.low:g}..{self.high:g}"

    def problem(self) -> str | None:
        """What is wrong with the range itself, or None."""
        if self.kind == "choice":
            return None if self.choices else "a choice needs at least one value"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.low, self.high)):
            return f"a {self.kind} range needs (low, high) numbers"
        if not self.low < self.high:
            return f"low {self.low} is not below high {self.high}"
        if self.kind == "log" and self.low <= 0:
            return f"a log range must start above 0, not at {self.low}"
        if self.kind == "int" and not all(isinstance(v, int) for v in (self.low, self.high)):
            return "an int range needs whole-number bounds"
        return None

    def ends(self) -> list[Any]:
        """The values the search can reach that the options must accept: the range's ends, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


SearchSpace = dict[str, Search]


def _from_tune(spec: Any) -> Search:
    """A ``tune`` entry of earlier versions: ``("log", low, high)`` or ``("choice", [values])``."""
    if not (isinstance(spec, tuple) and spec and spec[0] in {"log", "float", "int", "choice"}):
        raise TypeError("expected ('log'|'float'|'int', low, high) or ('choice', [values])")
    kind, *arguments = spec
    if kind == "choice":
        return Search("choice", choices=tuple(arguments[0]) if arguments and isinstance(arguments[0], (list, tuple)) else ())
    if len(arguments) != 2:
        raise TypeError(f"a {kind} range needs (low, high) numbers")
    return Search(kind, *arguments)


def search_space(strategy: type[Strategy]) -> SearchSpace:
    """Every option the search may vary, from the option fields' ``Search`` (and a legacy ``tune``)."""
    space = {
        name: next(item for item in info.metadata if isinstance(item, Search))
        for name, info in strategy.Options.model_fields.items()
        if any(isinstance(item, Search) for item in info.metadata)
    }
    for name, spec in getattr(strategy, "tune", {}).items():
        try:
            space[name] = _from_tune(spec)
        except TypeError as error:
            raise TypeError(f"{strategy.__name__}.tune[{name!r}] = {spec!r}: {error}") from None
    return space


def check_space(strategy: type[Strategy]) -> None:
    """Every searched option exists, has a valid range, and accepts the range's ends (a TypeError naming it
    otherwise); a legacy ``tune`` gets a DeprecationWarning."""
    from slmbench.common.options import OptionError, build_options

    if getattr(strategy, "tune", None):
        warnings.warn(
            f"{strategy.__name__}.tune is deprecated: declare the range on the option field, "
            "e.g. C: Annotated[float, Search.log(0.01, 100.0)] = Field(1.0, gt=0)",
            DeprecationWarning,
            stacklevel=2,
        )
    for name, search in search_space(strategy).items():
        where = f"{strategy.__name__}: search over {name!r} ({search.describe() if not search.problem() else search})"
        if name not in strategy.Options.model_fields:
            raise TypeError(f"{where}: not one of its options")
        if problem := search.problem():
            raise TypeError(f"{where}: {problem}")
        for value in search.ends():
            try:
                build_options(strategy.metadata.name, strategy.Options, {name: value})
            except OptionError as error:
                raise TypeError(f"{where}: the search would try {value!r}, which the options refuse: {error}") from None
