"""Markdown building blocks of the report: numbers in human units, tables, and safe text.

Everything that comes from data, labels, arguments or error messages goes through ``text``,
``code`` or ``fenced``: control characters are removed, and nothing in it can open HTML, a link,
emphasis, math, a table cell or a code span of its own.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from typing import Any

MISSING = "—"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters but tab and newline (ESC, BEL, NUL...): never written to a report."""
_SPECIAL = re.compile(r"([\\`*\[\]<>~|&$#!{}]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
"""Characters markdown or HTML may interpret (``$`` opens math on GitHub); ``_`` inside a word
(``macro_f1``) cannot open emphasis and stays as it is."""


def strip_control(value: Any) -> str:
    return _CONTROL.sub("", str(value))


def one_line(value: Any) -> str:
    """The text on one line: control characters removed, runs of whitespace made one space."""
    return " ".join(strip_control(value).split())


def text(value: Any) -> str:
    """Arbitrary text shown literally inside prose or a table cell."""
    return _SPECIAL.sub(r"\\\1", one_line(value))


def code(value: Any) -> str:
    """An inline code span holding ``value`` literally, whatever backticks it contains."""
    content = one_line(value)
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {content} " if content.startswith("`") or content.endswith("`") or longest else content
    return f"{fence}{padded}{fence}"


def fenced(lines: Sequence[str], language: str = "") -> str:
    """A fenced code block no line of ``lines`` can close early."""
    body = "\n".join(strip_control(line) for line in lines)
    longest = max((len(run) for run in re.findall(r"`{3,}", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{body}\n{fence}"


def cell(value: Any) -> str:
    """One table cell: one line, pipes escaped (also inside code spans, as GitHub requires)."""
    return re.sub(r"(?<!\\)\|", r"\\|", one_line(value))


def table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def metric(value: float | None) -> str:
    return MISSING if value is None or not math.isfinite(value) else f"{value:.3f}"


def number(value: float | None) -> str:
    """Three significant digits without exponent or trailing zeros: 412.7 -> '413', 5.0 -> '5'."""
    if value is None:
        return MISSING
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    formatted = f"{value:,.{decimals}f}"
    return formatted.rstrip("0").rstrip(".") if decimals else formatted


def scaled(value: float | None, base: int, units: Sequence[str]) -> str:
    """``value`` in the largest unit that keeps it at least 1: 134515008 -> '134.5M'."""
    if value is None:
        return MISSING
    step = 0
    while abs(value) >= base and step < len(units) - 1:
        value, step = value / base, step + 1
    return f"{value:.0f}{units[0]}" if step == 0 else f"{value:.1f}{units[step]}"


def count(value: float | None) -> str:
    """A count in thousands, millions... (a mean over seeds may be fractional): 134515008 -> '134.5M'."""
    return scaled(value, 1000, ("", "K", "M", "B", "T"))


def size(value: float | None) -> str:
    """Bytes in binary units (a mean over seeds may be fractional)."""
    return scaled(value, 1024, (" B", " KiB", " MiB", " GiB", " TiB"))


def p_value(p: float | None) -> str:
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def interval(point: float | None, bounds: tuple[float, float] | None) -> str:
    if bounds is None:
        return metric(point)
    return f"{metric(point)} ({bounds[0]:.3f}–{bounds[1]:.3f})"


def shorten(value: str | None, limit: int) -> str:
    return textwrap.shorten(one_line(value or ""), limit, placeholder=" …")


def first_line(value: str | None, limit: int = 200) -> str:
    lines = strip_control(value or "").strip().splitlines()
    return shorten(lines[0] if lines else "", limit)


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural_form or noun + 's'}"
