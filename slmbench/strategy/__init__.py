"""The strategy API: what a plugin implements (``base``), the hooks it answers (``hookspecs``), how
plugins are found and checked (``registry``), what a strategy is (``metadata``), and the building blocks a strategy may use on top of
the language-model toolkit (``prompting``: classify with the causal LM; ``finetuned_lm``: a
fine-tuned copy of it; ``search_space``: the options the equal-tuning search may vary).

The names below stay importable from ``slmbench.strategy`` as before the layers (``Examples`` and
``Predictions`` live in ``slmbench.tasks.examples``, ``Options`` in ``slmbench.common.options``)."""

from slmbench.common.options import Options
from slmbench.lm.models import SharedModel
from slmbench.strategy.base import CombiningStrategy, RunContext, Strategy
from slmbench.strategy.hookspecs import hookimpl
from slmbench.strategy.metadata import Family, StrategyMetadata
from slmbench.strategy.search_space import Search
from slmbench.tasks.examples import Examples, MemberPredictions, Predictions

__all__ = [
    "CombiningStrategy",
    "Examples",
    "Family",
    "MemberPredictions",
    "Options",
    "Predictions",
    "RunContext",
    "Search",
    "SharedModel",
    "Strategy",
    "StrategyMetadata",
    "hookimpl",
]
