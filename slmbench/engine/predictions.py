"""What a strategy's ``predict`` returned: the protocol's checks on it, and its form in a trial record."""

from __future__ import annotations

from typing import Any

from slmbench.records import PredictionRecord
from slmbench.tasks.examples import Predictions


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


def prediction_record(gold: list[int], predictions: Predictions) -> PredictionRecord:
    """Gold and predicted labels, and the probabilities (rounded to 5 places) if the strategy gave them."""
    probabilities = predictions.probabilities
    return PredictionRecord(
        gold=list(gold),
        predicted=[int(label) for label in predictions.labels],
        probabilities=None if probabilities is None else rounded(probabilities),
    )


def rounded(probabilities: Any) -> list[list[float]]:
    """Probabilities as a trial records them (5 places): what a combining strategy reads of its members."""
    return [[round(float(p), 5) for p in row] for row in probabilities]
