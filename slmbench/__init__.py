"""slmbench: measure how best to adapt a small language model to a task.

What a plugin needs is importable from here; nothing heavy (torch, transformers) loads on import.
"""

from slmbench.hookspecs import hookimpl
from slmbench.strategy import Examples, Family, Predictions, RunContext, Strategy

__all__ = ["Examples", "Family", "Predictions", "RunContext", "Strategy", "hookimpl"]
