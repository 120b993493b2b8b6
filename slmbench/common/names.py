"""Suggestions for misspelt names, shared by every error that names an unknown one."""

from __future__ import annotations

import difflib


def did_you_mean(name: str, options: list[str]) -> str:
    """"; did you mean 'x'?" for the closest option, or "" when nothing is close."""
    close = difflib.get_close_matches(name, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
