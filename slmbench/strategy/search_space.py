"""The search space a strategy declares for the equal-tuning search, checked when it registers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmbench.strategy.base import Strategy


def check_space(strategy: type[Strategy]) -> None:
    """Every option in ``strategy.tune`` exists, has a known kind and a range its options accept (the
    search would otherwise waste tries on settings the options refuse); a TypeError names it otherwise."""
    for name, spec in strategy.tune.items():
        problem = _space_problem(strategy, name, spec)
        if problem:
            raise TypeError(f"{strategy.__name__}.tune[{name!r}] = {spec!r}: {problem}")


def _space_problem(strategy: type[Strategy], name: str, spec: Any) -> str | None:
    from slmbench.common.options import OptionError, build_options

    if name not in strategy.Options.model_fields:
        return "not one of its options"
    if not (isinstance(spec, tuple) and spec and spec[0] in {"log", "float", "int", "choice"}):
        return "expected ('log'|'float'|'int', low, high) or ('choice', [values])"
    kind, *arguments = spec
    if kind == "choice":
        values = list(arguments[0]) if arguments and isinstance(arguments[0], (list, tuple)) else []
        if not values:
            return "a choice needs a non-empty list of values"
    else:
        if len(arguments) != 2 or not all(isinstance(v, (int, float)) for v in arguments):
            return f"a {kind} range needs (low, high) numbers"
        low, high = arguments
        if not low < high:
            return f"low {low} is not below high {high}"
        if kind == "log" and low <= 0:
            return f"a log range must start above 0, not at {low}"
        if kind == "int" and not all(isinstance(v, int) for v in arguments):
            return "an int range needs whole-number bounds"
        values = [low, high]
    for value in values:
        try:
            build_options(strategy.name, strategy.Options, {name: value})
        except OptionError as error:
            return f"the search would try {value!r}, which the options refuse: {error}"
    return None
