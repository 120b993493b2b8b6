"""The wording of messages shared by every layer: plurals, and a suggestion for a misspelt name."""

from __future__ import annotations

import difflib


def did_you_mean(name: str, options: list[str]) -> str:
    """The closest of ``options`` as the end of an error message (``; did you mean 'k'?``), or an empty
    string when nothing is close."""
    close = difflib.get_close_matches(name, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def first_line(error: BaseException) -> str:
    """``Type: first line of the message``: an error from a library, in one line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``n`` and the noun in the number it needs: ``plural(1, "row")`` is '1 row', ``plural(2, "row")`` '2 rows'."""
    return f"{n} {noun if n == 1 else plural_form or noun + 's'}"
