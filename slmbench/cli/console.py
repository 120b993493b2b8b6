"""Printing for the command line: text from files and arguments is printed literally (no rich markup is
read in it) and control characters are shown as escapes."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def error_console():
    """A rich console on stderr that neither highlights nor wraps."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def printable(value: object) -> str:
    """``value`` as text whose control characters (ESC, BEL...; not newline or tab) are shown as escapes."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], str(value))


def say(console, style: str, prefix: str, message: str) -> None:
    """Print ``prefix: message`` with the prefix styled and the message literal (no markup is read)."""
    from rich.text import Text

    console.print(Text.assemble((prefix, style), ": ", printable(message)))
