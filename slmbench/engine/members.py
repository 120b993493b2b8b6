"""A strategy that combines others (a ``CombiningStrategy``): its members' predictions as it
reads them, and its cost with theirs added."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slmbench.records import Cost, Latency, TrialRecord
from slmbench.tasks.examples import Examples, MemberPredictions, probability_rows


def member_predictions_of(member: TrialRecord, validation: Examples, test: Examples, n_labels: int) -> MemberPredictions:
    """A finished trial's predictions keyed by text (validation and test), for a strategy that combines it."""
    rows: dict[str, list[float]] = {}
    for examples, predicted in ((validation, member.validation_predictions), (test, member.predictions)):
        if predicted is None or len(predicted.predicted) != len(examples):
            raise ValueError(f"member {member.name} holds no predictions for the {len(examples)} texts of this split")
        rows.update(zip(examples.texts, probability_rows(predicted.predicted, predicted.probabilities, n_labels).tolist()))
    return MemberPredictions(member.name, rows)


def with_member_costs(cost: Cost, members: Sequence[TrialRecord]) -> Cost:
    """A combining strategy's cost plus its members': deploying it means training and running them all
    (their peak memories add up, as they are loaded together)."""
    summed: dict[str, Any] = {}
    for field_name in (
        "train_seconds",
        "predict_seconds",
        "latency_ms_per_example",
        "peak_memory_mb",
        "peak_host_memory_mb",
        "peak_accelerator_memory_mb",
        "trainable_params",
        "total_params",
        "artifact_bytes",
    ):
        values = [getattr(cost, field_name), *(getattr(member.cost, field_name) for member in members)]
        summed[field_name] = None if any(value is None for value in values) else type(values[0])(round(sum(values), 3))
    measured = [latency for latency in (cost.single_request, *(member.cost.single_request for member in members)) if latency is not None]
    single = (
        None
        if len(measured) < 1 + len(members)
        else Latency(
            p50_ms=round(sum(lat.p50_ms for lat in measured), 3),
            p95_ms=round(sum(lat.p95_ms for lat in measured), 3),
            requests=measured[0].requests,
        )
    )
    predict_seconds = summed["predict_seconds"]
    own_throughput, own_seconds = cost.throughput_examples_per_second, cost.predict_seconds
    throughput = (
        None
        if not predict_seconds or own_throughput is None or own_seconds is None
        else round(own_throughput * own_seconds / predict_seconds, 3)
    )
    return Cost(**summed, single_request=single, throughput_examples_per_second=throughput)
