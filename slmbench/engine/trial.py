"""One trial: a ``TrialConfig`` and a strategy class in, one ``TrialRecord`` out.

``run_trial`` needs nothing but the config, the strategy class and a ``ModelCache`` (a per-process
cache of loaded splits and models), so a trial can be rerun alone or sent to another process or
machine. It never raises for a strategy's error: it returns a record with status ``failed``.

The trial's steps: its setup (task, splits, models), the fit (``slmbench.engine.fitting``), the
timed prediction of the test split, then its scores and costs, single requests included
(``slmbench.engine.serving``). Its deployment check comes after the run's trials, when the contenders
are known (``slmbench.engine.deployment_check``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmbench.common.files import folder_bytes
from slmbench.common.options import build_options
from slmbench.engine.fitting import Fit, TrialSetup, fit_strategy
from slmbench.engine.members import member_predictions_of, with_member_costs
from slmbench.engine.metrics import classification_metrics
from slmbench.engine.predictions import check_predictions, prediction_record
from slmbench.engine.serving import single_request_latency, uncached
from slmbench.engine.trial_timeout import TrialTimeout, time_limit
from slmbench.lm.determinism import apply_determinism
from slmbench.lm.memory import PeakMemory, free_accelerator_memory
from slmbench.lm.memory_estimate import MemoryRequest, applied_settings, check_fits, estimate_before_trial
from slmbench.lm.models import SharedModel, choose_device
from slmbench.records import TASK_COPY, Cost, ErrorInfo, Metrics, TrialConfig, TrialRecord
from slmbench.strategy.base import CombiningStrategy, Strategy
from slmbench.tasks.examples import Member
from slmbench.tasks.spec import load_task

if TYPE_CHECKING:
    from slmbench.engine.model_cache import ModelCache

OUT_OF_MEMORY_HINT = "out of memory: try a smaller --profile or batch size, or qlora / a parameter-efficient strategy"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _error(error: BaseException, hint: str | None = None) -> ErrorInfo:
    message = str(error)
    return ErrorInfo(
        type=type(error).__name__,
        message=f"{message} ({hint})" if hint else message,
        traceback="".join(traceback.format_exception(error)),
    )


def run_trial(
    config: TrialConfig,
    strategy_cls: type[Strategy],
    model_cache: ModelCache,
    artifact_dir: Path,
    timeout_seconds: float | None = None,
    variant: str = "",
    members: Sequence[TrialRecord] = (),
) -> TrialRecord:
    """Fit and evaluate one strategy; always return a complete trial record.

    ``members``: for a strategy that combines others, the finished trials it combines.

    Its ``status`` is ``ok``, ``failed`` (the strategy raised), ``timeout`` (past
    ``timeout_seconds``) or ``cancelled`` (Ctrl-C or SIGTERM while it ran).
    """
    record = TrialRecord(
        strategy=config.strategy,
        variant=variant or config.strategy,
        config=config,
        config_hash=config.config_hash(),
        description=strategy_cls.description,
        family=str(strategy_cls.family.value),
        learns_from_train=strategy_cls.metadata.reads_labels,
        started_at=_now(),
    )
    device = choose_device(config.models.device)
    determinism = apply_determinism(device)
    try:
        with time_limit(timeout_seconds):
            _fit_and_evaluate(config, strategy_cls, model_cache, artifact_dir, record, members)
    except TrialTimeout as error:
        record.status, record.error = "timeout", _error(error)
    except KeyboardInterrupt as error:
        record.status, record.error = "cancelled", _error(error, "interrupted by the user or a SIGTERM")
    except Exception as error:  # noqa: BLE001 - one failing strategy never takes down a run
        out_of_memory = isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
        record.status, record.error = "failed", _error(error, OUT_OF_MEMORY_HINT if out_of_memory else None)
    free_accelerator_memory()  # the next trial starts from the shared models alone, whatever this one did
    record.environment = model_cache.environment(device).model_copy(update={"determinism": determinism})
    record.finished_at = _now()
    return record


def _fit_and_evaluate(
    config: TrialConfig,
    strategy_cls: type[Strategy],
    model_cache: ModelCache,
    artifact_dir: Path,
    record: TrialRecord,
    members: Sequence[TrialRecord],
) -> None:
    """The trial itself; fills ``record`` as it goes, so that a failure keeps what was learnt."""
    setup = _setup(config, strategy_cls, model_cache, artifact_dir, record, members)
    fit = fit_strategy(setup, record)
    if strategy_cls.reusable():  # with what the strategy saved, the trial can be reloaded (slmbench.engine.reuse)
        shutil.copyfile(config.task_path, artifact_dir / TASK_COPY)
    setup.models.forget_vectors()  # test texts are encoded by the prediction that is timed
    with PeakMemory(setup.models.device) as memory:
        start = time.perf_counter()
        predictions = fit.strategy.predict(setup.test.texts)
        predict_seconds = time.perf_counter() - start  # predictions are on the host: the GPU's work is done
    check_predictions(predictions, len(setup.test), setup.n_labels)

    _record_strategy_account(record, setup, fit.strategy)
    parameters = fit.strategy.parameter_counts()
    record.metrics = Metrics(**classification_metrics(setup.test.labels, predictions.labels, setup.task.label_names))
    record.cost = _cost(setup, fit, predict_seconds, memory, parameters)
    if issubclass(strategy_cls, CombiningStrategy):
        record.cost = with_member_costs(record.cost, members)
    if record.memory_estimate is not None:
        record.cost = record.cost.model_copy(update={"estimated_memory_mb": record.memory_estimate.total_mb})
    record.predictions = prediction_record(setup.test.labels, predictions)
    record.validation_predictions = prediction_record(setup.validation.labels, fit.validation)
    resolved = {"device": setup.models.device, "dtype": setup.models.dtype}  # as resolved here
    if SharedModel.CAUSAL_LM in strategy_cls.metadata.depends_on:
        resolved["prompt_format"] = setup.models.resolved_prompt_format()
    record.models = config.models.model_copy(update=resolved)
    record.status = "ok"


def _setup(
    config: TrialConfig,
    strategy_cls: type[Strategy],
    model_cache: ModelCache,
    artifact_dir: Path,
    record: TrialRecord,
    members: Sequence[TrialRecord],
) -> TrialSetup:
    """The task, the strategy's options, the splits (subsets at a learning-curve point), the models
    (loaded outside the timers) and the members' predictions; ``record`` takes what they say."""
    from slmbench.tasks.splits import nested_subset

    task = load_task(config.task_path)
    record.task, record.labels = task.name, task.label_names
    defaults = build_options(config.strategy, strategy_cls.Options, config.options)
    record.options = defaults.model_dump(mode="json")
    splits = model_cache.splits(task, config)
    models = model_cache.models(config)
    request = MemoryRequest.for_trial(config, defaults, models.device, models.dtype)
    record.memory_estimate = estimate_before_trial(strategy_cls.estimate_memory, request)
    check_fits(record.memory_estimate, config.strategy)  # WouldNotFit, before any model loads or trains
    if record.memory_estimate is not None and record.memory_estimate.applied:  # settings that make it fit, as --set would
        defaults = build_options(config.strategy, strategy_cls.Options, {**config.options, **applied_settings(record.memory_estimate)})
        record.options = defaults.model_dump(mode="json")
    for kind in strategy_cls.metadata.calls:  # load outside the timers: shared by all trials
        models.load(kind)
    models.reset_usage()

    train, validation = splits.train, splits.validation
    if config.train_size is not None:  # a learning-curve point: validation shrinks in the same proportion
        train = nested_subset(splits.train, config.train_size, config.seed)
        share = config.train_size / len(splits.train)
        validation = nested_subset(splits.validation, math.ceil(share * len(splits.validation)), config.seed)
    record.train_examples, record.validation_examples = len(train), len(validation)
    member_predictions: list[Member] = [member_predictions_of(member, validation, splits.test, len(task.labels)) for member in members]
    return TrialSetup(
        config=config,
        strategy_cls=strategy_cls,
        task=task,
        models=models,
        budget=config.profile,
        train=train,
        validation=validation,
        test=splits.test,
        defaults=defaults,
        artifact_dir=artifact_dir,
        progress=model_cache.progress,
        member_predictions=member_predictions,
    )


def _record_strategy_account(record: TrialRecord, setup: TrialSetup, strategy: Strategy) -> None:
    """What the strategy says of itself: labelled examples needed, train examples learnt from, prompt
    tokens, calibration, free-form details (each with its default when it says nothing)."""
    record.labelled_examples = (
        strategy.labelled_examples if strategy.labelled_examples is not None else len(setup.train) + len(setup.validation)
    )
    record.train_examples_seen = (
        strategy.train_examples_seen
        if strategy.train_examples_seen is not None
        else (len(setup.train) if setup.strategy_cls.metadata.reads_labels else 0)
    )
    record.train_compute = strategy.train_compute
    record.prompt_tokens_per_example = strategy.prompt_tokens_per_example
    record.calibration = strategy.calibration
    record.details = _plain_json(strategy.details, "details")


def _cost(setup: TrialSetup, fit: Fit, predict_seconds: float, predict_memory: PeakMemory, parameters: tuple[int, int]) -> Cost:
    """The trial's cost: training (``fit``), the timed test prediction, single requests, peak memory
    (the shared models included, on the device they live on), parameters and artifacts on disk."""
    test, models = setup.test, setup.models
    trainable, total = parameters
    single_request = single_request_latency(
        uncached(fit.strategy.predict, models), test.texts, setup.budget.latency_requests, setup.config.seed
    )
    shared = sum(models.used.values())
    host = max(fit.host_peak_bytes, predict_memory.host_added_bytes)
    accelerator = None if predict_memory.accelerator_added_bytes is None else max(fit.peak_bytes, predict_memory.accelerator_added_bytes)
    return Cost(
        train_seconds=round(fit.seconds, 3),
        predict_seconds=round(predict_seconds, 3),
        latency_ms_per_example=round(1000 * predict_seconds / len(test), 3),
        throughput_examples_per_second=round(len(test) / predict_seconds, 3) if predict_seconds else None,
        single_request=single_request,
        peak_memory_mb=_mib((host if accelerator is None else accelerator) + shared),
        peak_host_memory_mb=_mib(host + (shared if accelerator is None else 0)),
        peak_accelerator_memory_mb=None if accelerator is None else _mib(accelerator + shared),
        trainable_params=int(trainable),
        total_params=int(total),
        artifact_bytes=folder_bytes(setup.artifact_dir),
    )


def _mib(size: int) -> float:
    return round(size / 2**20, 1)


def _plain_json(value: Any, where: str) -> Any:
    """``value`` as plain JSON: numpy numbers and arrays converted, NaN and infinities (a diverged loss) as
    null; anything else that is not JSON is the strategy's error."""
    try:
        plain = json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else _refuse(v, where))
    except (TypeError, ValueError) as error:
        raise TypeError(f"the strategy's {where} are not plain JSON: {error}") from None
    return json.loads(plain, parse_constant=lambda constant: None)


def _refuse(value: Any, where: str) -> Any:
    raise TypeError(f"{where} holds a {type(value).__name__}")
