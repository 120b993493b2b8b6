"""The deployment check, after the run's trials: the trained models of the contenders (or of every
strategy), reloaded from their artifacts, quantized (``Strategy.deployment_variants``) and scored on
the test split; each trial's record takes its checks (``TrialRecord.deployment``).

It comes after the trials because which strategies are contenders (``slmbench.report.contenders``)
depends on all of them. A trial checked once keeps its checks: ``slmbench run --resume`` checks only
the contenders that have none yet (the contenders change as trials are added).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from slmbench.common.text import first_line
from slmbench.engine.model_cache import ModelCache
from slmbench.engine.reuse import SavedTrial, check_trial, finished_trials, load_trial
from slmbench.engine.serving import deployment_checks
from slmbench.lm.memory import free_accelerator_memory
from slmbench.records import TASK_COPY, DeploymentCheck, TrialRecord, read_test_texts, read_trial, trial_file, write_trial
from slmbench.strategy.base import Strategy
from slmbench.tasks.examples import Examples

Which = Literal["contenders", "all", "none"]
EVERY_COPY = "every copy"
"""The ``quantization`` of the one check recorded when the trial itself could not be reloaded."""


def has_deployment_variants(strategy: type[Strategy]) -> bool:
    """Whether the strategy has quantized copies to check after the trials: it overrides
    ``Strategy.deployment_variants`` and can be reloaded (``save`` and ``load``)."""
    return strategy.deployment_variants is not Strategy.deployment_variants and strategy.reusable()


def trials_to_check(run_dir: Path, strategies: Callable[[str], type[Strategy]], which: Which, constraints: Any = None) -> list[SavedTrial]:
    """The finished whole-split trials of ``run_dir`` still without a deployment check whose strategy has
    copies to check: of the contenders, or of every strategy (``which``)."""
    from slmbench.report.contenders import contenders
    from slmbench.report.recommend import Constraints
    from slmbench.report.summary import load_summary

    if which == "none":
        return []
    summary = load_summary(run_dir)
    wanted = set(contenders(summary, constraints or Constraints())) if which == "contenders" else None
    return [
        saved
        for saved in finished_trials(summary, strategies, has_deployment_variants)
        if not saved.record.deployment
        and (wanted is None or saved.record.name in wanted)
        and (saved.artifact_dir / TASK_COPY).is_file()  # else its artifacts were not kept
    ]


def deployment_check(
    run_dir: Path,
    strategies: Callable[[str], type[Strategy]],
    which: Which = "contenders",
    constraints: Any = None,
    requests: int = 20,
    executor: Any = None,
    on_checked: Callable[[TrialRecord], None] = lambda record: None,
) -> list[str]:
    """Check the trials ``trials_to_check`` chooses, one at a time, each record rewritten with its checks
    (then ``on_checked``); the keys of the trials checked. ``executor``: where each check runs
    (``call``: this process with the trials' models, or a Ray worker with a trial's resources); default here."""
    checked = []
    for saved in trials_to_check(run_dir, strategies, which, constraints):
        record = saved.record
        assert record.config is not None  # trials_to_check made sure
        classes = {record.config.strategy: strategies(record.config.strategy)}
        device = (record.models or record.config.models).device
        arguments = (str(run_dir), saved.key, classes, requests)
        try:
            call = getattr(executor, "call", None)
            plain = call(copies_checked, *arguments, device=device) if call else copies_checked(*arguments, None)
            record.deployment = [DeploymentCheck.model_validate(check) for check in plain]
        except Exception as error:  # noqa: BLE001 - a worker lost, or a check that cannot start: reported, never fatal
            record.deployment = [_failed(f"the check did not run: {type(error).__name__}: {first_line(error)}")]
        write_trial(trial_file(run_dir, saved.key), record, Path(run_dir))
        checked.append(saved.key)
        on_checked(record)
        gc.collect()
        free_accelerator_memory()
    return checked


def copies_checked(run_dir: str, key: str, classes: dict[str, type[Strategy]], requests: int, cache: ModelCache | None) -> list[dict]:
    """Trial ``key`` of ``run_dir`` reloaded (its strategy among ``classes``), its quantized copies scored on
    the run's test texts, as plain JSON: run wherever the trial can (this process or a Ray worker), it writes nothing."""
    saved = SavedTrial(Path(run_dir), key, read_trial(trial_file(Path(run_dir), key)))
    checks = _checks(saved, classes.__getitem__, read_test_texts(Path(run_dir)), requests, cache or ModelCache(None))
    return [check.model_dump(mode="json") for check in checks]


def _checks(
    saved: SavedTrial, strategies: Callable[[str], type[Strategy]], texts: list[str] | None, requests: int, cache: ModelCache
) -> list[DeploymentCheck]:
    """``saved``'s quantized copies scored on the run's test texts; one error check when it cannot be rebuilt."""
    record = saved.record
    if record.predictions is None or texts is None or len(texts) != len(record.predictions.gold):
        return [_failed("the run's test texts (test_texts.json) do not match the trial's predictions")]
    try:
        strategy = load_trial(check_trial(saved, strategies), strategies, cache)
    except Exception as error:  # noqa: BLE001 - a trial that cannot be reloaded is reported, never fatal to the run
        return [_failed(f"the trial could not be reloaded: {type(error).__name__}: {first_line(error)}")]
    test = Examples(texts, record.predictions.gold)
    return deployment_checks(strategy, test, record.labels, requests, record.seed)


def _failed(why: str) -> DeploymentCheck:
    """The one check recorded for a trial none of whose copies could be built."""
    return DeploymentCheck(quantization=EVERY_COPY, error=why)
