"""nearest-centroid against slmbench's conformance kit, then its own behaviour on the kit's toy task."""

from __future__ import annotations

import json

from safetensors.numpy import load_file
from slmbench_nearest_centroid import NearestCentroid

from slmbench import Examples
from slmbench.testing import make_context, parametrize_with_checks, toy_splits


@parametrize_with_checks([NearestCentroid])
def test_slmbench_protocol(strategy, check):
    check(strategy)


def test_each_label_gets_its_prototypes_and_save_writes_them(tmp_path):
    train, validation, test = toy_splits()
    strategy = NearestCentroid(make_context(NearestCentroid, tmp_path / "artifacts", prototypes=2))

    strategy.fit(train, validation)
    strategy.save(tmp_path / "artifacts")
    predictions = strategy.predict(test.texts)

    assert strategy.details["prototypes"] == {"negative": 2, "neutral": 2, "positive": 2}
    saved = load_file(str(tmp_path / "artifacts" / "prototypes.safetensors"))
    assert saved["vectors"].shape[0] == 6 and sorted(saved["labels"].tolist()) == [0, 0, 1, 1, 2, 2]
    assert json.loads((tmp_path / "artifacts" / "prototypes.json").read_text())["temperature"] == 0.05
    assert predictions.probabilities.shape == (len(test), 3)


def test_a_label_missing_from_train_is_never_predicted(tmp_path):
    train, validation, test = toy_splits()
    kept = [(text, label) for text, label in zip(train.texts, train.labels) if label != 1]  # no neutral example
    without_neutral = Examples([text for text, _ in kept], [label for _, label in kept])
    strategy = NearestCentroid(make_context(NearestCentroid, tmp_path / "artifacts"))

    strategy.fit(without_neutral, validation)
    predictions = strategy.predict(test.texts)

    assert 1 not in predictions.labels
    assert (predictions.probabilities[:, 1] == 0).all()
