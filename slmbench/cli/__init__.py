"""The command line (``slmbench``): parses arguments, then hands over to the engine and the report."""

from slmbench.cli.main import main

__all__ = ["main"]
