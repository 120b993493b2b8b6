"""How a fitted strategy would serve: the latency of single requests, and its model quantized for
deployment (``Strategy.deployment_variants``) scored on the test split."""

from __future__ import annotations

import time
from typing import Any

from slmbench.engine.metrics import classification_metrics
from slmbench.engine.predictions import check_predictions
from slmbench.lm.models import SharedModels
from slmbench.records import DeploymentCheck, Latency
from slmbench.strategy.base import Strategy
from slmbench.tasks.examples import Examples, Predictions

LATENCY_WARMUP = 3
"""Single requests sent (and not timed) before the timed ones."""


def uncached(predict: Any, models: SharedModels) -> Any:
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
    return Latency(
        p50_ms=round(float(np.percentile(milliseconds, 50)), 3),
        p95_ms=round(float(np.percentile(milliseconds, 95)), 3),
        requests=len(seconds),
    )


def deployment_checks(strategy: Strategy, test: Examples, label_names: list[str], requests: int, seed: int) -> list[DeploymentCheck]:
    """The strategy's model quantized for deployment (``Strategy.deployment_variants``), each scored on
    the same test split: accuracy, size on disk, batched and single-request latency."""
    checks = []
    for variant in strategy.deployment_variants():
        started = time.perf_counter()
        try:
            with variant as deployed:
                start = time.perf_counter()
                predictions = deployed.predict(test.texts)
                seconds = time.perf_counter() - start
                check_predictions(predictions, len(test), len(label_names))
                metrics = classification_metrics(test.labels, predictions.labels, label_names)
                checks.append(
                    DeploymentCheck(
                        quantization=variant.quantization,
                        accuracy=metrics["accuracy"],
                        macro_f1=metrics["macro_f1"],
                        size_bytes=deployed.size_bytes,
                        latency_ms_per_example=round(1000 * seconds / len(test), 3),
                        single_request=single_request_latency(deployed.predict, test.texts, requests, seed),
                        seconds=round(time.perf_counter() - started, 1),
                    )
                )
        except Exception as error:  # noqa: BLE001 - an unsupported quantization is recorded, not fatal
            seconds = round(time.perf_counter() - started, 1)
            checks.append(DeploymentCheck(quantization=variant.quantization, error=f"{type(error).__name__}: {error}", seconds=seconds))
    return checks
