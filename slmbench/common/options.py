"""Typed strategy options: what a user may set on a strategy, with type, default, range and help.

A strategy declares its options as one pydantic model nested in its class::

    class KnnVote(Strategy):
        class Options(slmbench.Options):
            k: int = Field(4, ge=1, le=256, description="neighbours that vote for each text")

Users set them with ``slmbench run --set knn-vote.k=3`` (or a sweep file's option grid); the
strategy reads them as ``self.options.k``. An unknown option or a value out of range fails before
any model loads, naming the option, the allowed range and, for a typo, the closest name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from slmbench.common.text import did_you_mean


class Options(BaseModel):
    """Base of every strategy's options: typed fields, unknown names refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class OptionError(ValueError):
    """An option assignment is malformed, unknown or out of range; the message says which and why."""


@dataclass(frozen=True)
class OptionInfo:
    """One option as ``slmbench show`` and ``list strategies --options`` print it."""

    name: str
    type: str
    default: Any
    description: str
    allowed: str
    """The constraints in words ("1 ≤ k ≤ 256", "gelu, relu or silu"), or ""."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default, "description": self.description, "allowed": self.allowed}


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "choice"
    arguments = [a for a in get_args(annotation) if a is not type(None)]
    if arguments and len(arguments) < len(get_args(annotation)):  # Optional[X]
        return _type_name(arguments[0]) + " or none"
    return getattr(annotation, "__name__", str(annotation))


def _allowed(info: FieldInfo) -> str:
    if get_origin(info.annotation) is Literal:
        return ", ".join(map(str, get_args(info.annotation)))
    bounds = [f"{sign} {getattr(item, key)}" for item in info.metadata for key, sign in _BOUNDS if hasattr(item, key)]
    return ", ".join(bounds)


def describe_options(options: type[Options]) -> list[OptionInfo]:
    """Every option of a strategy's ``Options`` model, in declaration order."""
    return [
        OptionInfo(name, _type_name(info.annotation), info.get_default(call_default_factory=True), info.description or "", _allowed(info))
        for name, info in options.model_fields.items()
    ]


def _problem(error: ErrorDetails, strategy: str, options: type[Options]) -> str:
    name = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        known = list(options.model_fields)
        accepted = ", ".join(known) if known else "none"
        return f"{strategy} has no option {name!r}{did_you_mean(name, known)} (its options: {accepted})"
    info = options.model_fields.get(name)
    allowed = _allowed(info) if info else ""
    shown = repr(error.get("input"))
    return f"option {strategy}.{name} = {shown[:60]}: {error['msg']}" + (f" (allowed: {allowed})" if allowed else "")


def _none_from_text(info: FieldInfo | None, value: Any) -> Any:
    """``none``/``null`` given as text: the option's own choice ``"none"`` if it has one, else None where allowed."""
    if info is None or not isinstance(value, str) or value.lower() not in {"none", "null"}:
        return value
    arguments = get_args(info.annotation)
    choices = {choice for kind in (info.annotation, *arguments) if get_origin(kind) is Literal for choice in get_args(kind)}
    if value in choices:
        return value
    return None if type(None) in arguments else value


def build_options(strategy: str, options: type[Options], values: dict[str, Any]) -> Options:
    """``options`` with ``values`` set; an OptionError naming the strategy's option and its range otherwise."""
    try:
        return options(**{name: _none_from_text(options.model_fields.get(name), value) for name, value in values.items()})
    except ValidationError as error:
        raise OptionError("; ".join(_problem(e, strategy, options) for e in error.errors(include_url=False))) from None
    except TypeError as error:  # a non-string key
        raise OptionError(f"{strategy}: {error}") from None


def with_defaults(options: type[Options], defaults: dict[str, Any]) -> type[Options]:
    """A subclass of ``options`` whose listed fields have other defaults (types and ranges kept)."""
    unknown = sorted(set(defaults) - set(options.model_fields))
    if unknown:
        raise OptionError(f"{options.__qualname__} has no option {unknown[0]!r}{did_you_mean(unknown[0], list(options.model_fields))}")
    # (annotation, field) pairs, typed Any: mypy checks a ``**`` dict's values against every keyword
    # parameter of create_model (``__config__``, ``__doc__``...), not only against the field definitions.
    fields: dict[str, Any] = {
        name: (options.model_fields[name].annotation, FieldInfo.merge_field_infos(options.model_fields[name], default=value))
        for name, value in defaults.items()
    }
    return create_model(options.__name__, __base__=options, __module__=options.__module__, **fields)


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``STRATEGY.OPTION=VALUE`` -> (strategy, option, value as text).

    The strategy's Options model converts the text to its type (``"8"`` to 8, ``"true"`` to True; ``none``
    to None where the option allows None and has no choice of that name).
    """
    target, equals, value = text.partition("=")
    strategy, dot, option = target.strip().rpartition(".")
    if not equals or not dot or not strategy or not option:
        raise OptionError(f"--set {text!r}: expected STRATEGY.OPTION=VALUE, e.g. --set lora.r=8")
    return strategy, option, value.strip()


def group_assignments(assignments: list[str]) -> dict[str, dict[str, Any]]:
    """``--set`` values grouped by strategy: {"lora": {"r": "8"}}; a repeated option keeps its last value."""
    grouped: dict[str, dict[str, Any]] = {}
    for text in assignments:
        strategy, option, value = parse_assignment(text)
        grouped.setdefault(strategy, {})[option] = value
    return grouped
