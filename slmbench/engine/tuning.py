"""Equal tuning: every strategy may try the same number of option settings, chosen on validation only.

A strategy declares what may be searched on its option fields (``Search.log(1e-4, 3e-3)``; see
``slmbench.strategy.search_space``). The profile's ``tuning_trials`` is the number of settings every strategy may
try; options the user set are fixed, not searched. The search is Optuna's: the strategy's defaults
first, then a scrambled Sobol sequence (``QMCSampler``: evenly spread points, which for so few
trials beats a model-based sampler), each setting fitted on train and scored on validation
(accuracy). A strategy that reports its validation loss while it trains
(``RunContext.on_validation_loss``) is stopped early when it falls behind the median of the
settings before it at the same step (``MedianPruner``).

**One setting on the accelerator at a time.** Only the best candidate so far is kept; on an
accelerator its own models (the torch modules it holds, never the shared models) wait on the CPU
while the next setting trains, and come back when it is chosen. After every setting, memory is freed
(garbage collected; CUDA's cached blocks handed back), and a setting that ran out of memory is
recorded as ``failed: OutOfMemoryError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slmbench.lm.memory import free_accelerator_memory
from slmbench.records import TuningTrial
from slmbench.strategy.search_space import Search, SearchSpace

if TYPE_CHECKING:
    import torch

    from slmbench.strategy.base import Strategy
    from slmbench.tasks.examples import Predictions

METHOD = "optuna: defaults first, then scrambled Sobol points (QMCSampler), median pruning on validation loss"


class Pruned(Exception):
    """Raised inside a strategy's fit when the search stops a setting early (Optuna's TrialPruned)."""


def searched(space: SearchSpace, fixed: dict[str, Any]) -> SearchSpace:
    """The part of ``space`` the search may vary: options the user set stay as set."""
    return {name: search for name, search in space.items() if name not in fixed}


def _distribution(search: Search) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if search.kind == "choice":
        return CategoricalDistribution(list(search.choices))
    if search.kind == "int":
        return IntDistribution(int(search.low), int(search.high))
    return FloatDistribution(search.low, search.high, log=search.kind == "log")


@dataclass
class Candidate:
    """A fitted strategy and its validation predictions."""

    strategy: Strategy
    validation: Predictions
    accuracy: float


@dataclass
class SearchResult:
    best: Candidate
    options: dict[str, Any]
    tried: list[TuningTrial]


def _new_study(space: SearchSpace, defaults: dict[str, Any], seed: int) -> Any:
    """An Optuna study maximising validation accuracy: the defaults first, then scrambled Sobol points,
    with median pruning on the reported validation loss."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.QMCSampler(scramble=True, seed=seed, warn_independent_sampling=False, warn_asynchronous_seeding=False)
    study = optuna.create_study(
        direction="maximize", sampler=sampler, pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    )
    study.enqueue_trial({name: defaults[name] for name in space}, skip_if_exists=True)
    return study


def _pruning_reporter(trial: Any) -> Callable[[int, float], None]:
    """``report(step, validation loss)`` for one setting: raises ``Pruned`` once it falls behind."""

    def report(step: int, loss: float) -> None:
        trial.report(-loss, step)
        if trial.should_prune():
            raise Pruned(f"validation loss {loss:.4f} at step {step} is behind the median of earlier settings")

    return report


def _shared_parameters(strategy: Strategy) -> set[int]:
    """Ids of the parameters of the run's shared models, which every setting uses."""
    import torch

    loaded = strategy.context.models.loaded.values()
    parts = [part for value in loaded for part in (value if isinstance(value, tuple) else (value,))]
    return {id(p) for part in parts if isinstance(part, torch.nn.Module) for p in part.parameters()}


def _own_modules(strategy: Strategy) -> list[torch.nn.Module]:
    """The torch modules a fitted strategy holds in its attributes, but those of the shared models."""
    import torch

    shared = _shared_parameters(strategy)
    modules = [value for value in vars(strategy).values() if isinstance(value, torch.nn.Module)]
    return [module for module in modules if not any(id(p) in shared for p in module.parameters())]


def _move(candidate: Candidate, device: str) -> None:
    """Move ``candidate``'s own models to ``device``."""
    for module in _own_modules(candidate.strategy):
        module.to(device)


def _failure(error: Exception) -> str:
    """The state of a setting that raised ``error``: out of memory named as such, whoever raised it."""
    out_of_memory = type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()
    return f"failed: {'OutOfMemoryError' if out_of_memory else type(error).__name__}"


def _fit_setting(
    study: Any,
    trial: Any,
    values: dict[str, Any],
    fit: Callable[[dict[str, Any], Callable[[int, float], None]], Candidate],
    tried: list[TuningTrial],
    *,
    must_work: bool,
) -> Candidate | None:
    """``fit`` one setting, told to ``study`` and recorded in ``tried``; None if it was stopped or failed
    (a failure is raised if it ``must_work``)."""
    import optuna

    started = time.perf_counter()
    try:
        candidate = fit(values, _pruning_reporter(trial))
    except Pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        tried.append(TuningTrial(options=trial.params, validation_accuracy=None, state="pruned", seconds=_since(started)))
        return None
    except Exception as error:  # noqa: BLE001 - a setting that breaks (diverges, runs out of memory...) is one failed try;
        if must_work:  # but the defaults must work
            raise
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        tried.append(TuningTrial(options=trial.params, validation_accuracy=None, state=_failure(error), seconds=_since(started)))
        return None
    study.tell(trial, candidate.accuracy)
    tried.append(TuningTrial(options=trial.params, validation_accuracy=round(candidate.accuracy, 4), seconds=_since(started)))
    return candidate


def search(
    space: SearchSpace,
    defaults: dict[str, Any],
    trials: int,
    seed: int,
    fit: Callable[[dict[str, Any], Callable[[int, float], None]], Candidate],
    *,
    device: str = "cpu",
) -> SearchResult:
    """Try up to ``trials`` settings of ``space`` (``defaults`` first); keep the best on validation accuracy.

    ``fit(options, report)`` builds and fits a strategy with ``options`` (the defaults overridden by
    the sampled values) on ``device`` and returns it with its validation accuracy; ``report(step, loss)``
    raises ``Pruned`` when the setting should stop. Only the best candidate is kept alive, on the CPU
    while another setting trains on an accelerator.
    """
    import optuna

    study = _new_study(space, defaults, seed)
    distributions = {name: _distribution(search) for name, search in space.items()}
    best: Candidate | None = None
    parked = False
    tried: list[TuningTrial] = []
    seen: list[dict[str, Any]] = []
    for _ in range(trials * 10):  # a setting drawn again (whole numbers, choices) is skipped, not tried twice
        if len(tried) == trials:
            break
        trial = study.ask(distributions)
        if trial.params in seen:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        seen.append(trial.params)
        values = {**defaults, **trial.params}
        if best is not None and not parked and device != "cpu":
            _move(best, "cpu")  # the accelerator's memory for the next setting
            parked = True
        candidate = _fit_setting(study, trial, values, fit, tried, must_work=best is None)
        if candidate is not None and (best is None or candidate.accuracy > best.accuracy):
            best, options, parked = candidate, values, False
        del candidate
        free_accelerator_memory()  # out of the failed setting's traceback, which held its tensors
    if best is None:
        raise RuntimeError(f"every one of the {len(tried)} settings tried failed or was stopped")
    if parked:
        _move(best, device)
    return SearchResult(best, options, tried)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)
