"""One trial: a ``TrialConfig`` and a strategy class in, one ``TrialRecord`` out.

``run_trial`` needs nothing but the config, the strategy class and a ``ModelCache`` (a per-process
cache of loaded splits and models), so a trial can be rerun alone or sent to another process or
machine. It never raises for a strategy's error: it returns a record with status ``failed``.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from slmbench.common.files import folder_bytes
from slmbench.common.options import build_options
from slmbench.engine.metrics import classification_metrics
from slmbench.engine.tuning import searched
from slmbench.lm.memory import PeakMemory, free_accelerator_memory
from slmbench.lm.models import SharedModels
from slmbench.records import (
    Cost,
    DeploymentCheck,
    ErrorInfo,
    Latency,
    Metrics,
    PredictionRecord,
    TrialConfig,
    TrialRecord,
    Tuning,
)
from slmbench.strategy.base import RunContext, Strategy
from slmbench.tasks.examples import Examples, MemberPredictions, Predictions
from slmbench.tasks.profiles import Budget
from slmbench.tasks.spec import load_task

if TYPE_CHECKING:
    from slmbench.engine.model_cache import ModelCache

LATENCY_WARMUP = 3
"""Single requests sent (and not timed) before the timed ones."""
OUT_OF_MEMORY_HINT = "out of memory: try a smaller --profile or batch size, or qlora / a parameter-efficient strategy"


class TrialTimeout(BaseException):
    """Raised inside a trial that ran past its time limit (a BaseException, so strategies can't swallow it)."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TrialTimeout in the main thread after ``seconds`` (no limit when None or off the main thread).

    The alarm interrupts Python code; a call stuck inside native code is interrupted when it returns.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        # Raised wherever the main thread is, it can be swallowed (a finaliser or a callback whose errors
        # are printed and ignored): so it is raised again every second until the trial is left.
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        raise TrialTimeout(f"stopped after the {seconds:g} s trial time limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (on every device) for a reproducible trial."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_predictions(predictions: Predictions, n_texts: int, n_labels: int) -> None:
    """The protocol's checks on what ``predict`` returned: one label in range per text, probabilities
    of shape (texts, labels) whose rows sum to 1."""
    import numpy as np

    if not isinstance(predictions, Predictions):
        raise TypeError(f"predict returned {type(predictions).__name__}, not slmbench.Predictions")
    if len(predictions.labels) != n_texts:
        raise ValueError(f"strategy returned {len(predictions.labels)} predictions for {n_texts} texts")
    bad = [label for label in predictions.labels if not 0 <= int(label) < n_labels]
    if bad:
        raise ValueError(f"strategy returned label indices outside 0..{n_labels - 1}: {bad[:5]}")
    if predictions.probabilities is not None:
        probabilities = np.asarray(predictions.probabilities, dtype=float)
        if probabilities.shape != (n_texts, n_labels):
            raise ValueError(f"strategy returned probabilities of shape {probabilities.shape}, expected ({n_texts}, {n_labels})")
        if not np.allclose(probabilities.sum(axis=1), 1, atol=1e-3) or (probabilities < 0).any():
            raise ValueError("strategy returned probabilities that are negative or whose rows do not sum to 1")


def _error(error: BaseException, hint: str | None = None) -> ErrorInfo:
    message = str(error)
    return ErrorInfo(
        type=type(error).__name__,
        message=f"{message} ({hint})" if hint else message,
        traceback="".join(traceback.format_exception(error)),
    )


def prediction_record(gold: list[int], predictions: Predictions) -> PredictionRecord:
    probabilities = predictions.probabilities
    return PredictionRecord(
        gold=list(gold),
        predicted=[int(label) for label in predictions.labels],
        probabilities=None if probabilities is None else [[round(float(p), 5) for p in row] for row in probabilities],
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
        learns_from_train=strategy_cls.learns_from_train,
        started_at=_now(),
    )
    try:
        with time_limit(timeout_seconds):
            _fit_and_evaluate(config, strategy_cls, model_cache, artifact_dir, record, members)
    except TrialTimeout as error:
        record.status, record.error = "timeout", _error(error)
    except KeyboardInterrupt as error:
        record.status, record.error = "cancelled", _error(error, "interrupted by the user or a SIGTERM")
    except Exception as error:  # noqa: BLE001 - one failing strategy never takes down a run
        out_of_memory = isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
        if out_of_memory:
            free_accelerator_memory()
        record.status, record.error = "failed", _error(error, OUT_OF_MEMORY_HINT if out_of_memory else None)
    record.environment = model_cache.environment
    record.finished_at = _now()
    return record


def _fit_and_evaluate(
    config: TrialConfig, strategy_cls: type[Strategy], model_cache: ModelCache, artifact_dir: Path, record: TrialRecord,
    members: Sequence[TrialRecord],
) -> None:
    """The trial itself; fills ``record`` as it goes, so that a failure keeps what was learnt."""
    from slmbench.tasks.splits import nested_subset

    task = load_task(config.task_path)
    record.task, record.labels = task.name, task.label_names
    defaults = build_options(config.strategy, strategy_cls.Options, config.options)
    record.options = defaults.model_dump(mode="json")
    splits = model_cache.splits(task, config)
    models = model_cache.models(config)
    for model_name in strategy_cls.uses_models:  # load outside the timers: shared by all trials
        getattr(models, model_name)()
    models.reset_usage()

    train, validation, test = splits.train, splits.validation, splits.test
    if config.train_size is not None:  # a learning-curve point: validation shrinks in the same proportion
        train = nested_subset(splits.train, config.train_size, config.seed)
        share = config.train_size / len(splits.train)
        validation = nested_subset(splits.validation, math.ceil(share * len(splits.validation)), config.seed)
    record.train_examples, record.validation_examples = len(train), len(validation)
    budget = Budget(**config.profile)
    n_labels = len(task.labels)
    member_predictions = [member_predictions_of(member, validation, test, n_labels) for member in members]

    def fitted(values: dict[str, Any], directory: Path, report: Any = None) -> tuple[Strategy, Predictions, float, float, int]:
        """A strategy fitted with ``values``: itself, its validation predictions, fit and validation seconds, peak bytes."""
        seed_everything(config.seed)
        directory.mkdir(parents=True, exist_ok=True)
        context = RunContext(
            task=task, models=models, device=models.device, dtype=models.dtype, seed=config.seed, budget=budget,
            artifact_dir=directory, progress=model_cache.progress, members=member_predictions,
            options=build_options(config.strategy, strategy_cls.Options, values),
            **({"on_validation_loss": report} if report else {}),
        )
        with PeakMemory(models.device) as memory:
            strategy = strategy_cls(context)
            start = time.perf_counter()
            strategy.fit(train, validation)
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            predictions = strategy.predict(validation.texts)
            validate_seconds = time.perf_counter() - start
        check_predictions(predictions, len(validation), n_labels)
        return strategy, predictions, fit_seconds, validate_seconds, memory.peak_added_bytes

    space = searched(strategy_cls.tune, config.options)
    if space and budget.tuning_trials > 1:
        strategy, validation_predictions, train_seconds, peak = _tuned(
            fitted, space, defaults.model_dump(), budget.tuning_trials, config.seed, validation.labels, artifact_dir, record
        )
    else:
        strategy, validation_predictions, train_seconds, _, peak = fitted(defaults.model_dump(), artifact_dir)
    models.forget_vectors()  # test texts are encoded by the prediction that is timed
    with PeakMemory(models.device) as memory:
        start = time.perf_counter()
        predictions = strategy.predict(test.texts)
        predict_seconds = time.perf_counter() - start
    check_predictions(predictions, len(test), n_labels)

    record.labelled_examples = (
        strategy.labelled_examples if strategy.labelled_examples is not None else len(train) + len(validation)
    )
    record.train_examples_seen = (
        strategy.train_examples_seen
        if strategy.train_examples_seen is not None
        else (len(train) if strategy_cls.learns_from_train else 0)
    )
    record.prompt_tokens_per_example = strategy.prompt_tokens_per_example
    record.details = _plain_json(strategy.details, "details")
    trainable, total = strategy.parameter_counts()
    record.metrics = Metrics(**classification_metrics(test.labels, predictions.labels, task.label_names))
    record.cost = Cost(
        train_seconds=round(train_seconds, 3),
        predict_seconds=round(predict_seconds, 3),
        latency_ms_per_example=round(1000 * predict_seconds / len(test), 3),
        throughput_examples_per_second=round(len(test) / predict_seconds, 3) if predict_seconds else None,
        single_request=single_request_latency(_uncached(strategy.predict, models), test.texts, budget.latency_requests, config.seed),
        peak_memory_mb=round((max(peak, memory.peak_added_bytes) + sum(models.used.values())) / 2**20, 1),
        trainable_params=int(trainable),
        total_params=int(total),
        artifact_bytes=folder_bytes(artifact_dir),
    )
    if strategy_cls.combines_others:
        record.cost = with_member_costs(record.cost, members)
    record.predictions = prediction_record(test.labels, predictions)
    record.validation_predictions = prediction_record(validation.labels, validation_predictions)
    if config.train_size is None:  # a learning-curve point's model is never the one deployed
        record.deployment = deployment_checks(strategy, test, task.label_names, budget.latency_requests, config.seed)
    record.models = config.models
    record.status = "ok"


def _tuned(
    fitted: Any, space: dict, defaults: dict, trials: int, seed: int, validation_labels: list[int], artifact_dir: Path,
    record: TrialRecord,
) -> tuple[Strategy, Predictions, float, int]:
    """The option search (``slmbench.engine.tuning``): each setting fitted in its own folder, the best one's kept.

    Returns the best strategy, its validation predictions, the search's seconds (fits and validation
    passes: the cost of choosing) and the largest peak memory of one setting.
    """
    import shutil

    from slmbench.engine.tuning import METHOD, Candidate, search

    peaks, folders = [], []

    def fit(values: dict[str, Any], report: Any) -> Candidate:
        folders.append(artifact_dir / f".try-{len(folders)}")
        strategy, predictions, _, _, peak = fitted(values, folders[-1], report)
        peaks.append(peak)
        correct = sum(int(p) == g for p, g in zip(predictions.labels, validation_labels))
        return Candidate(strategy, predictions, correct / max(len(validation_labels), 1))

    start = time.perf_counter()
    result = search(space, defaults, trials, seed, fit)
    seconds = time.perf_counter() - start
    best = result.best.strategy
    for item in best.context.artifact_dir.iterdir():  # the chosen setting's artifacts become the trial's
        shutil.move(str(item), artifact_dir / item.name)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    best.context.artifact_dir = artifact_dir
    record.options = best.options.model_dump(mode="json")
    record.tuning = Tuning(method=METHOD, budget=trials, chosen={name: result.options[name] for name in space}, tried=result.tried)
    return best, result.best.validation, seconds, max(peaks)


def member_predictions_of(member: TrialRecord, validation: Examples, test: Examples, n_labels: int) -> MemberPredictions:
    """A finished trial's predictions keyed by text (validation and test), for a strategy that combines it."""
    rows: dict[str, list[float]] = {}
    for examples, predicted in ((validation, member.validation_predictions), (test, member.predictions)):
        if predicted is None or len(predicted.predicted) != len(examples):
            raise ValueError(f"member {member.name} holds no predictions for the {len(examples)} texts of this split")
        probabilities = predicted.probabilities or [[float(i == label) for i in range(n_labels)] for label in predicted.predicted]
        rows.update(zip(examples.texts, probabilities))
    return MemberPredictions(member.name, rows)


def with_member_costs(cost: Cost, members: Sequence[TrialRecord]) -> Cost:
    """A combining strategy's cost plus its members': deploying it means training and running them all
    (their peak memories add up, as they are loaded together)."""
    summed = {}
    for field_name in ("train_seconds", "predict_seconds", "latency_ms_per_example", "peak_memory_mb", "trainable_params",
                       "total_params", "artifact_bytes"):
        values = [getattr(cost, field_name), *(getattr(member.cost, field_name) for member in members)]
        summed[field_name] = None if any(value is None for value in values) else type(values[0])(round(sum(values), 3))
    latencies = [cost.single_request, *(member.cost.single_request for member in members)]
    single = None if any(latency is None for latency in latencies) else Latency(
        p50_ms=round(sum(lat.p50_ms for lat in latencies), 3), p95_ms=round(sum(lat.p95_ms for lat in latencies), 3),
        requests=latencies[0].requests)
    predict_seconds = summed["predict_seconds"]
    throughput = None if not predict_seconds or cost.throughput_examples_per_second is None else round(
        cost.throughput_examples_per_second * cost.predict_seconds / predict_seconds, 3)
    return Cost(**summed, single_request=single, throughput_examples_per_second=throughput)


def _uncached(predict: Any, models: SharedModels) -> Any:
    """``predict`` with no text's vector cached beforehand, as a service sees a new request."""

    def fresh(texts: list[str]) -> Predictions:
        models.forget_vectors()
        return predict(texts)

    return fresh


def single_request_latency(predict: Any, texts: list[str], requests: int, seed: int) -> Latency | None:
    """p50 and p95 of ``predict([text])`` over ``requests`` test texts drawn with ``seed``: what a service
    answering one request at a time sees (called after the record took the batch run's details)."""
    import random

    import numpy as np

    if requests < 1 or not texts:
        return None
    drawn = random.Random(seed).sample(list(texts), min(requests + LATENCY_WARMUP, len(texts)))
    for text in drawn[:LATENCY_WARMUP]:  # CPU kernels are prepared on the first inputs of each size: a warm service
        predict([text])
    seconds = []
    for text in drawn[LATENCY_WARMUP:] or drawn:
        start = time.perf_counter()
        predict([text])
        seconds.append(time.perf_counter() - start)
    milliseconds = 1000 * np.asarray(seconds)
    return Latency(p50_ms=round(float(np.percentile(milliseconds, 50)), 3), p95_ms=round(float(np.percentile(milliseconds, 95)), 3),
                   requests=len(seconds))


def deployment_checks(strategy: Strategy, test: Examples, label_names: list[str], requests: int, seed: int) -> list[DeploymentCheck]:
    """The strategy's model quantized for deployment (``Strategy.deployment_variants``), each scored on
    the same test split: accuracy, size on disk, batched and single-request latency."""
    checks = []
    for variant in strategy.deployment_variants():
        try:
            with variant as deployed:
                start = time.perf_counter()
                predictions = deployed.predict(test.texts)
                seconds = time.perf_counter() - start
                check_predictions(predictions, len(test), len(label_names))
                metrics = classification_metrics(test.labels, predictions.labels, label_names)
                checks.append(DeploymentCheck(
                    quantization=variant.quantization, accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"],
                    size_bytes=deployed.size_bytes, latency_ms_per_example=round(1000 * seconds / len(test), 3),
                    single_request=single_request_latency(deployed.predict, test.texts, requests, seed),
                ))
        except Exception as error:  # noqa: BLE001 - an unsupported quantization is recorded, not fatal
            checks.append(DeploymentCheck(quantization=variant.quantization, error=f"{type(error).__name__}: {error}"))
    return checks


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
