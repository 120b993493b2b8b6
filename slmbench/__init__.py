"""slmbench: measure how best to adapt a small language model to a task.

What a plugin needs is importable from here, and importing it loads nothing heavy (no torch, no
transformers): the language-model helpers below are imported on first use.

- ``Strategy``, ``StrategyMetadata``, ``Family``, ``SharedModel``, ``Options`` (and ``OptionError``), ``Search``,
  ``Examples``, ``Predictions``, ``RunContext``, ``hookimpl``: the strategy API (``docs/writing-a-strategy.md``);
  ``CombiningStrategy``: the base of a strategy built on the run's others (an ensemble).
- ``classify_with_lm`` and ``Calibration`` / ``estimate_calibration``: classify texts with the shared
  causal LM through the scoring engine (each label's answer scored by log-likelihood);
  ``PromptOptions``: the calibration options of the prompting strategies, to subclass.
- ``FineTunedCausalLM``, ``FineTuneOptions``, ``load_causal_lm``: fine-tune a copy of the causal LM with
  the shared training machinery (answer-token loss, packed batches, early stopping, best checkpoint).
- ``TrainIndex``: the train split embedded and indexed for nearest-neighbour search (FAISS).
- ``param_count``: the parameters of a model, for a ``Strategy.parameter_counts`` of its own.
"""

from __future__ import annotations

import importlib
from typing import Any

from slmbench.common.options import OptionError, Options
from slmbench.lm.models import SharedModel
from slmbench.strategy.base import CombiningStrategy, RunContext, Strategy
from slmbench.strategy.hookspecs import hookimpl
from slmbench.strategy.metadata import Family, StrategyMetadata
from slmbench.strategy.search_space import Search
from slmbench.tasks.examples import Examples, Predictions

_LAZY = {
    "classify_with_lm": "slmbench.strategy.prompting",
    "Calibration": "slmbench.lm.prompts",
    "estimate_calibration": "slmbench.strategy.prompting",
    "LMClassification": "slmbench.strategy.prompting",
    "PromptOptions": "slmbench.lm.prompts",
    "FineTunedCausalLM": "slmbench.strategy.finetuned_lm",
    "FineTuneOptions": "slmbench.strategy.finetuned_lm",
    "load_causal_lm": "slmbench.strategy.finetuned_lm",
    "TrainIndex": "slmbench.lm.retrieval",
    "param_count": "slmbench.lm.models",
}

__all__ = [
    "CombiningStrategy",
    "Examples",
    "Family",
    "OptionError",
    "Options",
    "Predictions",
    "RunContext",
    "Search",
    "SharedModel",
    "Strategy",
    "StrategyMetadata",
    "hookimpl",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """The language-model helpers, imported when first asked for (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slmbench' has no attribute {name!r}")
